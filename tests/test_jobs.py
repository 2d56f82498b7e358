"""The durable compression queue through ArawnCore: real SQLite, a scripted backend."""

from __future__ import annotations

import time
from pathlib import Path

from arawn_core.core import ArawnCore
from arawn_core.llm.errors import BackendUnavailable, ModelNotFound
from arawn_core.models import JobKind
from tests.conftest import make_settings
from tests.fakes import FakeBackend

FAST = "[workstream.compression]\nretry_base_s = 0.01\nretry_max_s = 0.02\nmin_messages = 0\nverbatim_max_chars = 0\n"


async def session_with(core: ArawnCore, ws_id: str, *texts: str) -> None:
    for i, t in enumerate(texts):
        await core.append_message(ws_id, "user" if i % 2 == 0 else "assistant", t)
    await core.end_session(ws_id)


async def test_reduce_input_constant_from_2nd_to_50th_session(data_dir: Path, monkeypatch) -> None:
    """Each session end feeds the previous workstream summary + ONE session summary, whatever the history."""
    from arawn_core.compression.mapreduce import Summarizer

    fed: list[tuple[bool, int]] = []
    real_fold = Summarizer.fold

    async def recording_fold(self, previous, new_summaries, progress=None, **kwargs):
        fed.append((previous is not None, len(new_summaries)))
        return await real_fold(self, previous, new_summaries, progress, **kwargs)

    monkeypatch.setattr(Summarizer, "fold", recording_fold)
    backend = FakeBackend()
    core = await ArawnCore.open(make_settings(data_dir, FAST), backend)
    ws = await core.create_workstream("many")
    calls_per_end = []
    for n in range(50):
        await session_with(core, ws.id, f"session {n} MARKER-s{n}", "reply")
        before = backend.calls
        await core.work_queue()
        calls_per_end.append(backend.calls - before)
        summary = await core.workstream_summary(ws.id)
        assert summary and f"MARKER-s{n}" in summary.text and len(summary.covers) == n + 1
    assert fed == [(False, 1)] + [(True, 1)] * 49
    assert calls_per_end == [2] * 50  # one map call + one reduce call per session end
    await core.close(end_sessions=False)


async def test_transient_errors_retry_with_backoff_then_succeed(data_dir: Path) -> None:
    backend = FakeBackend()
    core = await ArawnCore.open(make_settings(data_dir, FAST), backend)
    ws = await core.create_workstream("flaky")
    await session_with(core, ws.id, "hello", "hi")
    backend.fail_next(2, BackendUnavailable("fake://", "down for a moment"))
    outcomes = await core.work_queue(stop_on_unreachable=False)
    assert [o.ok for o in outcomes][:2] == [False, False] and all(o.will_retry for o in outcomes[:2])
    assert outcomes[2].ok and outcomes[2].job.attempts == 3
    job = await core.queue.get(outcomes[0].job.id)
    assert job.state.value == "done" and job.last_error is None
    await core.close(end_sessions=False)


async def test_backoff_delays_the_next_attempt(data_dir: Path) -> None:
    backend = FakeBackend()
    core = await ArawnCore.open(make_settings(data_dir, FAST.replace("0.01", "30").replace("0.02", "60")), backend)
    ws = await core.create_workstream("later")
    await session_with(core, ws.id, "hello", "hi")
    backend.fail_next(1, BackendUnavailable("fake://"))
    outcome = await core.run_next()
    assert outcome and outcome.will_retry
    job = await core.queue.get(outcome.job.id)
    assert job.state.value == "pending" and job.next_attempt_at > time.time() + 20
    assert await core.run_next() is None  # not due yet
    await core.close(end_sessions=False)


async def test_permanent_failure_is_recorded_with_its_reason_and_retry_works(data_dir: Path) -> None:
    backend = FakeBackend()
    core = await ArawnCore.open(make_settings(data_dir, FAST), backend)
    ws = await core.create_workstream("perm")
    await session_with(core, ws.id, "hello", "hi")
    backend.fail_next(1, ModelNotFound("llama3.2", "fake://"))
    outcomes = await core.work_queue()
    assert len(outcomes) == 1 and not outcomes[0].will_retry
    failed = (await core.list_jobs())[0]
    assert failed.state.value == "failed" and failed.attempts == 1 and "ollama pull llama3.2" in failed.last_error
    listed = (await core.list_workstreams())[0]
    assert listed.compression.value == "failed" and "ollama pull" in listed.last_error
    assert await core.retry_jobs() == 1
    outcomes = await core.work_queue()
    assert all(o.ok for o in outcomes) and (await core.list_workstreams())[0].compression.value == "done"
    await core.close(end_sessions=False)


