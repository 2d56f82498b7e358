"""Chat and context: summaries carry over, long sessions get a checkpoint, nothing is lost."""

from __future__ import annotations

from pathlib import Path

from arawn_core.core import ArawnCore
from arawn_core.llm.errors import BackendUnavailable
from tests.conftest import make_settings
from tests.fakes import FakeBackend


async def chat(core: ArawnCore, ws_id: str, text: str) -> str:
    return "".join([piece async for piece in core.send(ws_id, text)])


async def test_new_session_starts_from_the_workstream_summary(core: ArawnCore, fake_backend: FakeBackend) -> None:
    ws = await core.create_workstream("carry")
    for text in ["we chose MARKER-postgres", "because MARKER-jsonb", "ok", "done"]:
        assert await chat(core, ws.id, text)
    await core.end_session(ws.id)
    await core.work_queue()
    summary = await core.workstream_summary(ws.id)
    assert summary and "MARKER-postgres" in summary.text
    fake_backend.requests.clear()
    await chat(core, ws.id, "what did we choose?")
    first = fake_backend.requests[0].messages
    assert first[0]["role"] == "system" and summary.text in first[0]["content"]
    assert [m["content"] for m in first[1:]] == ["what did we choose?"]  # the old session is not re-sent
    sessions = await core.list_sessions(ws.id)
    assert len(sessions) == 2 and sessions[1].active


async def test_every_chat_request_sends_num_ctx_and_fits(core: ArawnCore, fake_backend: FakeBackend) -> None:
    ws = await core.create_workstream("fit")
    for i in range(30):
        await chat(core, ws.id, f"turn {i} " + "words " * 800)
    num_ctx = core.settings.llm.num_ctx
    for r in fake_backend.requests:
        assert r.options.num_ctx == num_ctx and r.options.num_predict == core.settings.llm.max_reply_tokens
        assert fake_backend.count_tokens(r.messages) + r.options.num_predict <= num_ctx
    # the oldest turns no longer fit: the newest turn is always there
    assert "turn 29" in fake_backend.requests[-1].messages[-1]["content"]


async def test_long_active_session_gets_a_checkpoint(data_dir: Path) -> None:
    settings = make_settings(data_dir, "[workstream.compression]\ntoken_threshold_chars = 4000\n")
    backend = FakeBackend()
    core = await ArawnCore.open(settings, backend)
    ws = await core.create_workstream("long")
    for i in range(12):
        await chat(core, ws.id, f"MARKER-t{i} " + "talk " * 100)
    jobs = await core.list_jobs()
    assert any(j.kind.value == "checkpoint" for j in jobs)
    await core.work_queue()
    session = await core.active_session(ws.id)
    checkpoint = await core.repo.checkpoint(session.id)
    assert checkpoint is not None and "MARKER-t0" in checkpoint.text
    context = await core.build_context(ws.id)
    assert checkpoint.text in context[0]["content"]
    sent = " ".join(m["content"] for m in context[1:])
    assert "MARKER-t0 talk" not in sent  # the first turn is covered by the checkpoint, not re-sent
    assert "MARKER-t11 talk" in sent  # the recent turns are sent verbatim
    assert session.active  # a checkpoint does not end the session
    await core.close(end_sessions=False)


async def test_backend_down_keeps_the_users_message(core: ArawnCore, fake_backend: FakeBackend) -> None:
    ws = await core.create_workstream("down")
    fake_backend.down = True
    try:
        await chat(core, ws.id, "do not lose me")
    except BackendUnavailable:
        pass
    else:
        raise AssertionError("expected BackendUnavailable")
    session = await core.active_session(ws.id)
    assert [m.content for m in await core.session_messages(session.id)] == ["do not lose me"]


async def test_stopped_reply_is_kept_and_marked_interrupted(core: ArawnCore) -> None:
    ws = await core.create_workstream("stop")
    stream = core.send(ws.id, "tell me a long story " + "please " * 10)
    first = await stream.__anext__()
    await stream.aclose()  # what escape does in the TUI
    session = await core.active_session(ws.id)
    msgs = await core.session_messages(session.id)
    assert [m.role for m in msgs] == ["user", "assistant"]
    assert msgs[1].content.startswith(first) and msgs[1].metadata["interrupted"] is True
