"""Pure means pure: the modules of plain values, contracts and pure steps import no
client library and no model runtime (DESIGN.md, "The picture of the code")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PURE = [
    "catalens.errors",
    "catalens.kafka.records",
    "catalens.store.values",
    "catalens.store.expressions",
    "catalens.schemas",
    "catalens.settings",
    "catalens.retry",
    "catalens.embedder.offsets",
    "catalens.embedder.holdings",
    "catalens.images",
    "catalens.kafka",
    "catalens.kafka.memory",
    "catalens.store",
    "catalens.store.memory",
    "catalens.embedder.steps",
    "catalens.embedder.batcher",
    "catalens.embedder.reuse",
    "catalens.embedder.service",
    "catalens.sink.plan",
    "catalens.sink.service",
    "catalens.query_api.filters",
    "catalens.producer.catalog",
]
HEAVY = ["pymilvus", "confluent_kafka", "torch", "openvino", "nncf", "transformers", "grpc"]


def test_pure_modules_import_no_client_library_or_model_runtime() -> None:
    # A fresh interpreter: this test process has long imported everything.
    code = (
        "import importlib, sys\n"
        f"for name in {PURE!r}: importlib.import_module(name)\n"
        f"print(sorted(h for h in {HEAVY!r} if h in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout


def test_the_check_sees_a_heavy_import() -> None:
    """The check above would notice: an adapter does load its client library."""
    code = "import sys, catalens.store.client; print('pymilvus' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "True"


def test_the_floors_hold_as_import_linter_checks_them() -> None:
    """The contracts in pyproject.toml (``make lint``): each floor imports only what lies
    below it, roles never import one another, and pure modules load no client library."""
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--config", str(ROOT / "pyproject.toml")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:]
