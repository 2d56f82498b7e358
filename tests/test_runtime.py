"""The scheduler (`arawn_core.runtime`): real SQLite under tmp_path, a scripted fake backend.

What a user depends on: no more jobs run at once than `max_jobs`; a job waiting out
its retry delay runs when it is due (no poll needed); a new job is picked up when
queued; idle sessions end on their own; while the backend is down no job is tried,
and work resumes when it is back; quitting leaves unfinished jobs queued.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from arawn_core import events as ev
from arawn_core.core import ArawnCore
from arawn_core.errors import BackendError, BackendUnavailable
from arawn_core.models import JobState
from arawn_core.runtime import Scheduler
from tests.conftest import make_settings
from tests.fakes import FakeBackend

# one LLM call per session job (one chunk, no verbatim shortcut), fast retries
TOML = """
[workstream]
session_timeout_minutes = 0
[workstream.compression]
min_messages = 0
verbatim_max_chars = 0
max_concurrency = 8
max_jobs = {max_jobs}
retry_base_s = {retry_base_s}
retry_max_s = 5
"""


async def open_core(data_dir: Path, backend: FakeBackend, max_jobs: int = 2, retry_base_s: float = 0.01) -> ArawnCore:
    toml = TOML.format(max_jobs=max_jobs, retry_base_s=retry_base_s)
    return await ArawnCore.open(make_settings(data_dir, toml), backend)


async def ended_sessions(core: ArawnCore, n: int) -> list[str]:
    """`n` workstreams, each with one ended session: `n` session jobs queued."""
    ids = []
    for i in range(n):
        ws = await core.create_workstream(f"ws {i}")
        await core.append_message(ws.id, "user", f"question {i}")
        await core.append_message(ws.id, "assistant", f"answer {i}")
        await core.end_session(ws.id)
        ids.append(ws.id)
    return ids


async def until(condition, timeout: float = 10.0, what: str = "") -> None:
    """Wait for `condition()`; the timeout only guards against a hang (no timing is asserted)."""
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(poll(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out waiting for {what or condition}") from None


class Events:
    def __init__(self, core: ArawnCore) -> None:
        self.seen: list[ev.Event] = []
        core.events.subscribe(self.seen.append)

    def of(self, kind: type) -> list:
        return [e for e in self.seen if isinstance(e, kind)]


@pytest.fixture
def slow_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """No poll comes to the rescue: a wake-up must come from the due time or an event."""
    monkeypatch.setattr(Scheduler, "POLL_S", 3600.0)
    monkeypatch.setattr(Scheduler, "HEALTH_EVERY_S", 3600.0)


async def test_running_jobs_never_exceed_max_jobs(data_dir: Path) -> None:
    backend = FakeBackend()
    core = await open_core(data_dir, backend, max_jobs=2)
    events = Events(core)
    await ended_sessions(core, 5)
    backend.pause()
    scheduler = core.scheduler()
    task = asyncio.create_task(scheduler.run())
    await until(lambda: backend.in_flight == 2, what="two jobs in flight")
    for _ in range(20):  # many loop turns later, still two (max_concurrency 8 would allow more calls)
        await asyncio.sleep(0.01)
        assert len(scheduler.running_jobs) == 2 and backend.in_flight == 2
    backend.resume()
    await until(lambda: len(events.of(ev.JobCompleted)) == 10, what="5 session jobs and 5 folds")
    assert not events.of(ev.JobFailed)
    await scheduler.stop()
    await task
    assert backend.max_in_flight == 2
    assert await core.queue_length() == 0
    await core.close(end_sessions=False)


async def test_drain_runs_up_to_max_jobs_at_once_and_returns_when_empty(data_dir: Path) -> None:
    backend = FakeBackend(latency_s=0.05)
    core = await open_core(data_dir, backend, max_jobs=3)
    await ended_sessions(core, 6)
    outcomes = await core.scheduler().drain()
    assert all(o.ok for o in outcomes) and len(outcomes) == 12  # 6 sessions + 6 folds
    assert backend.max_in_flight == 3
    assert await core.queue_length() == 0
    await core.close(end_sessions=False)


async def test_a_retry_runs_when_due_without_a_poll(data_dir: Path, slow_polls: None) -> None:
    backend = FakeBackend()
    core = await open_core(data_dir, backend, retry_base_s=0.2)
    events = Events(core)
    [ws_id] = await ended_sessions(core, 1)
    backend.fail_next(1, BackendError("HTTP 503 from fake://", status_code=503, transient=True))
    scheduler = core.scheduler()
    task = asyncio.create_task(scheduler.run())
    await until(lambda: events.of(ev.JobFailed), what="the first, failing attempt")
    assert events.of(ev.JobFailed)[0].will_retry
    await until(lambda: events.of(ev.JobCompleted), what="the retry, woken by its due time")
    [job] = [j for j in await core.list_jobs(workstream_id=ws_id) if j.kind.value == "session"]
    assert job.state is JobState.DONE and job.attempts == 2
    await scheduler.stop()
    await task
    await core.close(end_sessions=False)


async def test_a_new_job_wakes_an_idle_scheduler(data_dir: Path, slow_polls: None) -> None:
    backend = FakeBackend()
    core = await open_core(data_dir, backend)
    events = Events(core)
    scheduler = core.scheduler()
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(0.1)  # nothing to do: asleep (for an hour, but for the event)
    await ended_sessions(core, 1)
    await until(lambda: len(events.of(ev.JobCompleted)) == 2, what="session job and fold, after the queue event")
    await scheduler.stop()
    await task
    await core.close(end_sessions=False)


async def test_idle_sessions_end_and_are_compressed(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = FakeBackend()
    # 0.001 minutes (60 ms) of idleness ends a session; the check runs every second at the most often
    toml = TOML.format(max_jobs=2, retry_base_s=0.01).replace("session_timeout_minutes = 0",
                                                              "session_timeout_minutes = 0.001")
    core = await ArawnCore.open(make_settings(data_dir, toml), backend)
    events = Events(core)
    ws = await core.create_workstream("idle")
    await core.append_message(ws.id, "user", "left alone")
    scheduler = core.scheduler()
    task = asyncio.create_task(scheduler.run())
    await until(lambda: events.of(ev.IdleSessionsEnded), what="the idle check")
    assert events.of(ev.IdleSessionsEnded)[0].count == 1
    [session] = await core.list_sessions(ws.id)
    assert session.end_reason == "idle"
    await until(lambda: events.of(ev.JobCompleted), what="its compression")
    await scheduler.stop()
    await task
    await core.close(end_sessions=False)


async def test_backend_down_pauses_claiming_and_its_return_resumes(data_dir: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Scheduler, "HEALTH_EVERY_S", 0.05)
    monkeypatch.setattr(Scheduler, "POLL_S", 0.02)
    backend = FakeBackend(down=True)
    core = await open_core(data_dir, backend)
    events = Events(core)
    scheduler = core.scheduler()
    task = asyncio.create_task(scheduler.run())
    await until(lambda: events.of(ev.JobsPaused), what="the health check finding the backend down")
    assert not scheduler.backend_up and not events.of(ev.BackendChecked)[0].info.reachable
    [ws_id] = await ended_sessions(core, 1)
    await asyncio.sleep(0.3)  # many polls and health checks later
    assert backend.calls == 0 and not scheduler.running_jobs  # not tried: no attempt used up
    assert [j.state for j in await core.list_jobs(workstream_id=ws_id)] == [JobState.PENDING]
    backend.down = False
    await until(lambda: events.of(ev.JobsResumed), what="the health check finding it back")
    await until(lambda: len(events.of(ev.JobCompleted)) == 2, what="the jobs, run after the return")
    assert [j.attempts for j in await core.list_jobs(JobState.DONE, ws_id) if j.kind.value == "session"] == [1]
    await scheduler.stop()
    await task
    await core.close(end_sessions=False)


async def test_a_job_finding_the_backend_unreachable_pauses_until_a_check_finds_it(
        data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Scheduler, "HEALTH_EVERY_S", 0.1)
    backend = FakeBackend()
    core = await open_core(data_dir, backend)
    events = Events(core)
    await ended_sessions(core, 1)
    backend.fail_next(1, BackendUnavailable("fake://", "refused"))
    scheduler = core.scheduler()
    task = asyncio.create_task(scheduler.run())
    await until(lambda: events.of(ev.JobsPaused), what="the pause after the failed job")
    await until(lambda: events.of(ev.JobsResumed), what="the next health check")
    await until(lambda: len(events.of(ev.JobCompleted)) == 2, what="the retried job and its fold")
    await scheduler.stop()
    await task
    await core.close(end_sessions=False)


async def test_stop_leaves_unfinished_jobs_queued(data_dir: Path) -> None:
    backend = FakeBackend()
    core = await open_core(data_dir, backend, max_jobs=1)
    await ended_sessions(core, 2)
    backend.pause()
    scheduler = core.scheduler()
    task = asyncio.create_task(scheduler.run())
    await until(lambda: backend.in_flight == 1, what="one job in flight")
    await scheduler.stop()
    assert task.done() or await asyncio.wait_for(task, 5) is None
    jobs = await core.list_jobs()
    assert sorted(j.state.value for j in jobs) == ["pending", "pending"]
    assert all(j.attempts == 0 for j in jobs)  # the stopped one did not use up an attempt
    await core.close(end_sessions=False)
    backend.resume()
    # the next start picks them up
    core = await open_core(data_dir, FakeBackend())
    outcomes = await core.work_queue()
    assert [o.ok for o in outcomes] == [True] * 4
    await core.close(end_sessions=False)


async def test_drain_stops_claiming_when_the_backend_is_unreachable(data_dir: Path) -> None:
    backend = FakeBackend(down=True)
    core = await open_core(data_dir, backend, max_jobs=1)
    await ended_sessions(core, 3)
    outcomes = await core.scheduler().drain()
    assert len(outcomes) == 1 and isinstance(outcomes[0].error, BackendUnavailable)
    assert await core.queue_length() == 3  # all still queued, two never tried
    await core.close(end_sessions=False)


async def test_a_due_job_that_must_wait_does_not_spin_the_scheduler(data_dir: Path, slow_polls: None,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A fold waits while its workstream's session job runs: the scheduler sleeps until that job
    ends instead of trying to claim again and again (each try is a write transaction)."""
    from arawn_core.models import JobKind
    from arawn_core.store.jobs import JobQueue

    backend = FakeBackend()
    core = await open_core(data_dir, backend, max_jobs=2)
    events = Events(core)
    [ws_id] = await ended_sessions(core, 1)
    await core.queue.enqueue(JobKind.REDUCE, ws_id)  # due now, but blocked by the session job
    claims = 0
    real_claim = JobQueue.claim

    async def counting_claim(self, *args, **kwargs):
        nonlocal claims
        claims += 1
        return await real_claim(self, *args, **kwargs)

    monkeypatch.setattr(JobQueue, "claim", counting_claim)
    backend.pause()
    scheduler = core.scheduler()
    task = asyncio.create_task(scheduler.run())
    await until(lambda: backend.in_flight == 1, what="the session job in its LLM call")
    await asyncio.sleep(0.05)
    before = claims
    await asyncio.sleep(0.3)
    assert claims == before  # asleep while the fold cannot be claimed
    backend.resume()
    await until(lambda: len(events.of(ev.JobCompleted)) == 2, what="the session job, then the fold")
    await scheduler.stop()
    await task
    await core.close(end_sessions=False)


