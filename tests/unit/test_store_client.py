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