async def test_one_job_per_session_and_reduce_coalesces(data_dir: Path) -> None:
    backend = FakeBackend()
    core = await ArawnCore.open(make_settings(data_dir, FAST), backend)
    ws = await core.create_workstream("coalesce")
    await session_with(core, ws.id, "a", "b")
    session = (await core.list_sessions(ws.id))[0]
    assert await core.queue.enqueue(JobKind.SESSION, ws.id, session.id) is None  # already queued
    await core.work_queue()
    # a reduce is running; two more requests while it runs give ONE follow-up, not two
    running = await core.queue.enqueue(JobKind.REDUCE, ws.id)
    claimed = await core.claim_job()
    assert claimed and claimed.id == running.id
    first = await core.queue.enqueue(JobKind.REDUCE, ws.id)
    second = await core.queue.enqueue(JobKind.REDUCE, ws.id)
    assert first is not None and second is None
    assert await core.claim_job() is None  # the follow-up waits for the running one
    await core.run_job(claimed)
    outcomes = await core.work_queue()
    assert [o.job.id for o in outcomes] == [first.id]
    await core.close(end_sessions=False)


async def test_unchanged_input_prompt_and_model_do_no_llm_call(data_dir: Path) -> None:
    backend = FakeBackend()
    core = await ArawnCore.open(make_settings(data_dir, FAST), backend)
    ws = await core.create_workstream("same")
    await session_with(core, ws.id, "hello there", "hi")
    await core.work_queue()
    session = (await core.list_sessions(ws.id))[0]
    before = backend.calls
    await core.compress(ws.id, session_id=session.id)
    outcomes = await core.work_queue()
    assert outcomes and backend.calls == before  # the session job matched its summary: no call
    summary = await core.session_summary(session.id)
    assert summary.provenance.llm_calls >= 1 and not summary.stale
    await core.close(end_sessions=False)


async def test_changed_model_marks_summaries_stale(data_dir: Path) -> None:
    backend = FakeBackend()
    core = await ArawnCore.open(make_settings(data_dir, FAST), backend)
    ws = await core.create_workstream("stale")
    await session_with(core, ws.id, "hello there", "hi")
    await core.work_queue()
    await core.close(end_sessions=False)
    core = await ArawnCore.open(make_settings(data_dir, FAST + 'model = "other-model"\n'), backend)
    assert (await core.list_workstreams())[0].compression.value == "stale"
    assert (await core.workstream_summary(ws.id)).stale
    assert (await core.list_sessions(ws.id))[0].compression.value == "stale"
    await core.compress(ws.id)  # recompresses stale sessions with the new model
    await core.work_queue()
    assert (await core.list_workstreams())[0].compression.value == "done"
    assert (await core.session_summary((await core.list_sessions(ws.id))[0].id)).provenance.model == "other-model"
    await core.close(end_sessions=False)


async def test_provenance_is_complete(core: ArawnCore) -> None:
    ws = await core.create_workstream("prov")
    for i in range(6):
        await core.append_message(ws.id, "user" if i % 2 == 0 else "assistant", f"message {i} " * 20)
    await core.end_session(ws.id)
    await core.work_queue()
    s = await core.session_summary((await core.list_sessions(ws.id))[0].id)
    p = s.provenance
    assert p.model == core.settings.compression_model and p.prompt_version and len(p.input_hash) == 64
    assert p.input_chars > 0 and p.input_tokens > 0 and p.output_tokens > 0 and p.llm_calls == 1
    assert p.duration_s >= 0 and p.created_at.endswith("Z")


async def test_short_session_is_stored_verbatim_without_a_call(core: ArawnCore, fake_backend: FakeBackend) -> None:
    ws = await core.create_workstream("short")
    await core.append_message(ws.id, "user", "just a quick note")
    await core.end_session(ws.id)
    await core.work_queue()
    s = await core.session_summary((await core.list_sessions(ws.id))[0].id)
    assert s.text == "user: just a quick note" and s.provenance.model == "verbatim" and s.provenance.llm_calls == 0


async def test_calls_in_flight_bounded_across_concurrent_jobs(data_dir: Path) -> None:
    """Two jobs running at once share one limit: max_concurrency calls in flight, not squared."""
    import asyncio

    backend = FakeBackend(latency_s=0.02)
    core = await ArawnCore.open(make_settings(
        data_dir, FAST + "max_concurrency = 2\nmax_summary_tokens = 256\n[llm]\nnum_ctx = 2048\n"), backend)
    for n in range(3):
        ws = await core.create_workstream(f"long {n}")
        await session_with(core, ws.id, *[f"MARKER-w{n}m{i} " + "word " * 400 for i in range(12)])
    await asyncio.gather(*(core.work_queue() for _ in range(3)))
    assert backend.max_in_flight == 2
    assert all(w.compression.value == "done" for w in await core.list_workstreams())
    await core.close(end_sessions=False)
