"""ArawnCore's memory commands: pins, summary edits, versions, revert, focus, fork, session titles.

A mixin of `ArawnCore` (kept out of core.py so it stays small). Every change is written
to the workstream's events.jsonl first and to SQLite second, so `reindex` restores it.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import TYPE_CHECKING, Any

from arawn_core import events as ev
from arawn_core.errors import UsageError
from arawn_core.memory.pins import Pin, PinFit, check_pin_text, fit_pins
from arawn_core.memory.steer import MAX_FOCUS_CHARS
from arawn_core.memory.versions import SummaryVersion, VersionMeta, protected_after_edit, unified_diff
from arawn_core.models import Provenance, Session, Summary, SummaryKind, Workstream, new_id, utc_now
from arawn_core.store import jsonl
from arawn_core.store import memory as store
from arawn_core.store.converters import summary_from_record

if TYPE_CHECKING:
    from arawn_core.config import Settings
    from arawn_core.compression.budget import TokenEstimator
    from arawn_core.store.db import Database
    from arawn_core.store.repository import Repository

#: provenance.model of a summary no model wrote (the first summary typed in by the user)
USER_MODEL = "verbatim"


def _usage(message: str) -> Exception:
    return UsageError(message)


def _pin_text(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate, from undecodable bytes in argv or stdin
        raise _usage(f"the note is not valid UTF-8 text (at character {exc.start})") from None
    try:
        return check_pin_text(text)
    except ValueError as exc:
        raise _usage(str(exc)) from None


def _text_hash(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()


class MemoryCommands:
    """Mixed into ArawnCore: uses its repo, db, settings, estimator and event bus."""

    repo: Repository
    db: Database
    settings: Settings
    estimator: TokenEstimator
    events: ev.EventBus
    model: str

    async def _event(self, workstream_id: str, event: dict[str, Any]) -> None:
        await self.repo._append_event(workstream_id, event)

    # ---- pins -----------------------------------------------------------------
    async def list_pins(self, workstream_id: str) -> list[Pin]:
        rows = await self.db.fetchall(store.PINS_OF_WORKSTREAM, (workstream_id,))
        return [store.pin_from_row(r) for r in rows]

    async def add_pin(self, workstream_id: str, text: str, source_message_id: str | None = None) -> Pin:
        """Pin a note (or a message's text) to the workstream; returns the new pin."""
        await self.repo.get_workstream(workstream_id)
        text = _pin_text(text)
        now = utc_now()
        pin = Pin(new_id(), workstream_id, text, now, now, source_message_id)
        event = {"type": "pin", "id": pin.id, "text": text, "created_at": now, "source_message_id": source_message_id}
        await self._pin_event(workstream_id, event)
        return pin

    async def edit_pin(self, workstream_id: str, pin_ref: str, text: str) -> Pin:
        pin = await self.resolve_pin(workstream_id, pin_ref)
        text = _pin_text(text)
        now = utc_now()
        await self._pin_event(workstream_id, {"type": "pin_edit", "id": pin.id, "text": text, "updated_at": now})
        pin.text, pin.updated_at = text, now
        return pin

    async def remove_pin(self, workstream_id: str, pin_ref: str) -> Pin:
        pin = await self.resolve_pin(workstream_id, pin_ref)
        await self._pin_event(workstream_id, {"type": "unpin", "id": pin.id, "at": utc_now()})
        return pin

    async def resolve_pin(self, workstream_id: str, pin_ref: str) -> Pin:
        """A pin id, or an unambiguous prefix of one (at least 4 characters)."""
        pins = await self.list_pins(workstream_id)
        exact = [p for p in pins if p.id == pin_ref]
        found = exact or ([p for p in pins if p.id.startswith(pin_ref)] if len(pin_ref) >= 4 else [])
        if not found:
            raise _usage(f"no pin {pin_ref!r} in this workstream (see `pins WS`)")
        if len(found) > 1:
            raise _usage(f"pin id prefix {pin_ref!r} is ambiguous: give more of it")
        return found[0]

    async def _pin_event(self, workstream_id: str, event: dict[str, Any]) -> None:
        await self._event(workstream_id, event)
        async with self.db.transaction() as c:
            await store.apply_pin_event(c, {**event, "workstream_id": workstream_id})
        self.events.publish(ev.WorkstreamUpdated(workstream_id))

    async def pin_fit(self, workstream_id: str, model: str | None = None) -> PinFit:
        """The pins that go into the next chat context, and those the budget leaves out."""
        pins = await self.list_pins(workstream_id)
        if model is None:
            ws = await self.repo.get_workstream(workstream_id)
            model = ws.model or self.model
        budget = self.settings.workstream.pin_budget_tokens
        return fit_pins(pins, budget, lambda t: self.estimator.estimate(model, t))

    # ---- summary versions -----------------------------------------------------
    async def summary_versions(self, workstream_id: str) -> list[SummaryVersion]:
        rows = await self.db.fetchall("SELECT * FROM summary_versions WHERE workstream_id = ? ORDER BY number",
                                      (workstream_id,))
        return [store.version_from_row(r) for r in rows]

    async def summary_version(self, workstream_id: str, number: int) -> SummaryVersion:
        row = await self.db.fetchone("SELECT * FROM summary_versions WHERE workstream_id = ? AND number = ?",
                                     (workstream_id, number))
        if row is None:
            last = await self.db.fetchone("SELECT MAX(number) FROM summary_versions WHERE workstream_id = ?",
                                          (workstream_id,))
            have = f"versions 1 to {last[0]}" if last and last[0] else "no versions yet"
            raise _usage(f"no summary version {number} in this workstream ({have}; see `summary WS --history`)")
        return store.version_from_row(row)

    async def current_version(self, workstream_id: str) -> SummaryVersion | None:
        row = await self.db.fetchone(store.CURRENT_VERSION, (workstream_id,))
        return store.version_from_row(row) if row else None

    async def diff_versions(self, workstream_id: str, a: int, b: int) -> str:
        return unified_diff(await self.summary_version(workstream_id, a), await self.summary_version(workstream_id, b))

    async def set_summary(self, workstream_id: str, text: str) -> SummaryVersion | None:
        """The user's edit becomes the next version (None: the text is the current one already).

        The lines added or changed are protected from later reductions.
        """
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _usage(f"the summary is not valid UTF-8 text (at character {exc.start})") from None
        if not text.strip():
            raise _usage("the summary cannot be empty (to start over, use `compress WS --rebuild`)")
        previous = await self.repo.workstream_summary(workstream_id)
        if previous is None:
            await self.repo.get_workstream(workstream_id)
        elif previous.text == text:
            return None
        current = await self.current_version(workstream_id)
        protected = protected_after_edit(current.protected if current else [], previous.text if previous else None,
                                         text)
        p = previous.provenance if previous else None
        # staleness follows the content's origin: an edit of a current summary is not stale
        provenance = Provenance(model=p.model if p else USER_MODEL, prompt_version=p.prompt_version if p else USER_MODEL,
                                input_chars=len(text), input_tokens=0, output_tokens=0, llm_calls=0, duration_s=0.0,
                                input_hash=_text_hash("user", text))
        summary = Summary(new_id(), SummaryKind.WORKSTREAM, workstream_id, None, text, provenance,
                          covers=list(previous.covers) if previous else [])
        return await self._write_version(summary, VersionMeta("user", protected=protected))

    async def revert_summary(self, workstream_id: str, number: int) -> SummaryVersion:
        """Version `number` becomes current again, as a new version (so the revert can be undone)."""
        target = await self.summary_version(workstream_id, number)
        current = await self.current_version(workstream_id)
        if current is not None and current.number == number:
            raise _usage(f"version {number} is already the current summary")
        p = target.provenance
        provenance = Provenance(model=p.get("model", USER_MODEL), prompt_version=p.get("prompt_version", USER_MODEL),
                                input_chars=len(target.text), input_tokens=0, output_tokens=0, llm_calls=0,
                                duration_s=0.0, input_hash=_text_hash("revert", str(number), target.text))
        summary = Summary(new_id(), SummaryKind.WORKSTREAM, workstream_id, None, target.text, provenance,
                          covers=list(target.covers))
        return await self._write_version(summary, VersionMeta("revert", protected=list(target.protected),
                                                              reverted_from=number))

    async def _write_version(self, summary: Summary, meta: VersionMeta) -> SummaryVersion:
        await self.repo.prepare_summary(summary, None, meta)
        async with self.db.transaction() as c:
            await self.repo.write_summary(c, summary, None, meta)
        self.events.publish(ev.WorkstreamUpdated(summary.workstream_id))
        version = await self.current_version(summary.workstream_id)
        assert version is not None and version.summary_id == summary.id
        return version

    # ---- focus ----------------------------------------------------------------
    async def set_focus(self, workstream_id: str, focus: str) -> None:
        """Steer the workstream's next compression run (until its reduce is written)."""
        focus = " ".join(focus.split())
        if not focus:
            raise _usage("--focus cannot be empty")
        if len(focus) > MAX_FOCUS_CHARS:
            raise _usage(f"--focus is at most {MAX_FOCUS_CHARS} characters (this one has {len(focus)})")
        await self.repo.kv_set(store.focus_key(workstream_id), focus)

    async def pending_focus(self, workstream_id: str) -> str | None:
        return await self.repo.kv_get(store.focus_key(workstream_id))

    # ---- fork -----------------------------------------------------------------
    async def fork_workstream(self, workstream_id: str, title: str) -> Workstream:
        """A new workstream that starts from this one's current summary and pins (and points back to it)."""
        origin = await self.repo.get_workstream(workstream_id)
        title = title.strip()
        if not title:
            raise _usage("a workstream title cannot be empty")
        ws = await self.repo.create_workstream(title, list(origin.tags))
        if origin.model or origin.system_prompt:
            ws = await self.repo.update_workstream(ws, model=origin.model, system_prompt=origin.system_prompt)
        current = await self.current_version(workstream_id)
        now = utc_now()
        fork_event = {"type": "fork", "origin_id": origin.id, "origin_title": origin.title,
                      "origin_version": current.number if current else None, "created_at": now}
        await self._event(ws.id, fork_event)
        async with self.db.transaction() as c:
            await store.set_origin(c, ws.id, fork_event)
        if current is not None:
            p = current.provenance
            provenance = Provenance(model=p.get("model", USER_MODEL), prompt_version=p.get("prompt_version", USER_MODEL),
                                    input_chars=len(current.text), input_tokens=0, output_tokens=0, llm_calls=0,
                                    duration_s=0.0, input_hash=_text_hash("fork", origin.id, current.text))
            summary = Summary(new_id(), SummaryKind.WORKSTREAM, ws.id, None, current.text, provenance, covers=[])
            await self._write_version(summary, VersionMeta("fork", protected=list(current.protected)))
        for pin in await self.list_pins(workstream_id):
            await self.add_pin(ws.id, pin.text, pin.source_message_id)
        self.events.publish(ev.WorkstreamUpdated(ws.id))
        return ws

    async def workstream_origin(self, workstream_id: str) -> dict[str, Any] | None:
        row = await self.db.fetchone(store.ORIGIN_OF_WORKSTREAM, (workstream_id,))
        return dict(row) if row else None

    # ---- session titles ---------------------------------------------------------
    async def rename_session(self, session_id: str, title: str) -> Session:
        session = await self.repo.get_session(session_id)
        title = " ".join(title.split())
        if not title:
            raise _usage("a session title cannot be empty")
        await self._event(session.workstream_id, {"type": "session_title", "session_id": session.id, "title": title,
                                                  "at": utc_now()})
        async with self.db.transaction() as c:
            await c.execute("UPDATE sessions SET title = ? WHERE id = ?", (title, session.id))
        self.events.publish(ev.WorkstreamUpdated(session.workstream_id))
        return await self.repo.get_session(session.id)

    async def _recover_memory(self) -> bool:
        """Once after the upgrade to schema 6: True if it filled anything in."""
        titles = await self._backfill_titles()
        return await self._backfill_versions() or titles

    async def _backfill_versions(self) -> bool:
        """A store from before versions: every workstream summary its events.jsonl recorded becomes a
        version, in order (as `reindex` would number them), so the history starts complete."""
        if not await self.repo.kv_get("versions_backfill"):
            return False
        ws_ids = [r[0] for r in await self.db.fetchall("SELECT id FROM workstreams ORDER BY rowid")]
        per_ws: dict[str, list[tuple[Summary, VersionMeta | None]]] = {}
        for ws_id in ws_ids:
            path = self.repo.events_path(ws_id)
            records = await asyncio.to_thread(lambda p=path: list(jsonl.scan(p, 0)) if p.exists() else [])
            found = []
            for rec in records:
                if rec.data.get("type") == "summary" and rec.data.get("kind") == "workstream":
                    try:
                        found.append((summary_from_record(rec.data), VersionMeta.from_event(rec.data.get("version"))))
                    except (KeyError, TypeError, ValueError):
                        continue
            per_ws[ws_id] = found
        async with self.db.transaction() as c:
            for ws_id, found in per_ws.items():
                if found:
                    await c.execute("DELETE FROM summary_versions WHERE workstream_id = ?", (ws_id,))
                    for summary, meta in found:
                        await store.record_version(c, summary, meta)
            await c.execute("DELETE FROM kv WHERE key = 'versions_backfill'")
        return True

    async def _backfill_titles(self) -> bool:
        """Sessions stored before titles existed get theirs from their first user message (once)."""
        if not await self.repo.kv_get("titles_backfill"):
            return False
        rows = await self.db.fetchall(
            "SELECT s.id, s.workstream_id, m.offset, m.length FROM sessions s JOIN messages m ON m.rowid ="
            " (SELECT rowid FROM messages WHERE session_id = s.id AND role = 'user' ORDER BY offset LIMIT 1)"
            " WHERE s.title IS NULL")
        by_ws: dict[str, list[Any]] = {}
        for r in rows:
            by_ws.setdefault(r["workstream_id"], []).append(r)
        firsts: dict[str, str] = {}
        for ws_id, items in by_ws.items():
            try:
                records = await asyncio.to_thread(jsonl.read_spans, self.repo.messages_path(ws_id),
                                                  [(r["offset"], r["length"]) for r in items])
            except (OSError, ValueError):
                continue
            for r, rec in zip(items, records):
                firsts[r["id"]] = str(rec.get("content") or "")
        async with self.db.transaction() as c:
            await store.set_titles(c, firsts)
            await c.execute("DELETE FROM kv WHERE key = 'titles_backfill'")
        return True
