"""CI runs exactly the README's test command, and the README's two commands stay the first two."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    return re.findall(r"```sh\n(.+?)\n```", (ROOT / "README.md").read_text(), re.S)


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    install_and_run, test = readme_commands()[:2]
    assert install_and_run.endswith("&& arawn") and "pytest" in test
    ci = (ROOT / ".ci" / "run").read_text().rstrip().splitlines()
    assert ci[-1] == test, "the last line of .ci/run must be the README's test command"


def test_both_commands_build_llama_cpp_portably() -> None:
    """A native llama.cpp build dies on CPUs that report AMX in VMs without AMX state (see README)."""
    for command in readme_commands()[:2]:
        assert command.startswith('CMAKE_ARGS="-DGGML_NATIVE=OFF ') and "embedded]" in command
