"""Shared fixtures: every test gets a throwaway data dir and never sees the user's config or data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from arawn_core.config import Settings, parse_settings

pytest_plugins = ["tests.conftest_ollama"]


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path_factory.mktemp("home")
    for var in ("ARAWN_CONFIG", "OLLAMA_HOST"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")))
    monkeypatch.chdir(home)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def make_settings(data_dir: Path, toml: str = "") -> Settings:
    return parse_settings(toml, "test.toml").with_data_dir(data_dir)


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return make_settings(data_dir, "[workstream.compression]\nretry_base_s = 0.01\nretry_max_s = 0.05\n")


@pytest.fixture
def fake_backend():
    from tests.fakes import FakeBackend

    return FakeBackend()


@pytest.fixture
async def core(settings: Settings, fake_backend):
    from arawn_core.core import ArawnCore

    c = await ArawnCore.open(settings, fake_backend)
    yield c
    await c.close(end_sessions=False)
