"""The Milvus adapter is built from the settings in one place, token and all."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from catalens.settings import CatalensSettings
from catalens.store import client as store_client
from catalens.store.client import Milvus


@pytest.mark.parametrize(("token", "sent"), [(SecretStr("root:Milvus"), "root:Milvus"), (None, "")])
def test_a_milvus_built_from_settings_connects_to_their_uri_with_their_token_unwrapped(
    monkeypatch: pytest.MonkeyPatch, token: SecretStr | None, sent: str
) -> None:
    built: list[dict[str, Any]] = []

    class Recorder:
        """Stands in for pymilvus' client: records how it was built, lists nothing."""

        def __init__(self, **kwargs: Any) -> None:
            built.append(kwargs)

        def list_collections(self, **_kwargs: Any) -> list[str]:
            return []

    monkeypatch.setattr(store_client, "MilvusClient", Recorder)
    settings = CatalensSettings(milvus_uri="http://milvus:19530", milvus_token=token)
    assert Milvus.from_settings(settings, timeout_s=3).list_collections() == []
    assert built == [{"uri": "http://milvus:19530", "token": sent, "timeout": 3}]


@pytest.mark.parametrize(("replicas", "sent"), [(1, {}), (3, {"replica_number": 3})])
def test_generations_are_loaded_with_the_replicas_the_settings_name(
    monkeypatch: pytest.MonkeyPatch, replicas: int, sent: dict[str, int]
) -> None:
    """One replica is the server's default and is not sent: standalone and Lite refuse
    more than one."""
    loads: list[dict[str, Any]] = []

    class Recorder:
        def __init__(self, **_kwargs: Any) -> None:
            pass

        def load_collection(self, name: str, **kwargs: Any) -> None:
            loads.append({"name": name, **kwargs})

    monkeypatch.setattr(store_client, "MilvusClient", Recorder)
    settings = CatalensSettings(milvus_replicas=replicas)
    Milvus.from_settings(settings, timeout_s=3).load("products__clip")
    assert loads == [{"name": "products__clip", "timeout": 3, **sent}]
