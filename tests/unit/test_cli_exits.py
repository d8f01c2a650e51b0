"""How every command ends: 0 done, 1 a Catalens error (missing, refused, or a dependency
away after a bounded wait), 2 a command line or configuration that cannot be read, 130
interrupted; each failure says so on one line of stderr, ``catalens <command>: ...``,
and a bug still crashes with its traceback."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest

from catalens.dev.localstack import free_port
from catalens.index import commands
from catalens.ops import cli
from catalens.store.admin import Generation, GenerationNotFound, Layout
from catalens.store.values import ModelIdentity


def failure(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line a failed command wrote to stderr (logs go to pytest's capture)."""
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    return lines[0]


def closed_port() -> str:
    return f"127.0.0.1:{free_port()}"


def test_an_embedder_whose_model_is_missing_says_so_at_once_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Before any wait for the broker (which is not there either)."""
    monkeypatch.setattr(cli, "stop_on_signals", threading.Event)  # leave pytest's handlers
    monkeypatch.setenv("CATALENS_MODEL", str(tmp_path / "no-such-model"))
    monkeypatch.setenv("CATALENS_KAFKA_BOOTSTRAP", closed_port())
    assert cli.main(["embedder"]) == 1
    line = failure(capsys)
    assert line.startswith("catalens embedder: model ")
    assert str(tmp_path / "no-such-model") in line


@pytest.mark.parametrize(
    ("argv", "command"),
    [(["dlq", "show"], "catalens dlq show"), (["publish", "EVENTS"], "catalens publish")],
)
def test_a_command_gives_up_on_an_unreachable_broker_after_its_bounded_wait_with_status_1(
    argv: list[str],
    command: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("{}\n")
    monkeypatch.setenv("CATALENS_KAFKA_BOOTSTRAP", closed_port())
    monkeypatch.setenv("CATALENS_CONNECT_TIMEOUT_S", "1")
    started = time.monotonic()
    status = cli.main([str(events) if arg == "EVENTS" else arg for arg in argv])
    waited = time.monotonic() - started
    assert status == 1
    line = failure(capsys)
    assert line.startswith(f"{command}: cannot reach Kafka at ")
    # 1 s of retries and one try's own wait (as long as the timeout) after them; the
    # bound is generous for a loaded machine, and far below waiting forever.
    assert waited < 30


class StubAdmin:
    """The index's admin seam over a fixed alias: ``served`` (a, b, c, d) serves, and
    ``candidate`` holds only a, at an older version."""

    versions: ClassVar[dict[str, dict[str, int]]] = {
        "products_served": {"a": 2, "b": 1, "c": 1, "d": 1},
        "products_candidate": {"a": 1},
    }
    switched: ClassVar[list[str]] = []

    def __init__(self, _milvus: object, _alias: str) -> None:
        pass

    def generations(self) -> list[Generation]:
        return [
            Generation("products_served", Layout(ModelIdentity("served", 8, "f1")), 4, True),
            Generation("products_candidate", Layout(ModelIdentity("candidate", 8, "f2")), 1, False),
        ]

    def find(self, model: str) -> Generation:
        for generation in self.generations():
            if model in (generation.model, generation.collection):
                return generation
        raise GenerationNotFound(f"no generation of {model!r}")

    def product_versions(self, collection: str) -> dict[str, int]:
        return self.versions[collection]

    def serve(self, collection: str) -> None:
        self.switched.append(collection)


class StubMilvus:
    @classmethod
    def from_settings(cls, *_args: object, **_kwargs: object) -> StubMilvus:
        return cls()

    def close(self) -> None:
        pass


@pytest.fixture
def stub_index(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setattr(commands, "IndexAdmin", StubAdmin)
    monkeypatch.setattr(commands, "Milvus", StubMilvus)
    StubAdmin.switched = []
    return StubAdmin.switched


def test_a_refused_promotion_names_every_problem_on_one_line_and_exits_1(
    stub_index: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["index", "promote", "candidate"]) == 1
    line = failure(capsys)
    assert line.startswith("catalens index promote: not promoted: rows differ: 1 in the")
    assert "3 served products missing" in line
    assert "1 products at an older version than served, e.g. a: 1 < 2" in line
    assert line.endswith("(--force promotes anyway)")
    assert stub_index == []  # the alias did not move


def test_a_forced_promotion_moves_the_alias_and_exits_0(
    stub_index: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["index", "promote", "candidate", "--force"]) == 0
    assert stub_index == ["products_candidate"]
    assert "now serves candidate" in capsys.readouterr().out


def test_dropping_a_generation_the_alias_does_not_have_exits_1_naming_it(
    stub_index: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["index", "drop", "nothing"]) == 1
    assert failure(capsys).startswith("catalens index drop: no generation of 'nothing'")


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        (["api"], {"CATALENS_API_PORT": "70000"}, "CATALENS_API_PORT"),
        (["api", "--api-port", "0"], {}, "--api-port"),
        (["status"], {"CATALENS_RETRY_MAX_S": "soon"}, "CATALENS_RETRY_MAX_S"),
    ],
)
def test_an_invalid_setting_exits_2_naming_the_variable_or_option_it_came_from(
    argv: list[str],
    env: dict[str, str],
    named: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli.main(argv) == 2
    assert failure(capsys).startswith(f"catalens {argv[0]}: invalid configuration: {named}: ")


def test_a_command_line_that_cannot_be_read_exits_2_by_argparse_or_by_the_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["index", "rename"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith("catalens index: error: ")
    assert cli.main(["index", "promote"]) == 2
    assert failure(capsys) == "catalens index promote: name the MODEL to promote"


def test_a_command_interrupted_by_ctrl_c_exits_130_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(_settings: object) -> list[commands.GenerationStatus]:
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "status", interrupted)
    assert cli.main(["index", "status"]) == 130
    assert failure(capsys) == "catalens index status: interrupted"


def test_a_bug_is_not_mapped_to_an_exit_status_but_crashes_with_its_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def bug(_settings: object) -> list[commands.GenerationStatus]:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(commands, "status", bug)
    with pytest.raises(ZeroDivisionError):
        cli.main(["index", "status"])


def test_a_status_with_parts_it_could_not_read_prints_the_rest_then_exits_1_naming_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from catalens.ops import status as status_module

    unread = status_module.Status(errors={"generations": "Milvus away"})
    unread.workers.append(status_module.WorkerScrape("http://sink:8082", error="refused"))
    monkeypatch.setattr(status_module, "collect", lambda *_a, **_k: unread)
    assert cli.main(["status", "--json"]) == 1
    captured = capsys.readouterr()
    assert '"generations": "Milvus away"' in captured.out
    assert captured.err.splitlines() == [
        "catalens status: could not read generations, worker http://sink:8082"
    ]
