"""What issue 15's checks cost: the open-time survey of the files, and the per-piece deadline.

* open: `ArawnCore.open` + `list_workstreams` + close on N workstreams, with the
  survey (tighten modes, notice missing/stale workstreams, catch up) against the
  same open with only the earlier check (messages.jsonl longer than indexed).
  Interleaved, best of R each; the ratio is survey / earlier.
* deadline: awaiting each piece of a local async stream through
  `Deadline.within` against awaiting it plainly (the per-token cost a streamed
  reply pays for its whole-request deadline).

    python bench/bench_hardening.py [--quick] [--out PATH]
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import base_parser, finish, log, machine_info, now_iso, ratio, settings_for  # noqa: E402


async def build(data: Path, n: int) -> None:
    from arawn_core.core import ArawnCore
    from tests.fakes import FakeBackend

    core = await ArawnCore.open(settings_for(data), FakeBackend())
    try:
        for i in range(n):
            ws = await core.create_workstream(f"w{i}")
            await core.append_message(ws.id, "user", "hello " * 20)
    finally:
        await core.close(end_sessions=False)


async def open_list_close(data: Path) -> float:
    from arawn_core.core import ArawnCore
    from tests.fakes import FakeBackend

    t = time.perf_counter()
    core = await ArawnCore.open(settings_for(data), FakeBackend())
    await core.list_workstreams()
    await core.close(end_sessions=False)
    return time.perf_counter() - t


async def earlier_catch_up(self) -> int:
    """The check before issue 15: only message logs longer than indexed."""
    from arawn_core.store.recovery import logs_behind

    offsets = await self.index_offsets()
    behind = await asyncio.to_thread(logs_behind, self.data_dir, offsets)
    for ws_id in behind:
        await self.catch_up(ws_id)
    return len(behind)


async def measure_open(root: Path, n: int, rounds: int) -> dict:
    from arawn_core.store.repository import Repository

    data = root / f"open-{n}"
    if not (data / "arawn.db").exists():
        shutil.rmtree(data, ignore_errors=True)
        log(f"building {n} workstreams")
        await build(data, n)
    survey = Repository.catch_up_all
    with_survey, without = [], []
    for _ in range(rounds):
        Repository.catch_up_all = survey
        with_survey.append(await open_list_close(data))
        Repository.catch_up_all = earlier_catch_up
        without.append(await open_list_close(data))
    Repository.catch_up_all = survey
    best_with, best_without = min(with_survey), min(without)
    return {"workstreams": n, "rounds": rounds, "survey_ms": round(best_with * 1000, 2),
            "earlier_check_ms": round(best_without * 1000, 2), "ratio": ratio(best_with, best_without, 2)}


async def measure_deadline(pieces: int, rounds: int) -> dict:
    from arawn_core.llm.deadline import Deadline

    async def stream():
        for i in range(pieces):
            await asyncio.sleep(0)
            yield i

    async def plain() -> float:
        t = time.perf_counter()
        it = stream()
        async for _ in it:
            pass
        return time.perf_counter() - t

    async def bounded() -> float:
        t = time.perf_counter()
        deadline = Deadline(3600, "bench")
        it = stream()
        while True:
            try:
                await deadline.within(anext(it))
            except StopAsyncIteration:
                break
        return time.perf_counter() - t

    a, b = [], []
    for _ in range(rounds):
        a.append(await bounded())
        b.append(await plain())
    per_piece_us = (min(a) - min(b)) / pieces * 1e6
    return {"pieces": pieces, "rounds": rounds, "bounded_ms": round(min(a) * 1000, 2),
            "plain_ms": round(min(b) * 1000, 2), "overhead_per_piece_us": round(per_piece_us, 2),
            "ratio": ratio(min(a), min(b), 2)}


def main() -> None:
    p = base_parser(__doc__.splitlines()[0])
    args = p.parse_args()
    root = Path(args.data_root) / "hardening"
    root.mkdir(parents=True, exist_ok=True)
    n, rounds = (100, 3) if args.quick else (1000, 9)
    doc = {"area": "hardening", "when": now_iso(), "machine": machine_info(), "quick": args.quick,
           "open": asyncio.run(measure_open(root, n, rounds)),
           "deadline": asyncio.run(measure_deadline(2000 if args.quick else 20000, rounds))}
    finish("hardening", doc, args.out)


if __name__ == "__main__":
    main()
