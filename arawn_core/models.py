"""Domain objects shared by the engine, the TUI and the CLI.

Plain dataclasses and enums: storage maps rows to these in one place
(`arawn_core.store.converters`), everything else only reads them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any


def new_id() -> str:
    import uuid  # here: uuid imports platform details that reading the store never needs

    return str(uuid.uuid4())


def iso_utc(when: datetime) -> str:
    """ISO-8601 UTC timestamp with microseconds and a trailing Z (the original arawn layout)."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_now() -> str:
    return iso_utc(datetime.now(timezone.utc))


def parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class Role(str, Enum):
    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"
    TOOL_USE = "tool_use"
    TOOL_RESULT = "tool_result"
    AGENT_PUSH = "agent_push"


ROLES = frozenset(r.value for r in Role)


class WorkstreamState(str, Enum):
    ACTIVE = "active"
    ARCHIVED = "archived"


class CompressionStatus(str, Enum):
    """What the user sees on a badge."""

    NONE = "none"  # nothing to compress yet
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    STALE = "stale"  # summary exists but its input, prompt or model changed


class JobKind(str, Enum):
    SESSION = "session"  # map: one session -> session summary
    REDUCE = "reduce"  # fold new session summaries into the workstream summary
    REBUILD = "rebuild"  # recompute the workstream summary from all session summaries
    CHECKPOINT = "checkpoint"  # summarize the older part of a long active session


class JobState(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class SummaryKind(str, Enum):
    SESSION = "session"
    WORKSTREAM = "workstream"
    CHECKPOINT = "checkpoint"


@dataclass
class Message:
    id: str
    workstream_id: str
    session_id: str
    role: str
    content: str
    timestamp: str
    metadata: dict[str, Any] | None = None

    # ---- metadata: the keys arawn itself writes are read and written only here ----
    @staticmethod
    def reply_metadata(model: str, reply_to: str, interrupted: bool = False) -> dict[str, Any]:
        """The metadata of an assistant reply: which model wrote it, to which user message,
        and whether it was stopped before the end."""
        meta: dict[str, Any] = {"model": model, "reply_to": reply_to}
        if interrupted:
            meta["interrupted"] = True
        return meta

    def _meta(self, key: str) -> Any:
        return self.metadata.get(key) if isinstance(self.metadata, dict) else None

    @property
    def interrupted(self) -> bool:
        """A reply stopped before the model finished (the part written was kept)."""
        return self._meta("interrupted") is True

    @property
    def reply_to(self) -> str | None:
        value = self._meta("reply_to")
        return value if isinstance(value, str) else None

    @property
    def reply_model(self) -> str | None:
        value = self._meta("model")
        return value if isinstance(value, str) else None

    @property
    def import_info(self) -> dict[str, Any] | None:
        """Where an imported message came from (format, source, key, ...); None if typed here."""
        value = self._meta("import")
        return value if isinstance(value, dict) else None

    @property
    def import_key(self) -> str | None:
        """The dedupe key of the imported conversation this message belongs to."""
        info = self.import_info
        key = info.get("key") if info else None
        return key if isinstance(key, str) and key else None

    def to_record(self) -> dict[str, Any]:
        """The JSONL record, in the original arawn server's field order."""
        return {
            "id": self.id,
            "workstream_id": self.workstream_id,
            "session_id": self.session_id,
            "role": self.role,
            "content": self.content,
            "timestamp": self.timestamp,
            "metadata": self.metadata,
        }

    def to_json_line(self) -> bytes:
        return (json.dumps(self.to_record(), ensure_ascii=False) + "\n").encode("utf-8")

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Message:
        return cls(
            id=str(rec["id"]),
            workstream_id=str(rec["workstream_id"]),
            session_id=str(rec["session_id"]),
            role=str(rec["role"]),
            content=str(rec.get("content") or ""),
            timestamp=str(rec.get("timestamp") or utc_now()),
            metadata=rec.get("metadata"),
        )


#: Items listed per audit list (the counts are exact; the lists keep the best-ranked ones).
MAX_LISTED = 100


@dataclass
class SummaryAudit:
    """Which key items of its inputs a summary kept (see `arawn_core.memory.audit`).

    `kept` of `total` items were in the model's text (after any repair call);
    `missing` lists the others: `appended` ones were added verbatim under
    "Key items", `dropped` ones did not fit that section's bound (or the
    bound on tracked items) at this or a lower level. `levels` counts, per
    level of the hierarchy (chunk, merge, condense, session, checkpoint,
    reduce, rebuild), the calls audited and what happened to their items.
    `items` are the key items the summary answers for at the next level.
    """

    mode: str = "repair"  # "repair" | "report"
    level: str = ""  # the level of the call that wrote the final text
    kept: int = 0
    total: int = 0
    missing: list[str] = field(default_factory=list)
    appended: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # the best MAX_LISTED of them
    dropped_count: int = 0
    repair_calls: int = 0
    retries: int = 0  # replies rejected as not a summary, and asked for again
    fallbacks: int = 0  # pieces written without the model (extractive)
    defects: list[str] = field(default_factory=list)
    levels: dict[str, dict[str, int]] = field(default_factory=dict)
    items: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> SummaryAudit | None:
        if not isinstance(d, dict):
            return None
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})

    @property
    def line(self) -> str:
        """"kept 41/45 key items · 3 appended · 1 dropped" (what the summary panel shows)."""
        parts = [f"kept {self.kept}/{self.total} key items"]
        if self.appended:
            parts.append(f"{len(self.appended)} appended verbatim")
        if self.dropped_count or self.dropped:
            parts.append(f"{max(self.dropped_count, len(self.dropped))} dropped")
        if self.repair_calls:
            parts.append(f"{self.repair_calls} repair call{'s' if self.repair_calls != 1 else ''}")
        return " · ".join(parts)


