"""Config errors: one line naming the file and the key, exit 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from arawn_core.config import ConfigError, Settings, load_settings, parse_settings
from arawn_tui.headless import run

REPO = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = run(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "toml, expected",
    [
        ("[llm]\nnum_ctx = 4096\nmodel = \n", "line 3"),
        ("[llm]\nmodle = 'x'\n", "unknown key llm.modle (did you mean llm.model?)"),
        ("[lm]\nmodel = 'x'\n", "unknown section [lm] (did you mean llm?)"),
        ("[llm]\nnum_ctx = 'big'\n", "llm.num_ctx must be an integer, found string 'big'"),
        ("[llm]\nnum_ctx = 10\n", "llm.num_ctx must be between 256 and 1048576, found 10"),
        ("[workstream.compression]\nenabled = 'yes'\n", "workstream.compression.enabled must be true or false"),
        ("[workstream]\ncompression = 3\n", "[workstream.compression] must be a table"),
        ("[llm]\nbackend = 'gpt'\n", "llm.backend must be one of auto, ollama, openai, embedded"),
        ("[workstream.compression]\nmax_concurrency = 0\n", "max_concurrency must be between 1 and 64"),
    ],
)
def test_config_errors_are_one_line_and_exit_2(tmp_path: Path, capsys, toml: str, expected: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    code, out, err = run_cli(capsys, "--config", str(cfg), "--data-dir", str(tmp_path / "d"), "ws", "list")
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1, err
    assert str(cfg) in err and expected in err
    assert "Traceback" not in err


def test_missing_config_file_is_an_error(tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(capsys, "--config", str(tmp_path / "nope.toml"), "ws", "list")
    assert code == 2 and "nope.toml: config file not found" in err


def test_arawn_config_env_is_honoured(tmp_path: Path, monkeypatch) -> None:
    cfg = tmp_path / "env.toml"
    cfg.write_text("[llm]\nmodel = 'from-env'\n")
    monkeypatch.setenv("ARAWN_CONFIG", str(cfg))
    assert load_settings().llm.model == "from-env"


def test_lookup_order_cwd_then_user_config(tmp_path: Path, monkeypatch) -> None:
    user_cfg = tmp_path / "xdg" / "arawn" / "arawn.toml"
    user_cfg.parent.mkdir(parents=True)
    user_cfg.write_text("[llm]\nmodel = 'user'\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert load_settings().llm.model == "user"
    (work / "arawn.toml").write_text("[llm]\nmodel = 'cwd'\n")
    assert load_settings().llm.model == "cwd"
    explicit = tmp_path / "explicit.toml"
    explicit.write_text("[llm]\nmodel = 'explicit'\n")
    assert load_settings(str(explicit)).llm.model == "explicit"


def test_ollama_host_env_and_data_dir_override(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "http://127.0.0.1:9999")
    s = load_settings(None, str(tmp_path / "dd"))
    assert s.llm.resolved_host == "http://127.0.0.1:9999"
    assert s.data_dir == tmp_path / "dd"
    s2 = parse_settings("[llm]\nhost = 'http://127.0.0.1:1234'\n")
    assert s2.llm.resolved_host == "http://127.0.0.1:1234"


def test_sample_config_documents_every_default() -> None:
    """The shipped arawn.toml parses and equals the built-in defaults, key for key."""
    sample = parse_settings((REPO / "arawn.toml").read_text(), "arawn.toml")
    assert sample == Settings(source="arawn.toml")


def test_invalid_utf8_config_names_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bin.toml"
    cfg.write_bytes(b"[llm]\nmodel = '\xff'\n")
    with pytest.raises(ConfigError, match=r"bin.toml: line 2: config is not valid UTF-8"):
        load_settings(str(cfg))


def test_cli_subprocess_bad_config_no_traceback(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[llm]\nnum_ctx = true\n")
    proc = subprocess.run([sys.executable, "-m", "arawn_tui", "--headless", "--config", str(cfg), "ws", "list"],
                          capture_output=True, text=True, cwd=REPO, stdin=subprocess.DEVNULL, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "llm.num_ctx must be an integer, found boolean True" in proc.stderr


def test_bad_usage_is_one_line_exit_2(capsys, tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "--data-dir", str(tmp_path), "ws", "frobnicate")
    assert code == 2 and err.count("\n") == 1 and "invalid choice" in err