async def test_new_work_while_down_looks_for_the_backend_at_once(data_dir: Path, slow_polls: None,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """No periodic check would come for an hour: queuing a job makes the scheduler look again."""
    monkeypatch.setattr(Scheduler, "DOWN_RECHECK_S", 3600.0)
    backend = FakeBackend(down=True)
    core = await open_core(data_dir, backend)
    events = Events(core)
    scheduler = core.scheduler()
    task = asyncio.create_task(scheduler.run())
    await until(lambda: events.of(ev.JobsPaused), what="paused by the first check")
    backend.down = False
    await ended_sessions(core, 1)
    await until(lambda: events.of(ev.JobsResumed), what="a check prompted by the new job")
    await until(lambda: len(events.of(ev.JobCompleted)) == 2, what="the job and its fold")
    await scheduler.stop()
    await task
    await core.close(end_sessions=False)


async def test_no_job_is_claimed_before_first_claim_says_so(data_dir: Path) -> None:
    """The TUI holds claims (writes) back until its first screen is up: queued jobs wait for
    the hook, then run; a stop while waiting for it returns at once and leaves them queued."""
    backend = FakeBackend()
    core = await open_core(data_dir, backend, max_jobs=2)
    await ended_sessions(core, 2)
    events = Events(core)
    painted = asyncio.Event()
    scheduler = core.scheduler()
    task = asyncio.create_task(scheduler.run(first_claim=painted.wait))
    for _ in range(30):  # many loop turns: the jobs are due and the backend is up, yet nothing runs
        await asyncio.sleep(0.01)
        assert not scheduler.running_jobs and backend.calls == 0
    painted.set()
    await until(lambda: len(events.of(ev.JobCompleted)) == 4, what="2 session jobs and 2 folds")
    await scheduler.stop()
    await task

    await ended_sessions(core, 1)
    never = asyncio.Event()
    scheduler = core.scheduler()
    task = asyncio.create_task(scheduler.run(first_claim=never.wait))
    await asyncio.sleep(0.05)
    await asyncio.wait_for(scheduler.stop(), 5)  # not held up by a first paint that never comes
    await asyncio.wait_for(task, 5)
    assert [j.state for j in await core.list_jobs(JobState.PENDING)] == [JobState.PENDING]
    await core.close(end_sessions=False)
