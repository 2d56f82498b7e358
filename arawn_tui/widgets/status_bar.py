"""The status line above the footer: backend, model, reachability, queue length.

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
            hint = "is `ollama serve` running?" if info.kind == "ollama" else one_line(info.detail, 80)
            parts.append(Content.styled(f"✗ {info.kind} unreachable at {one_line(info.host, 80)}", "bold $error"))
            if hint:
                parts.append(Content.styled(hint, "$error"))
        if self.model:
            model = Content(f"model {one_line(self.model, 60)}")
            if info is not None and info.reachable and info.models and self.model not in info.models \
                    and f"{self.model}:latest" not in info.models:
                model = Content.assemble(model, (" (not installed)", "$warning"))
            parts.append(model)
        parts.append(Content(f"queue {self.queue}"))
        if self.activity:
            parts.append(Content.styled(self.activity, "$text-muted"))
        return Content(" · ").join(parts)
