"""TUI test fixtures: a throwaway data dir, no user config, a scripted fake backend,
fast polling, UTC display time, and helpers to wait for the app to settle."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.message import Message
from textual.pilot import Pilot

from arawn_core.config import Settings, parse_settings
from arawn_core.core import ArawnCore
from arawn_core.runtime import Scheduler
from arawn_tui.app import ArawnApp
from arawn_tui import workers as groups
from arawn_tui.messages import EngineEvent
from arawn_tui.factory import create_app
from tests.fakes import FakeBackend

TEST_TOML = """
[llm]
model = "fake-model"

[workstream.compression]
verbatim_max_chars = 0   # every session goes through the (fake) LLM
retry_base_s = 0.05
retry_max_s = 0.2
max_concurrency = 2
max_jobs = 2
"""

FIXED_TS = "2026-01-15T12:00:00.000000Z"


@pytest.fixture(autouse=True)
def _tui_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Keep the user's config out, show times in UTC, and poll quickly."""
    config = tmp_path / "no-user-config.toml"
    config.write_text("# tests build their settings explicitly\n")
    monkeypatch.setenv("ARAWN_CONFIG", str(config))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setattr(Scheduler, "POLL_S", 0.1)
    monkeypatch.setattr(Scheduler, "HEALTH_EVERY_S", 0.3)
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def tui_settings(tmp_path: Path) -> Settings:
    return parse_settings(TEST_TOML, "tui-test.toml").with_data_dir(tmp_path / "data")


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend(models=["fake-model", "other-model"])


@pytest.fixture
def make_app(tui_settings: Settings, backend: FakeBackend) -> Callable[..., ArawnApp]:
    def make(settings: Settings | None = None, fake: FakeBackend | None = None) -> ArawnApp:
        return create_app(settings or tui_settings, fake or backend)

    return make


class Recorder:
    """A `run_test(message_hook=...)` that keeps every message the app pumped."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def __call__(self, message: Message) -> None:
        self.messages.append(message)

    def of(self, kind: type) -> list:
        return [m for m in self.messages if isinstance(m, kind)]

    def events(self, kind: type) -> list:
        """The engine events of `kind` the app posted (each once, though it bubbles through several nodes)."""
        seen = {id(m.event): m.event for m in self.messages if isinstance(m, EngineEvent) and isinstance(m.event, kind)}
        return list(seen.values())


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


async def wait_until(pilot: Pilot, condition: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Let the app run until `condition()` is true (fail with `what` after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await pilot.pause(0.02)


async def ready(pilot: Pilot) -> ArawnApp:
    """The core is open and the first data is on screen."""
    app: ArawnApp = pilot.app  # type: ignore[assignment]
    await wait_until(pilot, lambda: app.core is not None and app.main_screen.loaded, what="the app to load")
    await pilot.pause()
    return app


async def settle(pilot: Pilot) -> None:
    """No job worker running, nothing queued to refresh."""
    app: ArawnApp = pilot.app  # type: ignore[assignment]

    def idle() -> bool:
        if app.scheduler is not None and app.scheduler.running_jobs:
            return False
        return not any(w.group in groups.LOADING | {groups.CHAT} and not w.is_finished for w in app.workers)

    await wait_until(pilot, idle, what="workers to finish")
    await pilot.pause(0.2)
    await wait_until(pilot, idle, what="workers to finish")


def write_conversations(path: Path, conversations: list[list[tuple[str, str, str]]]) -> Path:
    """A `messages`-format import file: one conversation a line, (role, content, timestamp) each."""
    lines = []
    for n, conv in enumerate(conversations):
        msgs = [{"role": r, "content": c, "timestamp": t} for r, c, t in conv]
        lines.append(json.dumps({"id": f"conv-{n}", "messages": msgs}))
    path.write_text("\n".join(lines) + "\n")
    return path


def pin_summary_times(settings: Settings) -> None:
    """Summaries record when they were made and (with the engine's prompts) how many
    tokens they took; pin both so pictures do not change with the clock or a prompt edit."""
    with sqlite3.connect(settings.data_dir / "arawn.db") as db:
        db.execute("UPDATE summaries SET created_at = ?, duration_s = 1.0, input_tokens = 600, output_tokens = 40",
                   (FIXED_TS,))


async def open_core(settings: Settings, fake: FakeBackend | None = None) -> ArawnCore:
    return await ArawnCore.open(settings, fake or FakeBackend(models=["fake-model", "other-model"]))
