"""The engine must import without the UI (a fresh interpreter proves it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_core_does_not_import_textual() -> None:
    code = (
        "import sys, pkgutil, importlib, arawn_core\n"
        "for m in pkgutil.walk_packages(arawn_core.__path__, 'arawn_core.'):\n"
        "    if not m.name.endswith('embedded'):\n"
        "        importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n == 'textual' or n.startswith('textual.'))\n"
        "print(len(bad)); sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_headless_cli_does_not_import_textual() -> None:
    """`arawn --headless` stays fast: the scripting path never loads the UI toolkit."""
    code = "import sys, arawn_tui.headless; sys.exit(1 if 'textual' in sys.modules else 0)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
