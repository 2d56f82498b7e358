"""Backend faults through a real HTTP server: the right status, nothing lost, the next command works.

Every test here talks to `tests/ollama_server.py` (the Ollama protocol over
real HTTP, a deterministic `ScriptedEngine` that echoes every `MARKER-xxx` of
its prompt) through the real `ollama` client: in process via `ArawnCore` +
`OllamaBackend`, and as the installed CLI in a subprocess whose config points
`[llm] host` at the server.

What each fault must lead to:

* transient (refused connection, HTTP 500, timeout, a stream or body cut
  mid-line, a connection closed without a reply): the chat turn fails with a
  clear error but the user's message is stored (a partly streamed reply is
  kept, marked interrupted); a compression job goes back to `pending` with a
  backoff and succeeds on a later attempt; the CLI exits 3 (unreachable) or 1.
* permanent (404 model, another 4xx, a summary cut at num_predict twice):
  the job is `failed` at once with the reason (404 -> "ollama pull <model>").
* overflow (a 400 about the context, a reply reporting a filled context, a
  prompt the server really cut): the summarizer learns, splits smaller and
  redoes the piece inside the same job; the final summary still holds the
  markers from the start, the middle and the end of the transcript.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from arawn_core.config import parse_settings
from arawn_core.core import ArawnCore
from arawn_core.llm.errors import BackendError, BackendUnavailable, LLMTimeout, ModelNotFound
from arawn_core.llm.ollama_backend import OllamaBackend
from arawn_core.models import JobKind, JobState
from tests.ollama_server import MARKER_RE, OllamaServer, ScriptedEngine, free_port

REPO = Path(__file__).resolve().parents[2]
MODEL = "scripted"
MARKERS = ["MARKER-start", "MARKER-middle", "MARKER-end"]


# ------------------------------------------------------------------ helpers


def fault_settings(data_dir: Path, host: str, *, model: str = MODEL, num_ctx: int = 2048, timeout: float = 5.0,
                   retry_base_s: float = 0.01, retry_max_s: float = 0.05, max_attempts: int = 5,
                   max_summary_tokens: int = 256):
    toml = f"""
[llm]
backend = "ollama"
host = "{host}"
model = "{model}"
num_ctx = {num_ctx}
request_timeout_s = {timeout}
max_reply_tokens = 256

