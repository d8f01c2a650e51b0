"""docker-compose.yml cannot run here (no Docker engine), so its structure is checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_the_stack_has_kafka_in_kraft_mode_milvus_with_its_dependencies_and_the_services() -> None:
    services = compose()["services"]
    assert {"kafka", "etcd", "minio", "milvus", "embedder", "sink", "api"} <= set(services)
    kafka_env = services["kafka"]["environment"]
    assert "controller" in kafka_env["KAFKA_PROCESS_ROLES"]
    assert "ZOOKEEPER" not in " ".join(kafka_env)
    assert services["milvus"]["command"][-1] == "standalone"
    assert services["milvus"]["environment"]["ETCD_ENDPOINTS"].startswith("etcd:")
    assert services["milvus"]["environment"]["MINIO_ADDRESS"].startswith("minio:")


def test_every_service_has_a_health_check_and_waits_for_healthy_dependencies() -> None:
    services = compose()["services"]
    for name, service in services.items():
        assert "healthcheck" in service, name
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in services, (name, dependency)
            assert rule["condition"] == "service_healthy", (name, dependency)
    for role in ("embedder", "sink", "api"):
        assert services[role]["depends_on"].keys() == {"kafka", "milvus"}


def test_services_are_configured_only_through_the_catalens_variables() -> None:
    services = compose()["services"]
    for role in ("embedder", "sink", "api"):
        env = services[role]["environment"]
        assert env["CATALENS_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert env["CATALENS_MILVUS_URI"] == "http://milvus:19530"
        assert "CATALENS_MODEL" in env
        assert services[role]["command"] == [role]
    assert services["api"]["environment"]["CATALENS_API_PORT"] == "8000"
    assert (ROOT / "Dockerfile").exists()
