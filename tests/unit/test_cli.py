"""Command-line options reach the settings of the command, and `up` hands its settings on
to the services it starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from catalens.ops.cli import _settings, build_parser
from catalens.ops.up import service_env
from catalens.settings import (
    ApiSettings,
    CatalensSettings,
    EmbedderSettings,
    SinkSettings,
    StatusSettings,
)

SETTINGS = {
    "up": ApiSettings,
    "publish": CatalensSettings,
    "embedder": EmbedderSettings,
    "sink": SinkSettings,
    "api": ApiSettings,
    "dlq": CatalensSettings,
    "status": StatusSettings,
}
POSITIONAL = {"publish": ["events.jsonl"], "dlq": ["show"]}
# Options that are the command's own, not settings.
OWN = {"data_dir", "sample_size", "images", "version", "image_base_url", "quiet", "reason"}
OWN |= {"product", "limit", "timeout", "action", "path", "command", "func"}
OWN |= {"json", "worker", "dead_letters", "since", "milvus_server", "judgments", "mode"}
OWN |= {"generation", "eval", "eval_tolerance", "eval_mode", "k", "tolerance", "force"}


def _value(field: str) -> str:
    return "9123" if field.endswith("port") else "DEBUG" if field == "log_level" else f"x_{field}"


@pytest.mark.parametrize("command", sorted(SETTINGS))
def test_every_option_of_a_command_sets_the_setting_of_the_same_name(command: str) -> None:
    parser = build_parser()
    defaults = parser.parse_args([command, *POSITIONAL.get(command, [])])
    fields = [name for name in vars(defaults) if name not in OWN]
    assert {"kafka_bootstrap", "input_topic", "log_level"} <= set(fields)
    argv = [command, *POSITIONAL.get(command, [])]
    for field in fields:
        argv += [f"--{field.replace('_', '-')}", _value(field)]
    settings = _settings(SETTINGS[command], parser.parse_args(argv))
    for field in fields:
        assert str(getattr(settings, field)) == _value(field), field


def test_up_passes_its_options_and_environment_on_to_the_services(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CATALENS_DLQ_TOPIC", "from-env.dlq")
    monkeypatch.setenv("CATALENS_KAFKA_SASL_PASSWORD", "secret")
    argv = ["up", "--input-topic", "shop.images", "--log-level", "DEBUG", "--api-port", "9123"]
    settings = _settings(ApiSettings, build_parser().parse_args(argv))
    env = service_env(settings, Path("/sample/images"))
    assert env["CATALENS_INPUT_TOPIC"] == "shop.images"
    assert env["CATALENS_LOG_LEVEL"] == "DEBUG"
    assert env["CATALENS_API_PORT"] == "9123"
    assert env["CATALENS_DLQ_TOPIC"] == "from-env.dlq"
    assert env["CATALENS_KAFKA_SASL_PASSWORD"] == "secret"
    assert env["CATALENS_IMAGE_ROOTS"] == "/sample/images"
    assert "CATALENS_MILVUS_TOKEN" not in env  # unset stays unset
    # What the services read back from that environment is what `up` was given.
    monkeypatch.delenv("CATALENS_DLQ_TOPIC")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for cls in (EmbedderSettings, SinkSettings, ApiSettings):
        seen = cls()
        assert (seen.input_topic, seen.log_level, seen.dlq_topic) == (
            "shop.images",
            "DEBUG",
            "from-env.dlq",
        )


def test_up_starts_local_infrastructure_only_where_none_was_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CATALENS_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("CATALENS_MILVUS_URI", raising=False)
    parser = build_parser()
    assert {"kafka_bootstrap", "milvus_uri"}.isdisjoint(
        _settings(ApiSettings, parser.parse_args(["up"])).model_fields_set
    )
    given = _settings(ApiSettings, parser.parse_args(["up", "--kafka-bootstrap", "k:9092"]))
    assert "kafka_bootstrap" in given.model_fields_set
    monkeypatch.setenv("CATALENS_MILVUS_URI", "http://milvus:19530")
    assert "milvus_uri" in _settings(ApiSettings, parser.parse_args(["up"])).model_fields_set