[workstream.compression]
retry_base_s = {retry_base_s}
retry_max_s = {retry_max_s}
max_attempts = {max_attempts}
max_summary_tokens = {max_summary_tokens}
min_messages = 0
verbatim_max_chars = 0
"""
    return parse_settings(toml, "faults.toml").with_data_dir(data_dir)


async def open_core(data_dir: Path, host: str, **kw) -> ArawnCore:
    settings = fault_settings(data_dir, host, **kw)
    return await ArawnCore.open(settings, OllamaBackend(host, settings.llm.request_timeout_s))


async def ended_session(core: ArawnCore, texts: list[str], title: str = "Faults") -> tuple[str, str]:
    """A workstream with one ended session holding `texts` (alternating user/assistant); (ws id, session id)."""
    ws = await core.create_workstream(title)
    for i, text in enumerate(texts):
        await core.append_message(ws.id, "user" if i % 2 == 0 else "assistant", text)
    session = await core.end_session(ws.id)
    assert session is not None
    return ws.id, session.id


def transcript_with_markers(n: int = 6, words: int = 15) -> list[str]:
    """n messages; MARKERS planted in the first, the middle and the last."""
    texts = [" ".join(f"word{i}x{j}" for j in range(words)) for i in range(n)]
    texts[0] = f"{MARKERS[0]} {texts[0]}"
    texts[n // 2] = f"{texts[n // 2]} {MARKERS[1]}"
    texts[-1] = f"{texts[-1]} {MARKERS[2]}"
    return texts


def chat_requests(server: OllamaServer) -> list[dict]:
    return [r for r in server.requests if r.path == "/api/chat"]


async def send(core: ArawnCore, ws_id: str, text: str) -> str:
    return "".join([piece async for piece in core.send(ws_id, text)])


async def session_roles(core: ArawnCore, ws_id: str) -> list[tuple[str, str, bool]]:
    out = []
    for s in await core.list_sessions(ws_id):
        for m in await core.session_messages(s.id):
            out.append((m.role, m.content, bool((m.metadata or {}).get("interrupted"))))
    return out


async def assert_summary_has_markers(core: ArawnCore, ws_id: str, session_id: str) -> None:
    session_summary = await core.session_summary(session_id)
    ws_summary = await core.workstream_summary(ws_id)
    assert session_summary is not None and ws_summary is not None
    for marker in MARKERS:
        assert marker in session_summary.text, (marker, session_summary.text)
        assert marker in ws_summary.text, (marker, ws_summary.text)


# ------------------------------------------------------------------ chat turns


TRANSIENT_CHAT_FAULTS = {
    "http-500": (lambda s: s.fail_next(1, status=500, error="boom"), BackendError, "HTTP 500"),
    "http-503": (lambda s: s.fail_next(1, status=503, error="loading model"), BackendError, "HTTP 503"),
    "timeout": (lambda s: s.delay_next(3.0), LLMTimeout, "timed out"),
    "closed-without-reply": (lambda s: s.close_next(1), BackendError, ""),
    "stream-stops-mid-line": (lambda s: s.cut_stream_next(1, after=1), BackendError, "broke"),
    "stream-ends-cleanly-without-done": (lambda s: s.cut_stream_next(1, after=1, partial=False, clean_eof=True),
                                         BackendError, "ended before its final message"),
}


@pytest.mark.parametrize("fault", sorted(TRANSIENT_CHAT_FAULTS))
async def test_chat_fault_keeps_the_users_message_and_the_next_turn_works(
        fault: str, tmp_path: Path, ollama_server: OllamaServer) -> None:
    inject, error_type, words = TRANSIENT_CHAT_FAULTS[fault]
    core = await open_core(tmp_path / "data", ollama_server.url, timeout=1.0)
    try:
        ws = await core.create_workstream("Chat")
        assert await send(core, ws.id, "first MARKER-one") == "Noted. MARKER-one"
        inject(ollama_server)
        got: list[str] = []
        with pytest.raises(error_type) as info:
            async for piece in core.send(ws.id, "second MARKER-two"):
                got.append(piece)
        assert info.value.transient, info.value
        assert words in str(info.value)
        # the next turn works, and sees the turn whose reply failed
        assert await send(core, ws.id, "third MARKER-three") == "Noted. MARKER-one MARKER-two MARKER-three"
        stored = await session_roles(core, ws.id)
        expected = [("user", "first MARKER-one", False), ("assistant", "Noted. MARKER-one", False),
                    ("user", "second MARKER-two", False)]
        if got:  # streamed before the cut: kept, marked interrupted, never passed off as whole
            assert fault.startswith("stream")
            expected.append(("assistant", "".join(got), True))
        expected += [("user", "third MARKER-three", False),
                     ("assistant", "Noted. MARKER-one MARKER-two MARKER-three", False)]
        assert stored == expected
    finally:
        await core.close(end_sessions=False)


async def test_chat_refused_connection_then_server_comes_up(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    core = await open_core(tmp_path / "data", url)
    try:
        ws = await core.create_workstream("Down")
        with pytest.raises(BackendUnavailable) as info:
            await send(core, ws.id, "hello MARKER-one")
        assert url in str(info.value) and "ollama serve" in str(info.value)
        assert [m[:2] for m in await session_roles(core, ws.id)] == [("user", "hello MARKER-one")]
        with OllamaServer(ScriptedEngine(), port=port):
            assert await send(core, ws.id, "again") == "Noted. MARKER-one"
    finally:
        await core.close(end_sessions=False)


async def test_chat_unknown_model_says_ollama_pull(tmp_path: Path, ollama_server: OllamaServer) -> None:
    core = await open_core(tmp_path / "data", ollama_server.url, model="no-such-model")
    try:
        ws = await core.create_workstream("404")
        with pytest.raises(ModelNotFound) as info:
            await send(core, ws.id, "hello")
        assert not info.value.transient and "ollama pull no-such-model" in str(info.value)
        assert [m[:2] for m in await session_roles(core, ws.id)] == [("user", "hello")]
    finally:
        await core.close(end_sessions=False)


async def test_chat_reply_with_an_unpaired_surrogate_is_stored(tmp_path: Path) -> None:
    """A server may send a JSON escape like \\ud800 without its pair: the reply is still stored (as U+FFFD)."""
    engine = ScriptedEngine(script="bad \ud800 text")
    with OllamaServer(engine) as server:
        core = await open_core(tmp_path / "data", server.url)
        try:
            ws = await core.create_workstream("Surrogate")
            assert await send(core, ws.id, "hi") == "bad \ufffd text"
            assert (await session_roles(core, ws.id))[-1] == ("assistant", "bad \ufffd text", False)
        finally:
            await core.close(end_sessions=False)


# ------------------------------------------------------------------ compression jobs: transient


TRANSIENT_JOB_FAULTS = {
    "http-500": (lambda s: s.fail_next(2, status=500), "HTTP 500"),
    "timeout": (lambda s: s.delay_next(2.5, n=2), "timed out"),
    "body-cut-mid-line": (lambda s: s.cut_stream_next(2), "broke"),
    "closed-without-reply": (lambda s: s.close_next(2), ""),
}


@pytest.mark.parametrize("fault", sorted(TRANSIENT_JOB_FAULTS))
async def test_transient_job_fault_retries_with_backoff_and_completes(
        fault: str, tmp_path: Path, ollama_server: OllamaServer) -> None:
    inject, words = TRANSIENT_JOB_FAULTS[fault]
    core = await open_core(tmp_path / "data", ollama_server.url, timeout=1.0)
    try:
        texts = transcript_with_markers()
        ws_id, session_id = await ended_session(core, texts)
        inject(ollama_server)
        before = time.time()
        outcome = await core.run_next()
        assert outcome is not None and not outcome.ok and outcome.will_retry
        [job] = await core.list_jobs(workstream_id=ws_id)
        assert job.kind is JobKind.SESSION and job.state is JobState.PENDING and job.attempts == 1
        assert job.next_attempt_at > before and words in (job.last_error or "")
        assert (await core.get_workstream(ws_id)).compression.value == "pending"
        outcomes = await core.work_queue(ws_id)
        assert [o.ok for o in outcomes][-2:] == [True, True]  # the session job, then the reduce
        jobs = {j.kind: j for j in await core.list_jobs(workstream_id=ws_id)}
        assert jobs[JobKind.SESSION].state is JobState.DONE and jobs[JobKind.SESSION].attempts == 3
        assert jobs[JobKind.REDUCE].state is JobState.DONE
        await assert_summary_has_markers(core, ws_id, session_id)
        # nothing lost: the transcript is intact
        assert [m.content for m in await core.session_messages(session_id)] == texts
    finally:
        await core.close(end_sessions=False)


async def test_backoff_holds_the_job_until_it_is_due_and_grows(tmp_path: Path, ollama_server: OllamaServer) -> None:
    core = await open_core(tmp_path / "data", ollama_server.url, retry_base_s=0.5, retry_max_s=5.0)
    try:
        ws_id, session_id = await ended_session(core, transcript_with_markers())
        ollama_server.fail_next(2, status=500)
        waits = []
        for _ in range(2):
            while (outcome := await core.run_next()) is None:  # not due yet: no hammering a failing server
                await asyncio.sleep(0.02)
            assert not outcome.ok and outcome.will_retry
            assert await core.run_next() is None
            waits.append(await core.queue.next_due_in(ws_id))
        # the base, then twice the base (each +-20% jitter, minus the time spent getting here)
        assert 0.25 < waits[0] <= 0.6 and 0.55 < waits[1] <= 1.2 and waits[1] > waits[0]
        outcomes = await core.work_queue(ws_id)
        assert outcomes and all(o.ok for o in outcomes)
        await assert_summary_has_markers(core, ws_id, session_id)
    finally:
        await core.close(end_sessions=False)


async def test_refused_connection_keeps_the_job_pending_until_the_server_is_back(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    core = await open_core(tmp_path / "data", url)
    try:
        ws_id, session_id = await ended_session(core, transcript_with_markers())
        outcomes = await core.work_queue(ws_id)  # stops at the first unreachable outcome
        assert len(outcomes) == 1 and isinstance(outcomes[0].error, BackendUnavailable)
        [job] = await core.list_jobs(workstream_id=ws_id)
        assert job.state is JobState.PENDING and job.attempts == 1
        assert "unreachable" in job.last_error and url in job.last_error
        with OllamaServer(ScriptedEngine(), port=port):
            outcomes = await core.work_queue(ws_id)
        assert outcomes and all(o.ok for o in outcomes)
        await assert_summary_has_markers(core, ws_id, session_id)
    finally:
        await core.close(end_sessions=False)


async def test_transient_fault_that_never_clears_fails_after_max_attempts(
        tmp_path: Path, ollama_server: OllamaServer) -> None:
    core = await open_core(tmp_path / "data", ollama_server.url, max_attempts=3)
    try:
        ws_id, session_id = await ended_session(core, transcript_with_markers())
        ollama_server.fail_next(None, status=502, error="bad gateway")
        outcomes = await core.work_queue(ws_id)
        assert [o.will_retry for o in outcomes] == [True, True, False]
        [job] = await core.list_jobs(workstream_id=ws_id)
        assert job.state is JobState.FAILED and job.attempts == 3 and "HTTP 502" in job.last_error
        assert await core.session_summary(session_id) is None
        ws = await core.get_workstream(ws_id)
        assert ws.compression.value == "failed" and "HTTP 502" in ws.last_error
        ollama_server.clear_faults()
        assert await core.retry_jobs(workstream_id=ws_id) == 1
        assert all(o.ok for o in await core.work_queue(ws_id))
        await assert_summary_has_markers(core, ws_id, session_id)
    finally:
        await core.close(end_sessions=False)


# ------------------------------------------------------------------ compression jobs: permanent


async def test_unknown_model_fails_the_job_at_once_with_ollama_pull(tmp_path: Path, ollama_server: OllamaServer) -> None:
    data = tmp_path / "data"
    core = await open_core(data, ollama_server.url, model="no-such-model")
    try:
        ws_id, session_id = await ended_session(core, transcript_with_markers())
        outcomes = await core.work_queue(ws_id)
        assert len(outcomes) == 1 and not outcomes[0].will_retry
        [job] = await core.list_jobs(workstream_id=ws_id)
        assert job.state is JobState.FAILED and job.attempts == 1
        assert "ollama pull no-such-model" in job.last_error
        [session] = await core.list_sessions(ws_id)
        assert session.compression.value == "failed" and "ollama pull no-such-model" in session.last_error
    finally:
        await core.close(end_sessions=False)
    # the user pulls the model (here: fixes the config) and retries: it completes
    core = await open_core(data, ollama_server.url)
    try:
        assert await core.retry_jobs() == 1
        assert all(o.ok for o in await core.work_queue(ws_id))
        await assert_summary_has_markers(core, ws_id, session_id)
    finally:
        await core.close(end_sessions=False)


async def test_other_4xx_fails_the_job_at_once(tmp_path: Path, ollama_server: OllamaServer) -> None:
    core = await open_core(tmp_path / "data", ollama_server.url)
    try:
        ws_id, _ = await ended_session(core, transcript_with_markers())
        ollama_server.fail_next(1, status=400, error="invalid option: mirostat")
        outcomes = await core.work_queue(ws_id)
        assert len(outcomes) == 1 and not outcomes[0].ok and not outcomes[0].will_retry
        [job] = await core.list_jobs(workstream_id=ws_id)
        assert job.state is JobState.FAILED and "invalid option: mirostat" in job.last_error
    finally:
        await core.close(end_sessions=False)


def _long_reply(prompt: list[str]) -> str:
    return " ".join(["Noted.", *dict.fromkeys(MARKER_RE.findall(" ".join(prompt)))] + ["blah"] * 600)


async def test_summary_cut_at_num_predict_is_never_stored_as_whole(tmp_path: Path) -> None:
    """A reply cut at num_predict is retried shorter once; cut again, the job fails: no truncated summary."""
    with OllamaServer(ScriptedEngine(script=_long_reply)) as server:
        core = await open_core(tmp_path / "data", server.url)
        try:
            ws_id, session_id = await ended_session(core, transcript_with_markers())
            outcomes = await core.work_queue(ws_id)
            assert len(outcomes) == 1 and not outcomes[0].will_retry
            [job] = await core.list_jobs(workstream_id=ws_id)
            assert job.state is JobState.FAILED and "max_summary_tokens" in job.last_error
            assert await core.session_summary(session_id) is None
            assert len(chat_requests(server)) == 2  # the first try and the "be much briefer" retry
            first, retry = (r["messages"] for r in chat_requests(server))
            assert "Be much briefer" in retry[-1]["content"]  # the note goes in the user message ...
            assert retry[0] == first[0]  # ... so the system prompt stays byte-identical (prompt cache)
            # a model that does shorten on request: the second, complete reply is the summary
            server.engine.script = [_long_reply(["MARKER-x"]), "Short. " + " ".join(MARKERS)]
            server.engine._script_pos = 0
            assert await core.retry_jobs() == 1
            assert all(o.ok for o in await core.work_queue(ws_id))
            assert (await core.session_summary(session_id)).text == "Short. " + " ".join(MARKERS)
        finally:
            await core.close(end_sessions=False)


# ------------------------------------------------------------------ overflow: re-split inside the job


OVERFLOW_CTX = 8192


def near_budget_transcript() -> list[str]:
    """~16k chars of ordinary words: one call with a fresh estimator at num_ctx=8192, split after an overflow.

    (At num_ctx=2048 a lower-bound observation of "2048 tokens" for a ~3k-char request teaches a ratio
    under which arawn's own prompt no longer fits, and the job fails asking for a larger num_ctx.)
    """
    return transcript_with_markers(n=6, words=280)


async def _control_calls(tmp_path: Path) -> int:
    """LLM calls the session job makes without any fault (a fresh estimator)."""
    with OllamaServer(ScriptedEngine()) as server:
        core = await open_core(tmp_path / "control", server.url, num_ctx=OVERFLOW_CTX)
        try:
            ws_id, session_id = await ended_session(core, near_budget_transcript())
            assert (await core.run_next()).ok
            await assert_summary_has_markers_session(core, session_id)
            return len(chat_requests(server))
        finally:
            await core.close(end_sessions=False)


async def assert_summary_has_markers_session(core: ArawnCore, session_id: str) -> None:
    summary = await core.session_summary(session_id)
    assert summary is not None and all(m in summary.text for m in MARKERS), summary


OVERFLOW_FAULTS = {
    "400-context": lambda s: s.fail_next(1, status=400, error="input length exceeds the context length"),
    "reply-reports-filled-context": lambda s: s.fill_context_next(1),
}


@pytest.mark.parametrize("fault", sorted(OVERFLOW_FAULTS))
async def test_overflow_resplits_inside_the_job_and_keeps_every_marker(
        fault: str, tmp_path: Path, ollama_server: OllamaServer) -> None:
    assert await _control_calls(tmp_path) == 1  # precondition: without the fault it is one call
    core = await open_core(tmp_path / "data", ollama_server.url, num_ctx=OVERFLOW_CTX)
    try:
        ws_id, session_id = await ended_session(core, near_budget_transcript())
        OVERFLOW_FAULTS[fault](ollama_server)
        outcome = await core.run_next()
        assert outcome is not None and outcome.ok, outcome.error
        assert outcome.llm_calls >= 4  # the overflowed call, >= 2 smaller pieces, their merge
        [job] = await core.list_jobs(workstream_id=ws_id, state=JobState.DONE)
        assert job.attempts == 1  # handled inside the job, not by a queue retry
        summary = await core.session_summary(session_id)
        assert summary.provenance.llm_calls == outcome.llm_calls
        assert all(o.ok for o in await core.work_queue(ws_id))
        await assert_summary_has_markers(core, ws_id, session_id)
    finally:
        await core.close(end_sessions=False)


def dense_transcript() -> list[str]:
    """Single-letter words: 2 chars a token for ScriptedEngine, denser than the estimator's 2.5 default."""
    texts = [" ".join("abcdefgh"[(i + j) % 8] for j in range(400)) for i in range(40)]
    texts[0] = f"{MARKERS[0]} {texts[0]}"
    texts[20] = f"{texts[20]} {MARKERS[1]}"
    texts[-1] = f"{texts[-1]} {MARKERS[2]}"
    return texts


async def test_prompt_the_server_silently_cut_is_detected_and_resplit(tmp_path: Path) -> None:
    """Ollama keeps only the last num_ctx tokens of a long prompt and says nothing; the job must notice."""
    engine = ScriptedEngine()
    num_ctx = 8192
    with OllamaServer(engine) as server:
        core = await open_core(tmp_path / "data", server.url, num_ctx=num_ctx)
        try:
            ws_id, session_id = await ended_session(core, dense_transcript())
            outcomes = await core.work_queue(ws_id)
            assert all(o.ok for o in outcomes), [str(o.error) for o in outcomes]
            assert outcomes[0].job.attempts == 1
            sizes = [len(engine.render(r["messages"])) for r in chat_requests(server)]
            cut = [n for n in sizes if n > num_ctx]
            assert cut, "precondition: some request was over num_ctx and cut by the server"
            assert len(cut) <= 3 and sizes[-1] <= num_ctx  # it learned: no more cut prompts after a few
            await assert_summary_has_markers(core, ws_id, session_id)
        finally:
            await core.close(end_sessions=False)


# ------------------------------------------------------------------ the CLI in a subprocess


class Cli:
    def __init__(self, tmp_path: Path, host: str) -> None:
        self.data = tmp_path / "data"
        self.configs: dict[str, Path] = {}
        self.host = host
        self.log: list[tuple] = []

    def config(self, name: str, host: str | None = None, model: str = MODEL, timeout: float = 1.0) -> Path:
        path = self.data.parent / f"{name}.toml"
        path.write_text(f'[llm]\nbackend = "ollama"\nhost = "{host or self.host}"\nmodel = "{model}"\n'
                        f"num_ctx = 2048\nrequest_timeout_s = {timeout}\n"
                        "[workstream.compression]\nretry_base_s = 0.01\nretry_max_s = 0.05\n"
                        "max_summary_tokens = 256\nmin_messages = 0\nverbatim_max_chars = 0\n")
        return path

    def __call__(self, cfg: Path, *argv: str, code: int | None = 0) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k not in ("OLLAMA_HOST", "ARAWN_CONFIG")}
        t0 = time.monotonic()
        p = subprocess.run([sys.executable, "-m", "arawn_tui", "--headless", "--config", str(cfg),
                            "--data-dir", str(self.data), *argv],
                           capture_output=True, text=True, cwd=REPO, env=env, timeout=120, stdin=subprocess.DEVNULL)
        assert "Traceback" not in p.stderr, p.stderr
        if code is not None:
            assert p.returncode == code, (argv, p.returncode, p.stdout, p.stderr)
        if p.returncode and argv[0] != "doctor":  # doctor reports on stdout
            assert p.stderr.strip() and p.stderr.strip().splitlines()[-1].startswith("arawn: "), p.stderr
        self.log.append((argv, p.returncode, round(time.monotonic() - t0, 2)))
        return p


