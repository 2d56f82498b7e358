"""The TUI's open (issue 17): the check of every workstream's files against the index runs after
the first screen (`ArawnCore.open(defer_recovery=True)`, then `finish_open`), and no write goes in
before it is done: a write that comes first starts it and waits for it.

A lost WAL stands in for a crash: the index is the last checkpoint, the files hold more.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from arawn_core import events as ev
from arawn_core.config import parse_settings
from arawn_core.core import ArawnCore
from arawn_core.errors import DatabaseError
from arawn_core.store.repository import Repository
from tests.fakes import FakeBackend


def settings(data: Path):
    return parse_settings("").with_data_dir(data)


def crashed_copy(tmp_path: Path) -> Path:
    """A data dir whose index misses a rename, a message and a workstream that its files hold."""
    data, copy = tmp_path / "data", tmp_path / "copy"

    async def work() -> None:
        core = await ArawnCore.open(settings(data), FakeBackend())
        try:
            alpha = await core.create_workstream("Alpha")
            await core.append_message(alpha.id, "user", "a1")
        finally:
            await core.close(end_sessions=False)  # checkpointed: the copy's index holds this
        core = await ArawnCore.open(settings(data), FakeBackend())
        try:
            [alpha] = await core.list_workstreams()
            await core.rename_workstream(alpha.id, "Alpha renamed")
            await core.append_message(alpha.id, "user", "after the checkpoint")
            await core.create_workstream("Born later")
            shutil.copytree(data / "workstreams", copy / "workstreams", copy_function=shutil.copy2)
            shutil.copy2(data / "arawn.db", copy / "arawn.db")  # without its WAL
        finally:
            await core.close(end_sessions=False)

    asyncio.run(work())
    assert not (copy / "arawn.db-wal").exists()
    return copy


async def texts(core: ArawnCore, title: str) -> list[str]:
    ws = next(w for w in await core.list_workstreams() if w.title == title)
    out: list[str] = []
    for s in sorted(await core.list_sessions(ws.id), key=lambda s: s.started_at):
        out += [m.content for m in await core.session_messages(s.id)]
    return out


def hold_recovery(monkeypatch: pytest.MonkeyPatch) -> tuple[asyncio.Event, list[str]]:
    """catch_up_all waits for the returned event (the test decides when the recovery may go on)
    and says in the returned list when it started and finished."""
    release = asyncio.Event()
    log: list[str] = []
    real = Repository.catch_up_all

    async def held(self: Repository) -> int:
        log.append("recovery started")
        await release.wait()
        n = await real(self)
        log.append("recovery done")
        return n

    monkeypatch.setattr(Repository, "catch_up_all", held)
    return release, log


def test_reads_see_the_index_as_it_was_until_finish_open_catches_up(tmp_path: Path) -> None:
    copy = crashed_copy(tmp_path)

    async def run() -> None:
        core = await ArawnCore.open(settings(copy), FakeBackend(), defer_recovery=True)
        published: list[ev.Event] = []
        core.events.subscribe(published.append)
        try:
            assert [w.title for w in await core.list_workstreams()] == ["Alpha"]  # the checkpoint, at once
            assert await core.finish_open() is True  # it changed the index: lists read before are stale
            assert ev.WorkstreamUpdated("") in published  # ... and the TUI is told to read them anew
            assert sorted(w.title for w in await core.list_workstreams()) == ["Alpha renamed", "Born later"]
            assert await texts(core, "Alpha renamed") == ["a1", "after the checkpoint"]
            assert await core.finish_open() is True  # asked again: the same answer, not a second run
            assert published.count(ev.WorkstreamUpdated("")) == 1
        finally:
            await core.close(end_sessions=False)

    asyncio.run(run())


def test_a_write_before_finish_open_runs_the_recovery_first_and_waits(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    copy = crashed_copy(tmp_path)

    async def run() -> None:
        release, log = hold_recovery(monkeypatch)
        core = await ArawnCore.open(settings(copy), FakeBackend(), defer_recovery=True)
        try:
            assert log == []  # deferred: nothing checked yet
            [first] = await core.list_workstreams()
            write = asyncio.ensure_future(core.append_message(first.id, "user", "after the open"))
            born = asyncio.ensure_future(core.create_workstream("Typed at once"))
            await asyncio.wait({write, born}, timeout=0.5)  # each would be done well within this
            assert log == ["recovery started"], "the first write did not start the deferred recovery"
            assert not write.done() and not born.done(), "a write went in before the recovery"
            release.set()
            await write
            await born
            assert log == ["recovery started", "recovery done"]
            assert await core.finish_open() is True  # the write's run: finish_open reports it, once
            titles = sorted(w.title for w in await core.list_workstreams())
            assert titles == ["Alpha renamed", "Born later", "Typed at once"]
            assert await texts(core, "Alpha renamed") == ["a1", "after the checkpoint", "after the open"]
        finally:
            await core.close(end_sessions=False)

    asyncio.run(run())


def test_nothing_to_recover_reports_no_change(tmp_path: Path) -> None:
    data = tmp_path / "data"

    async def run() -> None:
        core = await ArawnCore.open(settings(data), FakeBackend(), defer_recovery=True)
        assert core.db.deferred is None and core.db.run_deferred() is None  # a new index: nothing deferred
        await core.create_workstream("Alpha")
        await core.close(end_sessions=False)
        core = await ArawnCore.open(settings(data), FakeBackend(), defer_recovery=True)
        published: list[ev.Event] = []
        core.events.subscribe(published.append)
        try:
            assert await core.finish_open() is False
            assert published == []
            await core.create_workstream("Beta")  # the gate is open
            assert sorted(w.title for w in await core.list_workstreams()) == ["Alpha", "Beta"]
        finally:
            await core.close(end_sessions=False)

    asyncio.run(run())


def test_closing_with_live_sessions_runs_the_deferred_recovery_before_ending_them(tmp_path: Path) -> None:
    copy = crashed_copy(tmp_path)

    async def run() -> None:
        core = await ArawnCore.open(settings(copy), FakeBackend(), defer_recovery=True)
        await core.close(end_sessions=True)  # ending a session is a write: never before the recovery
        core = await ArawnCore.open(settings(copy), FakeBackend())
        try:
            sessions = [s for w in await core.list_workstreams() for s in await core.list_sessions(w.id)]
            assert sessions and all(s.ended_at is not None for s in sessions)
            assert await texts(core, "Alpha renamed") == ["a1", "after the checkpoint"]
        finally:
            await core.close(end_sessions=False)

    asyncio.run(run())


def test_a_failed_recovery_refuses_writes_with_its_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = crashed_copy(tmp_path)

    async def broken(self: Repository) -> int:
        raise DatabaseError("the disk said no")

    async def run() -> None:
        monkeypatch.setattr(Repository, "catch_up_all", broken)
        core = await ArawnCore.open(settings(copy), FakeBackend(), defer_recovery=True)
        try:
            with pytest.raises(DatabaseError, match="the disk said no"):
                await core.finish_open()
            with pytest.raises(DatabaseError, match="the disk said no"):
                await core.create_workstream("Not over a crash's leftovers")
        finally:
            await core.close(end_sessions=False)
        monkeypatch.undo()
        core = await ArawnCore.open(settings(copy), FakeBackend())  # the next open recovers, as always
        try:
            assert sorted(w.title for w in await core.list_workstreams()) == ["Alpha renamed", "Born later"]
        finally:
            await core.close(end_sessions=False)

    asyncio.run(run())
