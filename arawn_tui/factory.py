"""The one way to build the app, shared by `arawn_tui.__main__` and the tests."""

from __future__ import annotations

from arawn_core.config import Settings
from arawn_core.llm.base import LLMBackend
from arawn_tui.app import ArawnApp


def create_app(settings: Settings, backend: LLMBackend | None = None, tune_gc: bool = False) -> ArawnApp:
    """An `ArawnApp` over `settings` (already loaded and validated by the caller).

    `backend` replaces the configured LLM backend (tests pass a fake); the core
    is opened by the app itself, in a worker, once it is mounted. `tune_gc` only
    where the process is the app's (`arawn`, after `tune_process_for_tui`).
    """
    return ArawnApp(settings, backend, tune_gc=tune_gc)
