"""The status line above the footer: backend, model, reachability, context used, pool hosts, queue length.

No clock and nothing that changes by itself, so snapshots are stable.
"""

from __future__ import annotations

from textual.content import Content
from textual.reactive import reactive
from textual.widgets import Static

from arawn_core.llm.base import BackendInfo
from arawn_tui.sanitize import one_line


class StatusBar(Static):
    info: reactive[BackendInfo | None] = reactive(None)
    model: reactive[str] = reactive("")
    queue: reactive[int] = reactive(0)
    activity: reactive[str] = reactive("opening the data dir…")

    def render(self) -> Content:
        parts: list[Content] = []
        info = self.info
        if info is None:
            parts.append(Content.styled("backend: checking…", "$text-muted"))
        elif info.reachable:
            parts.append(Content.styled(f"● {info.kind}", "bold $success"))
            parts.append(Content(one_line(info.host, 80)))
        else:
            hint = "is `ollama serve` running?" if info.kind == "ollama" and not info.hosts \
                else one_line(info.detail, 80)
            parts.append(Content.styled(f"✗ {info.kind} unreachable at {one_line(info.host, 80)}", "bold $error"))
            if hint:
                parts.append(Content.styled(hint, "$error"))
        if self.model:
            model = Content(f"model {one_line(self.model, 60)}")
            if info is not None and info.reachable and info.models and self.model not in info.models \
                    and f"{self.model}:latest" not in info.models:
                model = Content.assemble(model, (" (not installed)", "$warning"))
            parts.append(model)
        parts.extend(_context_and_hosts(info))
        parts.append(Content(f"queue {self.queue}"))
        if self.activity:
            parts.append(Content.styled(self.activity, "$text-muted"))
        return Content(" · ").join(parts)


def _context_and_hosts(info: BackendInfo | None) -> list[Content]:
    """"ctx 2048 (server's; configured 8192)" once the server has said, and for a pool "hosts 2/3 up"."""
    parts: list[Content] = []
    if info is None:
        return parts
    plan = info.context
    if plan is not None and plan.server:  # nothing to compare while the server has not said
        if plan.which == "server":
            parts.append(Content(f"ctx {plan.used} (server's; configured {plan.configured or 'auto'})"))
        else:
            parts.append(Content(f"ctx {plan.used} (configured; server's {plan.server})"))
    if info.hosts:
        up = sum(1 for h in info.hosts if h.up)
        text = Content(f"hosts {up}/{len(info.hosts)} up")
        parts.append(text if up == len(info.hosts) else Content.styled(f"hosts {up}/{len(info.hosts)} up", "$warning"))
    return parts
