"""Pytest fixtures for the Ollama-protocol test server (`tests/ollama_server.py`).

Not named conftest.py on purpose: only the tests that talk HTTP pay for it.
Use it with a direct import in the test module::

    from conftest_ollama import ollama_server, dead_ollama_url  # noqa: F401

(or ``from tests.conftest_ollama import ...`` when tests/ is a package).
"""

from __future__ import annotations

from typing import Iterator

import pytest

try:
    from tests.ollama_server import OllamaServer, ScriptedEngine, free_port
except ModuleNotFoundError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from ollama_server import OllamaServer, ScriptedEngine, free_port  # type: ignore[no-redef]


@pytest.fixture
def ollama_server() -> Iterator[OllamaServer]:
    """A fresh server with one `ScriptedEngine` named "scripted", on a free 127.0.0.1 port.

    `.url`, `.engine`, `.requests` (every request's JSON body, with `.path`),
    fault setters `fail_next`, `delay_next`, `cut_stream_next`, `close_next`,
    `fill_context_next`, `clear_faults`.
    """
    server = OllamaServer(ScriptedEngine()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def dead_ollama_url() -> str:
    """An http://127.0.0.1 URL on a port where nothing listens (connection refused)."""
    return f"http://127.0.0.1:{free_port()}"