def test_cli_exit_codes_and_recovery_through_faults(tmp_path: Path, ollama_server: OllamaServer) -> None:
    cli = Cli(tmp_path, ollama_server.url)
    ok = cli.config("ok")
    missing = cli.config("missing", model="no-such-model")
    dead = cli.config("dead", host=f"http://127.0.0.1:{free_port()}")

    cli(ok, "ws", "create", "F")
    assert cli(ok, "chat", "F", f"hello {MARKERS[0]}").stdout.strip() == f"Noted. {MARKERS[0]}"

    # transient faults: exit 1, one line, no traceback; the user's message is kept; the next command works
    ollama_server.fail_next(1, status=500, error="boom")
    p = cli(ok, "chat", "F", f"second {MARKERS[1]}", code=1)
    assert "HTTP 500" in p.stderr and p.stderr.count("\n") == 1
    ollama_server.delay_next(4.0)
    p = cli(ok, "chat", "F", "third", code=1)
    assert "timed out" in p.stderr
    ollama_server.cut_stream_next(1, after=1)
    p = cli(ok, "chat", "F", "fourth", code=1)
    assert p.stdout.startswith("Noted.")  # what streamed before the cut was shown
    assert "broke" in p.stderr
    p = cli(ok, "chat", "F", f"last {MARKERS[2]}")
    assert all(m in p.stdout for m in MARKERS)  # the model saw every stored turn, failed ones included
    [session] = json.loads(cli(ok, "--json", "ws", "show", "F").stdout)["sessions"]
    transcript = json.loads(cli(ok, "--json", "session", "show", session["id"]).stdout)
    assert [m["content"] for m in transcript if m["role"] == "user"] == [
        f"hello {MARKERS[0]}", f"second {MARKERS[1]}", "third", "fourth", f"last {MARKERS[2]}"]
    assert [m["metadata"].get("interrupted") for m in transcript if m["role"] == "assistant"] == [None, True, None]

    # compression through transient faults: retried with backoff, exit 0, the summary is complete
    cli(ok, "session", "end", "F")
    ollama_server.fail_next(2, status=500)
    p = cli(ok, "compress", "F")
    assert all(m in p.stdout for m in MARKERS), p.stdout
    assert "will retry" in p.stderr  # progress on stderr says so

    # a permanent fault: exit 1 with the fix; the jobs are failed at once, not pending
    p = cli(missing, "chat", "F", "to a missing model", code=1)
    assert "ollama pull no-such-model" in p.stderr
    p = cli(missing, "compress", "F", code=1)  # the summary is stale under this model: re-summarized, fails
    assert "ollama pull no-such-model" in p.stderr
    [job] = json.loads(cli(missing, "--json", "jobs", "list", "--state", "failed").stdout)
    assert job["attempts"] == 1 and "ollama pull no-such-model" in job["last_error"]

    # unreachable: exit 3, the work stays queued; back up: the queued work completes
    p = cli(dead, "chat", "F", "while it is down", code=3)
    assert "ollama serve" in p.stderr
    cli(dead, "session", "end", "F")
    p = cli(dead, "compress", "F", code=3)
    assert "stays queued" in p.stderr
    cli(dead, "doctor", code=3)
    cli(ok, "jobs", "run")
    ws = json.loads(cli(ok, "--json", "ws", "show", "F").stdout)
    assert ws["compression"] == "done" and [s["compression"] for s in ws["sessions"]] == ["done", "done"]
    assert all(m in ws["summary"]["text"] for m in MARKERS)
    assert [(s["turn_count"], s["message_count"]) for s in ws["sessions"]] == [(5, 8), (2, 2)]  # nothing lost
    assert json.loads(cli(ok, "--json", "jobs", "list", "--state", "failed").stdout) == []  # retried by compress