@dataclass
class Provenance:
    model: str
    prompt_version: str
    input_chars: int
    input_tokens: int
    output_tokens: int
    llm_calls: int
    duration_s: float
    input_hash: str
    created_at: str = field(default_factory=utc_now)
    method: str = "model"  # "model" | "repaired" | "extractive" (written without the model) | "verbatim"
    audit: SummaryAudit | None = None  # None: not audited (audit = "off", or written before audits)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Summary:
    id: str
    kind: SummaryKind
    workstream_id: str
    session_id: str | None
    text: str
    provenance: Provenance
    covers: list[str] = field(default_factory=list)  # session ids folded in
    stale: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kind"] = self.kind.value
        return d


@dataclass
class JobProgress:
    done: int = 0
    total: int = 0


@dataclass
class JobStatus:
    """The open and failed jobs of one workstream (or one session), folded into one badge's worth:
    their states, the last error to show (a failed job's, else a retrying one's) and the
    progress of those running. Computed in one place (`JobQueue.status`)."""

    states: set[str] = field(default_factory=set)
    error: str | None = None
    progress: JobProgress = field(default_factory=JobProgress)


@dataclass(frozen=True)
class SummaryStamp:
    """What a stored summary was made with: enough to tell whether it is stale."""

    model: str
    prompt_version: str
    text: str | None = None


@dataclass
class Workstream:
    id: str
    title: str
    state: WorkstreamState
    tags: list[str]
    created_at: str
    updated_at: str
    summary: str | None = None
    model: str | None = None  # per-workstream default model (None: config)
    system_prompt: str | None = None
    is_scratch: bool = False
    session_count: int = 0
    compression: CompressionStatus = CompressionStatus.NONE
    progress: JobProgress = field(default_factory=JobProgress)
    last_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        # by hand: `asdict` deep-copies recursively and dominates `ws list` over 1,000 workstreams
        return {
            "id": self.id, "title": self.title, "state": self.state.value, "tags": list(self.tags),
            "created_at": self.created_at, "updated_at": self.updated_at, "summary": self.summary,
            "model": self.model, "system_prompt": self.system_prompt, "is_scratch": self.is_scratch,
            "session_count": self.session_count, "compression": self.compression.value,
            "progress": {"done": self.progress.done, "total": self.progress.total}, "last_error": self.last_error,
        }


@dataclass
class Session:
    id: str
    workstream_id: str
    started_at: str
    ended_at: str | None
    last_activity_at: str
    turn_count: int = 0
    char_count: int = 0
    message_count: int = 0
    summary: str | None = None
    compression: CompressionStatus = CompressionStatus.NONE
    last_error: str | None = None
    end_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.ended_at is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "workstream_id": self.workstream_id, "started_at": self.started_at,
            "ended_at": self.ended_at, "last_activity_at": self.last_activity_at, "turn_count": self.turn_count,
            "char_count": self.char_count, "message_count": self.message_count, "summary": self.summary,
            "compression": self.compression.value, "last_error": self.last_error, "end_reason": self.end_reason,
            "active": self.active,
        }


@dataclass
class CompressionJob:
    id: str
    kind: JobKind
    workstream_id: str
    session_id: str | None
    state: JobState
    attempts: int
    max_attempts: int
    last_error: str | None
    next_attempt_at: float  # unix seconds
    created_at: str
    updated_at: str
    rerun: bool = False  # a reduce requested while this one ran: run once more

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kind"] = self.kind.value
        d["state"] = self.state.value
        return d
