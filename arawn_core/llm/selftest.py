"""Can this llama-cpp-python build run a model on this CPU? Asked once, in a child process.

A llama.cpp compiled for the build machine's exact instruction set can die
with a signal instead of raising: a native build uses Intel AMX tiles when
the CPU reports them, and a virtual machine that does not enable AMX state
kills the process at the first matrix multiply (SIGSEGV, `ldtilecfg` in
libggml-cpu). In-process that would take the whole app down mid-chat. So
before the first model load, a child process loads the model with a tiny
context and evaluates a few tokens. Its verdict is cached per build
(llama-cpp-python version, native libraries' sizes and times) in the user
cache dir, so the check costs about two seconds once per installation.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import platformdirs

log = logging.getLogger(__name__)

PORTABLE_CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
REINSTALL_HINT = (f'CMAKE_ARGS="{PORTABLE_CMAKE_ARGS}" pip install --no-cache-dir --force-reinstall '
                  "--no-deps llama-cpp-python")
CHILD_CODE = """
import sys
import llama_cpp
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=64, n_batch=16, n_threads=1, verbose=False)
llm.eval(llm.tokenize(b"The quick brown fox jumps over the lazy dog"))
"""
TIMEOUT_S = 300.0
_checked: dict[str, str | None] = {}  # build key -> None (runs) or the reason it does not
_lock = threading.Lock()


def cache_file() -> Path:
    return Path(platformdirs.user_cache_dir("arawn")) / "llama-build-check.json"


def build_key() -> str:
    """llama-cpp-python's version and its native libraries' sizes and modification times."""
    spec = importlib.util.find_spec("llama_cpp")
    where = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    parts: list[str] = [sys.version.split()[0]]
    for base in where:
        version_file = base / "__init__.py"
        if version_file.is_file():
            parts.append(hashlib.sha256(version_file.read_bytes()).hexdigest()[:16])
        for lib in sorted((base / "lib").glob("*.so*")) if (base / "lib").is_dir() else []:
            st = lib.stat()
            parts.append(f"{lib.name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _load_cache() -> dict[str, dict[str, object]]:
    try:
        data = json.loads(cache_file().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_verdict(key: str, problem: str | None) -> None:
    data = _load_cache()
    data[key] = {"runs": problem is None, "problem": problem}
    path = cache_file()
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def _recorded(key: str) -> tuple[bool, str | None]:
    """(known, problem): this process's verdict for the build, else the cache file's."""
    if key in _checked:
        return True, _checked[key]
    cached = _load_cache().get(key)
    if isinstance(cached, dict) and "runs" in cached:
        return True, None if cached["runs"] else str(cached.get("problem") or "the native build crashed")
    return False, None


def known_problem() -> str | None:
    """The recorded verdict for the installed build, without running the check (None: runs, or unknown)."""
    return _recorded(build_key())[1]


def native_build_problem(model_path: str | os.PathLike[str], child_code: str | None = None) -> str | None:
    """None if this build ran the model in a child process; else one line saying what happened and what to do.

    Only a death by signal is a verdict (and cached): any other failure (a bad
    model file, a missing package) is left to the real load to report.
    """
    key = build_key()
    with _lock:
        known, problem = _recorded(key)
        if known:
            _checked[key] = problem
            return problem
        log.info("checking that llama-cpp-python runs on this CPU (once per installation)")
        try:
            proc = subprocess.run([sys.executable, "-c", child_code or CHILD_CODE, str(model_path)],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  timeout=TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("could not check the llama-cpp-python build: %s", exc)
            return None  # not a verdict: the real load decides
        if proc.returncode < 0:
            problem = (f"this llama-cpp-python build crashes on this CPU ({_signal_name(proc.returncode)} while "
                       f"running a model in a test process); reinstall it built for any AVX2 CPU: {REINSTALL_HINT}")
        elif proc.returncode == 0:
            problem = None
        else:
            tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
            log.warning("llama-cpp-python build check exited with %d: %s", proc.returncode, tail[0][:200])
            return None
        _checked[key] = problem
        _save_verdict(key, problem)
        return problem
