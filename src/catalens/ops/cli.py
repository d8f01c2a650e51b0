"""``catalens up | publish | embedder | sink | api | dlq | index | status | model``.

Options override the ``CATALENS_*`` environment variables of the same name
(``--kafka-bootstrap`` ↔ ``CATALENS_KAFKA_BOOTSTRAP``).

Exit status: 0 done (a service asked to stop by SIGTERM or Ctrl-C has done); 1 a
Catalens error (something missing or refused, a dependency away after the command's
wait, CATALENS_CONNECT_TIMEOUT_S); 2 a command line or configuration that cannot be read;
130 a command interrupted by Ctrl-C. Every failure ends with one line on stderr,
``catalens <command>: <message>``; a bug crashes with its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from catalens.errors import CatalensError, OperatorError, Stopped, TransientError, UsageError
from catalens.logs import configure_logging
from catalens.settings import (
    ApiSettings,
    CatalensSettings,
    EmbedderSettings,
    SinkSettings,
    StatusSettings,
)

log = logging.getLogger("catalens")

# Options shared by every command that talks to Kafka or Milvus: dest = settings field.
COMMON_OPTIONS = (
    "kafka_bootstrap",
    "milvus_uri",
    "model",
    "collection",
    "input_topic",
    "log_level",
)


def _add_common(parser: argparse.ArgumentParser, extra: Sequence[str] = ()) -> None:
    for field in (*COMMON_OPTIONS, *extra):
        parser.add_argument(
            f"--{field.replace('_', '-')}",
            dest=field,
            default=None,
            help=f"overrides CATALENS_{field.upper()}",
        )


def _settings(cls: type[CatalensSettings], args: argparse.Namespace) -> Any:
    fields = cls.model_fields
    overrides = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise UsageError(f"invalid configuration: {_problems(exc, overrides)}") from None


def _problems(exc: ValidationError, options: Iterable[str]) -> str:
    """Each problem of ``exc`` naming the setting as it was given: the option, or the
    ``CATALENS_*`` variable."""
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        if not field:
            where = "settings"
        elif field in options:
            where = f"--{field.replace('_', '-')}"
        else:
            where = f"CATALENS_{field.upper()}"
        given = error.get("input")
        shown = f" (got {given!r})" if isinstance(given, str | int | float) else ""
        problems.append(f"{where}: {error['msg']}{shown}")
    return "; ".join(problems)


def _configure_logging(settings: CatalensSettings) -> None:
    configure_logging(settings.log_level, settings.log_format)


def stop_on_signals() -> threading.Event:
    """SIGTERM and SIGINT only set a flag; the service loops notice it and shut down."""
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def cmd_embedder(args: argparse.Namespace) -> int:
    from catalens.embedder.main import run

    settings = _settings(EmbedderSettings, args)
    _configure_logging(settings)
    run(settings, stop_on_signals())
    return 0


def cmd_sink(args: argparse.Namespace) -> int:
    from catalens.sink.main import run

    settings = _settings(SinkSettings, args)
    _configure_logging(settings)
    run(settings, stop_on_signals())
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from catalens.query_api.app import build_services, create_app
    from catalens.query_api.deps import Services
    from catalens.query_api.metrics import Metrics

    settings = _settings(ApiSettings, args)
    _configure_logging(settings)
    failed: list[CatalensError] = []

    def build(settings: ApiSettings, metrics: Metrics) -> Services:
        try:
            return build_services(settings, metrics)
        except OperatorError as error:  # the server logs it and exits; we say it last
            failed.append(error)
            raise

    try:
        uvicorn.run(
            create_app(settings, build),
            host=settings.api_host,
            port=settings.api_port,
            loop=settings.api_loop,
            http=settings.api_http,
            log_level=settings.log_level.lower(),
            access_log=False,
        )
    except SystemExit:  # uvicorn's exit when the application could not start
        if failed:
            raise failed[-1] from None
        raise
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from catalens.kafka import DeliveryError
    from catalens.kafka.client import Publisher, ensure_topics
    from catalens.ops.bounded import bounded, try_timeout
    from catalens.producer.catalog import CatalogError, read_csv, read_jsonl
    from catalens.producer.publisher import EventPublisher

    settings = _settings(CatalensSettings, args)
    _configure_logging(settings)
    path = Path(args.path)
    if not path.is_file():
        raise OperatorError(f"no such file: {path}")
    if path.suffix.lower() == ".csv":
        images = Path(args.images) if args.images else path.parent / "images"
        rows = read_csv(path, images, version=args.version, image_base_url=args.image_base_url)
    else:
        rows = read_jsonl(path)
    problems: list[CatalogError] = []

    def events() -> Any:
        for row in rows:
            if isinstance(row, CatalogError):
                problems.append(row)
            else:
                yield row

    bounded(
        settings,
        lambda: ensure_topics(settings, [settings.input_topic], timeout_s=try_timeout(settings)),
        what="create topics",
    )
    publisher = EventPublisher(Publisher(settings), settings.input_topic)
    with tqdm(desc=f"publishing {path.name}", unit="event", disable=args.quiet) as bar:
        sent, failures = publisher.publish_many(events(), on_progress=bar.update)
    for problem in problems[:20]:
        print(f"{path}:{problem.line}: skipped: {problem.message}", file=sys.stderr)
    if len(problems) > 20:
        print(f"... and {len(problems) - 20} more skipped rows", file=sys.stderr)
    for event_id, error in failures[:20]:
        print(f"not delivered: {event_id}: {error}", file=sys.stderr)
    print(
        f"published {sent} events to {settings.input_topic}"
        f" ({len(problems)} rows skipped, {len(failures)} not delivered)"
    )
    if failures:
        event_id, error = failures[0]
        raise DeliveryError(
            f"{len(failures)} events not delivered (first: {event_id}: {error})",
            fatal=any(error.fatal for _, error in failures),
        )
    return 0


def cmd_model(args: argparse.Namespace) -> int:
    from catalens.dev.modelkit import build_random_clip

    path = build_random_clip(Path(args.directory), size=args.size, seed=args.seed)
    print(f"wrote a random-weights CLIP ({args.size}) to {path}")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from catalens.ops.up import run_up

    settings = _settings(ApiSettings, args)
    _configure_logging(settings)
    return run_up(
        settings,
        data_dir=Path(args.data_dir),
        sample_size=args.sample_size,
        stop=stop_on_signals(),
        milvus_server=args.milvus_server,
    )


def cmd_index(args: argparse.Namespace) -> int:
    from catalens.index import commands
    from catalens.ops.bounded import bounded
    from catalens.ops.status import render_generations

    settings = _settings(CatalensSettings, args)
    _configure_logging(settings)
    if args.action != "status" and not args.model:
        raise UsageError(f"name the MODEL to {args.action}")
    if args.action == "status":
        rows = bounded(settings, lambda: commands.status(settings), what="index status")
        print(commands.as_json(rows) if args.json else render_generations(rows))
    elif args.action == "promote":
        quality = None
        if args.eval:
            from catalens.index.relevance import read_judgments

            quality = commands.QualityCheck(
                read_judgments(Path(args.eval)), args.eval_tolerance, mode=args.eval_mode
            )
        try:
            done = bounded(
                settings,
                lambda: commands.promote(
                    settings,
                    args.model,
                    tolerance=args.tolerance,
                    force=args.force,
                    quality=quality,
                ),
                what="promote",
            )
        except commands.PromotionRefused as refused:
            raise OperatorError(f"{refused.message} (--force promotes anyway)") from None
        print(done)
    else:
        print(bounded(settings, lambda: commands.drop(settings, args.model), what="drop"))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from catalens.ops import eval as evaluation
    from catalens.ops.bounded import bounded

    settings = _settings(ApiSettings, args)
    _configure_logging(settings)
    path = Path(args.judgments)
    # The text tower's libraries print as they load (NNCF's report of its quantising):
    # to stderr with the logs, so that standard output holds the figures alone.
    with contextlib.redirect_stdout(sys.stderr):
        done = bounded(
            settings,
            lambda: evaluation.evaluate(
                settings,
                path,
                modes=tuple(args.mode or ()),
                k=args.k,
                generation=args.generation,
            ),
            what="eval",
        )
    print(evaluation.as_json(done) if args.json else done.render(), flush=True)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from catalens.ops import status

    settings = _settings(StatusSettings, args)
    _configure_logging(settings)
    report = status.collect(
        settings,
        workers=args.worker or (),
        dead_letters_per_partition=args.dead_letters,
        dead_letters_since=timedelta(seconds=args.since),
    )
    print(status.as_json(report) if args.json else status.render(report), flush=True)
    # Scripts learn from the exit status that some part could not be read.
    if not report.complete:
        raise TransientError(f"could not read {', '.join(report.unread())}")
    return 0


def cmd_dlq(args: argparse.Namespace) -> int:
    from catalens.ops.dlq import run_dlq

    settings = _settings(CatalensSettings, args)
    _configure_logging(settings)
    return run_dlq(settings, args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="catalens", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run the whole pipeline locally with a sample catalog")
    _add_common(up, ("api_port", "api_host"))
    up.add_argument(
        "--data-dir", default=".catalens", help="state, logs, sample (default %(default)s)"
    )
    up.add_argument("--sample-size", type=int, default=40, help="products in the sample catalog")
    up.add_argument(
        "--milvus-server",
        choices=["lite", "standalone"],
        default="lite",
        help="the local Milvus when no URI is given: Milvus Lite (keyword and hybrid search, "
        "starts in a second) or Milvus 2.3.5 standalone (default %(default)s)",
    )
    up.set_defaults(func=cmd_up)

    publish = commands.add_parser("publish", help="publish a catalog (CSV + images, or JSONL)")
    publish.add_argument("path", help="articles.csv (H&M layout) or events .jsonl")
    publish.add_argument("--images", help="image folder of a CSV catalog (default: ./images)")
    publish.add_argument(
        "--version", type=int, default=None, help="version of every CSV event (default: now in ms)"
    )
    publish.add_argument(
        "--image-base-url",
        default=None,
        help="publish image URLs under this base instead of file paths",
    )
    publish.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_common(publish)
    publish.set_defaults(func=cmd_publish)

    for name, func, extra, text in (
        ("embedder", cmd_embedder, ("embeddings_topic", "dlq_topic"), "run an embedder"),
        ("sink", cmd_sink, ("embeddings_topic", "dlq_topic"), "run a sink"),
        ("api", cmd_api, ("api_port", "api_host"), "run the query API"),
    ):
        sub = commands.add_parser(name, help=text)
        _add_common(sub, extra)
        sub.set_defaults(func=func)

    dlq = commands.add_parser("dlq", help="inspect or replay dead letters")
    dlq.add_argument("action", choices=["show", "replay"])
    dlq.add_argument("--reason", action="append", help="only these reason codes")
    dlq.add_argument("--product", action="append", help="only these product ids")
    dlq.add_argument("--limit", type=int, default=100)
    dlq.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        help="stop after this many seconds without a new dead letter",
    )
    _add_common(dlq, ("dlq_topic",))
    dlq.set_defaults(func=cmd_dlq)

    index = commands.add_parser("index", help="index generations: status, promote NAME, drop NAME")
    index.add_argument("action", choices=["status", "promote", "drop"])
    index.add_argument(
        "model",
        nargs="?",
        metavar="NAME",
        help="the generation: its name (index status), its collection, or its model",
    )
    index.add_argument("--json", action="store_true", help="status as JSON, for machines")
    index.add_argument(
        "--tolerance",
        type=float,
        default=0.01,
        help="promote: the share by which row counts may differ (default %(default)s)",
    )
    index.add_argument(
        "--force", action="store_true", help="promote even when the check finds differences"
    )
    index.add_argument(
        "--eval",
        metavar="JUDGMENTS",
        help="promote: refuse a generation whose nDCG@10 on these judgments is worse than "
        "the served one's by more than --eval-tolerance",
    )
    index.add_argument("--eval-tolerance", type=float, default=0.02, metavar="NDCG")
    index.add_argument(
        "--eval-mode",
        choices=["vector", "keyword", "hybrid"],
        help="the mode --eval compares in (default: the candidate's default mode)",
    )
    _add_common(index, ("embeddings_topic",))
    index.set_defaults(func=cmd_index)

    evaluate = commands.add_parser(
        "eval", help="recall@k, nDCG@k and MRR per search mode on a judgments file"
    )
    evaluate.add_argument(
        "judgments", help='JSON Lines: {"query": "...", "relevant": ["product id", ...]}'
    )
    evaluate.add_argument(
        "--mode",
        action="append",
        choices=["vector", "keyword", "hybrid"],
        help="repeatable (default: every mode the generation answers)",
    )
    evaluate.add_argument("--k", type=int, default=10, help="the rank cut-off (default 10)")
    evaluate.add_argument("--json", action="store_true", help="as JSON, for machines")
    evaluate.add_argument(
        "--generation", metavar="NAME", help="another generation than the served one"
    )
    _add_common(evaluate)
    evaluate.set_defaults(func=cmd_eval)

    status = commands.add_parser(
        "status",
        help="a running deployment: consumer lag, generations, dead letters, freshness",
    )
    status.add_argument("--json", action="store_true", help="as JSON, for machines")
    status.add_argument(
        "--worker",
        action="append",
        metavar="URL",
        help="a worker's health port (http://sink:8082), read for its /metrics; repeatable,"
        " adds to CATALENS_STATUS_WORKERS",
    )
    status.add_argument(
        "--dead-letters",
        type=int,
        default=1000,
        metavar="N",
        help="read the last N dead letters of each partition (default %(default)s)",
    )
    status.add_argument(
        "--since",
        type=float,
        default=3600,
        metavar="SECONDS",
        help="count the dead letters of this recent past (default %(default)s)",
    )
    _add_common(status, ("embeddings_topic", "dlq_topic", "embedder_group", "sink_group"))
    status.set_defaults(func=cmd_status)

    model = commands.add_parser("model", help="write a random-weights CLIP (tests, benchmarks)")
    model.add_argument("directory")
    model.add_argument("--size", choices=["tiny", "vit-b-32"], default="tiny")
    model.add_argument("--seed", type=int, default=0)
    model.set_defaults(func=cmd_model)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status (the module's docstring lists them). A usage error
    of argparse's own exits with 2 from inside ``parse_args``."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    action = getattr(args, "action", None)  # dlq show|replay, index status|promote|drop
    command = f"catalens {args.command}" + (f" {action}" if action else "")
    try:
        return func(args)
    except Stopped as stopped:
        # Asked to stop while a dependency was away: nothing was left half-done (offsets
        # only follow durable effects), so this is a clean exit.
        log.info("stopped while waiting for: %s", stopped)
        return 0
    except KeyboardInterrupt:
        return _fail(command, "interrupted", EXIT_INTERRUPTED)
    except UsageError as error:
        return _fail(command, error.message, EXIT_USAGE)
    except CatalensError as error:
        return _fail(command, error.message, EXIT_ERROR)


EXIT_ERROR = 1
EXIT_USAGE = 2  # argparse's own status for a command line it cannot read
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a Ctrl-C'd program


def _fail(command: str, message: str, status: int) -> int:
    """Say what went wrong on one line of stderr; return the exit status."""
    line = " ".join(message.split()) or "failed"  # one line, whatever the message held
    print(f"{command}: {line}", file=sys.stderr, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
