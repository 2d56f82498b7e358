"""A process appending messages is SIGKILLed at random moments: nothing that returned is lost."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from arawn_core.config import Settings
from arawn_core.core import ArawnCore

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.crash


def start_child(data_dir: Path, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "tests.crash_child", str(data_dir), *args], cwd=REPO,
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def kill_and_collect(proc: subprocess.Popen, after_s: float) -> list[str]:
    time.sleep(after_s)
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    done = []
    for line in out.splitlines(keepends=True):
        if line.endswith("\n") and line.startswith("ok "):
            done.append(line.split()[1])
    return done


async def test_sigkill_during_appends_loses_nothing_that_returned(tmp_path: Path, fake_backend) -> None:
    settings = Settings().with_data_dir(tmp_path / "data")
    core = await ArawnCore.open(settings, fake_backend)
    ws = await core.create_workstream("crash")
    await core.close(end_sessions=False)
    rng = random.Random(20261128)
    acknowledged: list[str] = []
    for round_no in range(20):
        proc = start_child(settings.data_dir, "append", ws.id)
        acknowledged += kill_and_collect(proc, rng.uniform(0.02, 0.4))
        core = await ArawnCore.open(settings, fake_backend)  # recovery runs here
        session = await core.active_session(ws.id)
        assert session is not None
        msgs = await core.session_messages(session.id)
        ids = [m.id for m in msgs]
        assert len(ids) == len(set(ids)), "a record was duplicated"
        missing = set(acknowledged) - set(ids)
        assert not missing, f"round {round_no}: {len(missing)} acknowledged appends lost"
        assert all(m.content.startswith("message ") for m in msgs)
        assert session.message_count == len(msgs)
        await core.close(end_sessions=False)
    # every line of the file is a complete, valid record; later appends work
    path = settings.data_dir / "workstreams" / ws.id / "messages.jsonl"
    for line in path.read_bytes().splitlines():
        json.loads(line)
    core = await ArawnCore.open(settings, fake_backend)
    m = await core.append_message(ws.id, "user", "after all the crashes")
    assert (await core.session_messages(m.session_id))[-1].id == m.id
    integrity = await core.db.fetchone("PRAGMA integrity_check")
    assert integrity[0] == "ok"
    await core.close(end_sessions=False)
    assert len(acknowledged) > 100
