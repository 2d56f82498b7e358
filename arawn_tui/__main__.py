"""`arawn`: the TUI by default; `arawn --headless COMMAND ...` runs the scripting interface."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--headless" in argv:
        from arawn_tui.headless import run

        argv.remove("--headless")
        return run(argv)
    return run_tui(argv)


def run_tui(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="arawn", description="A terminal workbench for long-running "
                                     "conversations with a local LLM. `arawn --headless --help` for scripting.")
    parser.add_argument("--config", help="path to arawn.toml")
    parser.add_argument("--data-dir", help="data directory (overrides the config)")
    args = parser.parse_args(argv)

    from arawn_core.config import ConfigError, load_settings

    try:
        settings = load_settings(args.config, args.data_dir)
    except ConfigError as exc:
        print(f"arawn: {exc}", file=sys.stderr)
        return 2
    from arawn_tui.factory import create_app

    app = create_app(settings)
    app.run()
    return int(app.return_code or 0)


if __name__ == "__main__":
    sys.exit(main())
