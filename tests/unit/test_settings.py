"""Settings: where the embedder keeps its int8 models between starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from catalens.settings import EmbedderSettings


def test_the_int8_cache_defaults_to_the_users_cache_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CATALENS_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert EmbedderSettings().cache_dir == tmp_path / ".cache" / "catalens"


def test_catalens_cache_dir_moves_the_int8_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CATALENS_CACHE_DIR", str(tmp_path / "models"))
    assert EmbedderSettings().cache_dir == tmp_path / "models"


def test_tests_keep_the_int8_cache_in_the_sessions_folder_not_in_home(
    session_cache: Path,
) -> None:
    cache_dir = EmbedderSettings().cache_dir
    assert cache_dir.is_relative_to(session_cache)
    assert not cache_dir.is_relative_to(Path.home())
