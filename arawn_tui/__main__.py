"""`arawn`: the TUI by default; `arawn --headless COMMAND ...` runs the scripting interface."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: `--headless` commands load only what they need
    from arawn_core.config import Settings
    from arawn_core.llm.base import LLMBackend


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--headless" in argv:
        from arawn_tui.headless import run

        argv.remove("--headless")
        return run(argv)
    return run_tui(argv)


# Textual paints at most TEXTUAL_FPS frames a second (default 60), and a key's change
# reaches the terminal only with the next frame tick, often the one after (the widget,
# then the screen, each settle first). At 120 a key shows about twice as soon; frames
# are only painted when something changed, so an idle app costs nothing more.
FRAMES_PER_SECOND = "120"


def tune_process_for_tui() -> None:
    """The process is about to run the TUI and nothing else: call before Textual is imported.

    Textual reads TEXTUAL_FPS when it is first imported (a value the user set wins), and the
    garbage collector is paused until the first screen is painted (see gc_pause; the app,
    built with `tune_gc=True`, resumes it). Never done at import, nor for `--headless`."""
    import os

    from arawn_tui import gc_pause

    os.environ.setdefault("TEXTUAL_FPS", FRAMES_PER_SECOND)
    gc_pause.pause()


def run_tui(argv: list[str]) -> int:
    import argparse
    import asyncio

    tune_process_for_tui()
    parser = argparse.ArgumentParser(prog="arawn", description="A terminal workbench for long-running "
                                     "conversations with a local LLM. `arawn --headless --help` for scripting.")
    parser.add_argument("--config", help="path to arawn.toml")
    parser.add_argument("--data-dir", help="data directory (overrides the config)")
    args = parser.parse_args(argv)

    from arawn_core.config import load_settings
    from arawn_core.errors import ConfigError

    from arawn_core.store.db import DataDirError, ReadOnlyStore, ensure_private_dir
    from arawn_core.store.jsonl import UnsafePath
    from arawn_tui.sanitize import one_line

    try:
        settings = load_settings(args.config, args.data_dir)
        ensure_private_dir(settings.data_dir, link_ok=True)  # before the screen takes the terminal
    except (ConfigError, DataDirError, UnsafePath, ReadOnlyStore) as exc:
        print(f"arawn: {one_line(str(exc), 2000)}", file=sys.stderr)
        return 2
    backend = asyncio.run(prepare_backend(settings))
    from arawn_tui.factory import create_app

    app = create_app(settings, backend, tune_gc=True)
    app.run()
    return int(app.return_code or 0)


async def prepare_backend(settings: Settings) -> LLMBackend:
    """Before the screen takes over the terminal: when the backend will be the embedded
    default model and its file is not there yet, assemble it now, with progress on
    stderr where the user can see it. Otherwise nothing is imported or probed here."""
    import asyncio

    from arawn_core.llm.lazy import LazyBackend

    backend: LLMBackend = LazyBackend(settings)  # the core chooses for real on first use
    if backend.kind == "embedded" and not settings.llm.model_path:
        from arawn_core.llm.embedded import default_model_path, ensure_default_model

        target = default_model_path()
        if not target.is_file():
            try:
                await asyncio.to_thread(ensure_default_model, target)
            except Exception as exc:  # the app still starts and shows the backend as unavailable
                print(f"arawn: could not prepare the embedded model: {exc}", file=sys.stderr)
    return backend


if __name__ == "__main__":
    sys.exit(main())
