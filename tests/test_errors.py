"""One error hierarchy: every expected failure is an ArawnError with a message and an exit code;
the older import paths name the same classes; the importers no longer import the facade."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest

from arawn_core import errors

REPO = Path(__file__).resolve().parents[1]


def test_old_homes_name_the_same_classes() -> None:
    from arawn_core import config, core
    from arawn_core.llm import errors as llm_errors
    from arawn_core.store import db, jsonl, repository

    assert core.UsageError is errors.UsageError
    assert repository.NotFound is errors.NotFound
    assert db.DatabaseError is errors.DatabaseError
    assert jsonl.StorageFull is errors.StorageFull
    assert config.ConfigError is errors.ConfigError
    for name in ("LLMError", "BackendUnavailable", "ModelNotFound", "ContextOverflow", "LLMTimeout", "BackendError"):
        assert getattr(llm_errors, name) is getattr(errors, name)


@pytest.mark.parametrize(("error", "code"), [
    (errors.UsageError("bad"), 2),
    (errors.ConfigError("arawn.toml: bad"), 2),
    (errors.NotFound("no workstream"), 2),
    (errors.DatabaseError("arawn.db: locked"), 1),
    (errors.StorageFull(errno.ENOSPC, "disk full while writing x"), 1),
    (errors.BackendUnavailable("http://h:1", "refused"), 3),
    (errors.ModelNotFound("m", "http://h:1"), 1),
    (errors.ContextOverflow("too long"), 1),
    (errors.LLMTimeout("http://h:1", 5), 1),
])
def test_every_kind_has_a_message_and_an_exit_code(error: errors.ArawnError, code: int) -> None:
    assert isinstance(error, errors.ArawnError)
    assert error.exit_code == code
    assert error.message and "\n" not in error.message


def test_storage_full_is_still_an_os_error_with_a_plain_message() -> None:
    exc = errors.StorageFull(errno.ENOSPC, "disk full while writing /d/messages.jsonl")
    assert isinstance(exc, OSError) and exc.errno == errno.ENOSPC
    assert exc.message == "disk full while writing /d/messages.jsonl"
    assert isinstance(errors.NotFound("x"), LookupError)  # callers that caught LookupError still do


def test_importers_do_not_import_the_facade() -> None:
    code = ("import sys, arawn_core.importers, arawn_core.importers.export\n"
            "sys.exit(1 if 'arawn_core.core' in sys.modules else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr or "importing the importers loaded arawn_core.core"


def test_cli_maps_an_engine_error_to_its_exit_code_and_one_line(tmp_path: Path, capsys) -> None:
    from arawn_tui.headless import run
    from tests.fakes import FakeBackend

    config = tmp_path / "arawn.toml"
    config.write_text("")
    code = run(["--config", str(config), "--data-dir", str(tmp_path / "d"), "ws", "show", "nope"],
               backend=FakeBackend())
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "no workstream matches 'nope'" in err
    code = run(["--config", str(config), "--data-dir", str(tmp_path / "d"), "session", "show",
                "00000000-0000-0000-0000-000000000000"], backend=FakeBackend())
    err = capsys.readouterr().err
    assert code == 2 and "no session" in err and "Traceback" not in err
