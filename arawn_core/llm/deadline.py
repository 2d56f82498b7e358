"""One deadline for a whole LLM request: connecting, the answer, and every streamed piece.

Why: an HTTP client's timeout bounds each wait for the next bytes, not the
request. A server that sends a token a second (or a body a byte a second)
never trips it, and would hold the CLI and the job queue forever. Every
backend starts a `Deadline` when a request begins and awaits each step of it
through `within`, so the request as a whole ends at `request_timeout_s`,
however the server dribbles. Expiry raises `LLMTimeout`, which is transient:
a compression job is retried with backoff like any other timeout.

Only the backend's own awaits are bounded (never the caller's work between
streamed pieces, which is not cancelled from here), but the clock keeps
running while the caller works: the deadline is wall-clock from the start.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Awaitable, TypeVar

from arawn_core.llm.errors import LLMTimeout

T = TypeVar("T")


class Deadline:
    """`seconds` from now (on the running loop's clock), for requests to `host`."""

    def __init__(self, seconds: float, host: str) -> None:
        self.seconds = float(seconds)
        self.host = host
        self.at = asyncio.get_running_loop().time() + self.seconds

    def remaining(self) -> float:
        return self.at - asyncio.get_running_loop().time()

    def expired(self) -> LLMTimeout:
        return LLMTimeout(self.host, self.seconds)

    async def within(self, step: Awaitable[T]) -> T:
        """Await one step of the request; LLMTimeout if the deadline passes first."""
        if self.remaining() <= 0:
            if asyncio.iscoroutine(step):
                step.close()  # never started: no "was never awaited" warning
            raise self.expired()
        try:
            async with asyncio.timeout_at(self.at):
                return await step
        except TimeoutError:
            raise self.expired() from None

    async def stream(self, items: AsyncIterator[T]) -> AsyncIterator[T]:
        """`items`, each fetched within the deadline; the source is closed however this ends."""
        try:
            while True:
                try:
                    item = await self.within(anext(items))
                except StopAsyncIteration:
                    return
                yield item
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                await aclose()
