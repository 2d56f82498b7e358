"""The status line's context and pool parts: both numbers and which one is used; hosts up out of all."""

from __future__ import annotations

from arawn_core.llm.base import BackendInfo
from arawn_core.llm.pool import HostStatus
from arawn_core.llm.server_context import LEARNED, ContextPlan
from arawn_tui.widgets.status_bar import _context_and_hosts


def texts(info: BackendInfo) -> list[str]:
    return [c.plain for c in _context_and_hosts(info)]


def test_the_servers_smaller_context_is_shown_as_used() -> None:
    info = BackendInfo("openai", "http://a/v1", True, context=ContextPlan(8192, 2048, LEARNED))
    assert texts(info) == ["ctx 2048 (server's; configured 8192)"]


def test_the_configured_context_when_smaller_and_nothing_until_the_server_says() -> None:
    assert texts(BackendInfo("ollama", "h", True, context=ContextPlan(4096, 32768, "api/show"))) == [
        "ctx 4096 (configured; server's 32768)"]
    assert texts(BackendInfo("ollama", "h", True, context=ContextPlan(4096, None))) == []
    assert texts(BackendInfo("ollama", "h", True, context=ContextPlan(0, 3000, "api/show num_ctx"))) == [
        "ctx 3000 (server's; configured auto)"]


def test_a_pool_shows_hosts_up() -> None:
    hosts = [HostStatus("a"), HostStatus("b", up=False, detail="refused")]
    assert texts(BackendInfo("openai", "a, b", True, hosts=hosts)) == ["hosts 1/2 up"]
