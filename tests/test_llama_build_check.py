"""The llama-cpp-python build check: a build that dies by signal is reported, once, never run in-process."""

from __future__ import annotations

import json

import pytest

from arawn_core.llm import selftest
from arawn_core.llm.embedded import EmbeddedUnavailable, LlamaRunner, ensure_default_model

CRASH = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(selftest, "_checked", {})
    return tmp_path / "cache"


def test_a_build_that_dies_by_signal_is_named_with_the_fix_and_cached(fresh_cache, tmp_path, monkeypatch) -> None:
    problem = selftest.native_build_problem(tmp_path / "model.gguf", child_code=CRASH)
    assert problem and "SIGSEGV" in problem and "-DGGML_NATIVE=OFF" in problem and "\n" not in problem
    verdicts = json.loads(selftest.cache_file().read_text())
    assert verdicts == {selftest.build_key(): {"runs": False, "problem": problem}}
    # a new process reads the verdict instead of running the child again
    monkeypatch.setattr(selftest, "_checked", {})
    monkeypatch.setattr(selftest.subprocess, "run", lambda *a, **k: pytest.fail("the check ran twice"))
    assert selftest.native_build_problem(tmp_path / "model.gguf") == problem


def test_the_runner_refuses_to_load_with_a_crashing_build(fresh_cache, monkeypatch) -> None:
    monkeypatch.setattr(selftest, "CHILD_CODE", CRASH)
    runner = LlamaRunner(ensure_default_model(progress=None), n_threads=1)
    with pytest.raises(EmbeddedUnavailable, match="crashes on this CPU .*SIGSEGV"):
        runner.load(256)
    assert runner._llm is None  # nothing was loaded in this process


async def test_doctor_shows_a_recorded_crash(fresh_cache, tmp_path, monkeypatch) -> None:
    from arawn_core.llm.embedded import EmbeddedBackend

    backend = EmbeddedBackend(ensure_default_model(progress=None))
    try:
        assert (await backend.info()).reachable  # nothing recorded yet: the check has not run
        problem = selftest.native_build_problem(tmp_path / "model.gguf", child_code=CRASH)
        monkeypatch.setattr(selftest, "_checked", {})  # as a new process would see it: from the cache file
        info = await backend.info()
        assert not info.reachable and problem in info.detail
    finally:
        await backend.aclose()


def test_other_failures_are_no_verdict(fresh_cache, tmp_path) -> None:
    assert selftest.native_build_problem(tmp_path / "model.gguf", child_code="raise SystemExit(3)") is None
    assert not selftest.cache_file().exists()  # the real load reports a bad file or package itself


def test_the_installed_build_runs_the_real_model(fresh_cache) -> None:
    """The build CI installs (README's CMAKE_ARGS) passes the check, and the runner then loads and generates."""
    path = ensure_default_model(progress=None)
    assert selftest.native_build_problem(path) is None
    assert json.loads(selftest.cache_file().read_text())[selftest.build_key()]["runs"] is True
    runner = LlamaRunner(path, n_threads=2)
    try:
        runner.load(256)
        assert runner.count_tokens("hello world") >= 2
    finally:
        runner.close()
