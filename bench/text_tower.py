"""The text tower alone: one query at a time, per candidate (runtime, precision) and
thread count, with its min cosine to the PyTorch fp32 tower — the figures behind the
query API's choice of text tower.

Model: the real ViT-B/32 architecture with random weights (``embed_throughput.py``).
Its tokenizer has CLIP's byte-level alphabet and one token for each catalog word the
queries are made of, as CLIP's vocabulary has for common English words, so a ~10-word
sentence is ≈12 tokens, as with CLIP (a query's time grows with its tokens). The figures
are given for the sentence and for a short query of ≈12 characters. The baseline is
PyTorch fp32 with 2 threads, measured in the same run.

    python bench/text_tower.py [--queries 60] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np

from embed_throughput import QUERY_WORDS as WORDS
from embed_throughput import model_dirs


def sentences(count: int, seed: int) -> list[str]:
    """~10-word catalog queries, each new (a number at the end), like users send."""
    rng = np.random.default_rng(seed)
    return [f"a {' '.join(rng.choice(WORDS, size=7))} number {i}" for i in range(count)]


def short(count: int, seed: int) -> list[str]:
    """Short queries (two words and a number, at most 12 characters), as users also send."""
    rng = np.random.default_rng(seed)
    return [f"{rng.choice(WORDS)} {rng.choice(WORDS)} {i}"[:12] for i in range(count)]


def p50_ms(encode: Callable[[Sequence[str]], object], texts: list[str]) -> float:
    for text in texts[:5]:  # warm-up: the first shapes compile kernels
        encode([text])
    times = []
    for text in texts[5:]:
        started = time.perf_counter()
        encode([text])
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--candidates",
        nargs="+",
        default=["torch-fp32", "torch-bf16", "torch-int8", "openvino-fp32", "openvino-int8"],
        help="runtime-precision pairs; torch-fp32 is the baseline and always runs",
    )
    args = parser.parse_args()
    os.environ.setdefault("OPENVINO_TELEMETRY_DISABLE", "1")

    import torch
    from transformers import CLIPModel

    from catalens.encoder import check, text
    from catalens.encoder.policy import Candidate

    hf_dir, _ = model_dirs()
    clip = CLIPModel.from_pretrained(hf_dir, dtype=torch.float32).eval()
    long_texts = sentences(args.queries + 5, seed=3)
    short_texts = short(args.queries + 5, seed=4)
    print(
        f"tokens per query: sentence {text.Tokens(hf_dir)(long_texts[:1])[0].shape[1]}, "
        f"short {text.Tokens(hf_dir)(short_texts[:1])[0].shape[1]}; {os.cpu_count()} cores"
    )
    tokens = text.Tokens(hf_dir)
    started = time.perf_counter()
    for t in long_texts:
        tokens([t])
    print(
        "tokenising one sentence: "
        f"{(time.perf_counter() - started) / len(long_texts) * 1000:.2f} ms"
    )
    wanted = dict.fromkeys(["torch-fp32", *args.candidates])
    candidates = [Candidate(*name.split("-", 1)) for name in wanted]
    rows: list[tuple[str, int, float, float, float]] = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        setup = text.TextSetup.from_clip(clip, hf_dir, device="cpu", threads=threads)
        for candidate in candidates:
            tower = text.build(candidate, setup)
            print(f"built {candidate} ({threads} threads)", flush=True)
            reference = setup.reference
            cosine = check.min_cosine(tower(text.CHECK_QUERIES), reference)
            rows.append(
                (
                    str(candidate),
                    threads,
                    p50_ms(tower, long_texts),
                    p50_ms(tower, short_texts),
                    cosine,
                )
            )
    base = next(r for r in rows if r[0] == "torch fp32" and r[1] == max(args.threads))
    print(
        f"{'candidate':<16} {'threads':>7} {'sentence p50':>13} {'short p50':>10} "
        f"{'speed-up':>9} {'min cosine':>11}"
    )
    for name, threads, long_ms, short_ms, cosine in rows:
        print(
            f"{name:<16} {threads:>7} {long_ms:>10.2f} ms {short_ms:>7.2f} ms "
            f"{base[2] / long_ms:>8.2f}x {cosine:>11.5f}"
        )


if __name__ == "__main__":
    main()
