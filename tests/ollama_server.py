"""A real HTTP server speaking the Ollama protocol, for tests and for an embedded model.

Why: arawn talks to Ollama through the real `ollama` client over real HTTP.
Faking the client would test our assumptions about it, not the client; this
server lets the real client, and the installed app, run unchanged against a
deterministic model with injectable faults. Stdlib only, so it starts fast.

Endpoints (Ollama's field names)::

    GET  /               "Ollama is running"
    GET  /api/version    {"version": ...}
    GET  /api/tags       {"models": [...]} one per engine
    POST /api/show       details, model_info (context length), template
    GET  /api/ps         models that have served a request
    POST /api/chat       NDJSON stream (stream true/absent) or one JSON object;
                         the last object has done, done_reason, prompt_eval_count,
                         eval_count, total_duration, ...
    POST /api/generate   the same with "response" instead of "message"

Ollama behaviours reproduced because arawn depends on them:

* unknown model -> 404 {"error": "model \\"x\\" not found, try pulling it first"};
  "x" and "x:latest" name the same model.
* options.num_ctx defaults to 2048. A prompt longer than num_ctx is silently
  cut to its LAST num_ctx tokens and prompt_eval_count reports the tokens
  kept, unless the request has "truncate": false, which gets
  400 {"error": "input length exceeds the context length"}.
  num_ctx is also capped at the engine's `context_length`.
* options.num_predict caps generated tokens (done_reason "length"); <= 0: no cap.

Engines
-------
The model is an *engine*, duck-typed (subclass `Engine` for the defaults):

    name: str                      model name in /api/tags (":latest" implied)
    context_length: int            trained context; caps num_ctx
    family, parameter_size, quantization_level, size   shown by tags/show/ps
    tokenize(text) -> list         tokens of any type (words, ints)
    count_tokens(text) -> int      default: len(tokenize(text))
    render(messages) -> list       chat messages -> prompt tokens (the chat template)
    stream(prompt, num_ctx, num_predict, temperature) -> Iterator[str]
        `prompt` is render()'s list, already cut to num_ctx by the server.
        Yield the reply ONE GENERATED TOKEN PER ITEM (an item may be "" while
        a multi-byte character is incomplete): the server counts items for
        eval_count, closes the iterator after num_predict items, and sets
        done_reason. prompt_eval_count is len(prompt).
    close() -> None                release resources (called by `main`)

The server holds a per-engine lock around render+stream (like Ollama with
OLLAMA_NUM_PARALLEL=1), so engines need not be thread-safe.

Adding the llama-cpp-python engine in tests/llama_engine.py, a sketch::

    from tests.ollama_server import Engine

    class LlamaEngine(Engine):
        family = "gemma3"
        def __init__(self, model_path: str, name: str = "gemma3:270m", n_ctx: int = 8192):
            from llama_cpp import Llama
            self.name, self.context_length = name, n_ctx
            self.llm = Llama(model_path=model_path, n_ctx=n_ctx, verbose=False)
        def tokenize(self, text):
            return self.llm.tokenize(text.encode(), add_bos=False, special=True)
        def render(self, messages):
            text = ...  # apply the GGUF chat template to messages
            return self.llm.tokenize(text.encode(), add_bos=True, special=True)
        def stream(self, prompt, num_ctx, num_predict, temperature):
            for tok in self.llm.generate(prompt, temp=temperature or 0.0, reset=True):
                if self.llm.token_is_eog(tok): return   # or compare to token_eos()
                yield self.llm.detokenize([tok]).decode(errors="ignore")  # keep UTF-8 state in real code

and run it with ``python -m tests.ollama_server --engine llama --engine-arg model_path=/x.gguf``
(``--engine pkg.module:factory`` loads any other engine).

Subprocess use (tmux, installed app)::

    python -m tests.ollama_server --port 0 --engine scripted [--model NAME]
        [--engine-arg KEY=VALUE ...]     # VALUE parsed as JSON when it can be

run from the repository root. It prints ``... listening on http://127.0.0.1:PORT``
as its first stdout line and exits 0 on SIGTERM/SIGINT. Faults can be set at
runtime over HTTP: ``POST /_fault {"kind": "fail"|"delay"|"cut"|"close"|"fill", ...}``
(keyword arguments of the matching setter below), ``DELETE /_fault`` clears
them, ``GET /_requests`` returns the recorded requests.

Faults (in-process: methods on `OllamaServer`)
---------------------------------------------
Each takes ``n`` (how many requests it hits; None = every request until
`clear_faults()`) and ``paths`` (default: /api/chat and /api/generate):

* ``fail_next(n, status=500, error=...)``  HTTP error with Ollama's {"error": ...}
* ``delay_next(seconds, n)``               wait before answering (timeouts)
* ``cut_stream_next(n, after=None, partial=True, clean_eof=False)``
  send `after` whole lines (None: all but the final done line), then half of
  the next line if `partial`, then hang up: abruptly (unfinished chunked body)
  or, with `clean_eof`, after properly ending the body.
* ``close_next(n)``                        hang up without any response
* ``fill_context_next(n)``                 report prompt_eval_count = num_ctx
* ``trickle_next(n, interval=1.0, forever=True)``
  stream: one token every `interval` seconds (endlessly with `forever`, else
  the real reply slowed down); stream=false: the body one byte per `interval`.
  Every wait is shorter than a per-read timeout: only a whole-request
  deadline stops it.
* ``patch_reply_next(n, fields=None, body=None)``
  merge `fields` into the final (done) object, e.g. {"done": false} or
  {"prompt_eval_count": "many"}; or answer 200 with `body` instead.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import re
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Iterator, Sequence

VERSION = "0.12.0"
DEFAULT_NUM_CTX = 2048
MODEL_PATHS = ("/api/chat", "/api/generate")
MARKER_RE = re.compile(r"MARKER-\w+")


# --------------------------------------------------------------------------- engines


class Engine:
    """Defaults for an engine; see the module docstring for the contract."""

    name: str = "engine"
    context_length: int = 131072
    family: str = "unknown"
    parameter_size: str = "0"
    quantization_level: str = "none"
    size: int = 0

    def tokenize(self, text: str) -> list[Any]:
        raise NotImplementedError

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def render(self, messages: Sequence[dict[str, Any]]) -> list[Any]:
        text = "".join(f"<|{m.get('role', 'user')}|>\n{m.get('content') or ''}\n" for m in messages)
        return self.tokenize(text + "<|assistant|>\n")

    def stream(
        self, prompt: list[Any], num_ctx: int, num_predict: int, temperature: float | None
    ) -> Iterator[str]:
        raise NotImplementedError

    def close(self) -> None:
        pass


Script = str | Sequence[str] | Callable[[list[str]], str] | None


def default_reply(prompt: list[str]) -> str:
    """'Noted.' followed by each distinct MARKER-xxx of the prompt, so markers survive summaries."""
    markers = list(dict.fromkeys(MARKER_RE.findall(" ".join(prompt))))
    return " ".join(["Noted.", *markers])


class ScriptedEngine(Engine):
    """Deterministic engine. A token is a whitespace-separated word.

    render(): each message is one role token ("<user>", "<assistant>", ...)
    followed by its content's words, so `count_tokens` of a conversation is
    easy to predict in tests. The reply is split the same way (each word keeps
    the whitespace before it), so eval_count == number of reply words.

    `script`: None -> `default_reply(prompt)`; a str -> always that text; a
    sequence -> its items in order, then `default_reply`; a callable -> called
    with the prompt tokens as kept after truncation. `delay_s` sleeps before
    each reply (the engine stays busy), `token_delay_s` between tokens.
    Every prompt it saw (after truncation) is appended to `prompts`.
    """

    family = "scripted"

    def __init__(
        self,
        name: str = "scripted",
        script: Script = None,
        delay_s: float = 0.0,
        token_delay_s: float = 0.0,
        context_length: int = 131072,
    ) -> None:
        self.name = name
        self.script = script
        self.delay_s = delay_s
        self.token_delay_s = token_delay_s
        self.context_length = context_length
        self.prompts: list[list[str]] = []
        self._script_pos = 0

    def tokenize(self, text: str) -> list[str]:
        return text.split()

    def render(self, messages: Sequence[dict[str, Any]]) -> list[str]:
        tokens: list[str] = []
        for m in messages:
            tokens.append(f"<{m.get('role', 'user')}>")
            tokens.extend(self.tokenize(m.get("content") or ""))
        return tokens

    def reply_for(self, prompt: list[str]) -> str:
        script = self.script
        if script is None:
            return default_reply(prompt)
        if isinstance(script, str):
            return script
        if callable(script):
            return script(prompt)
        if self._script_pos < len(script):
            self._script_pos += 1
            return script[self._script_pos - 1]
        return default_reply(prompt)

    def stream(
        self, prompt: list[str], num_ctx: int, num_predict: int, temperature: float | None
    ) -> Iterator[str]:
        self.prompts.append(list(prompt))
        if self.delay_s:
            time.sleep(self.delay_s)
        for i, piece in enumerate(re.findall(r"\s*\S+", self.reply_for(prompt))):
            if i and self.token_delay_s:
                time.sleep(self.token_delay_s)
            yield piece.lstrip() if i == 0 else piece


ENGINE_FACTORIES = {
    "scripted": "tests.ollama_server:ScriptedEngine",
    "llama": "tests.llama_engine:LlamaEngine",
}


def make_engine(spec: str, **kwargs: Any) -> Engine:
    """Build an engine from "scripted", "llama" or "package.module:factory"."""
    target = ENGINE_FACTORIES.get(spec, spec)
    if target == ENGINE_FACTORIES["scripted"]:
        return ScriptedEngine(**kwargs)  # no import: works however this module was loaded
    module_name, _, attr = target.partition(":")
    if not attr:
        raise ValueError(f"unknown engine {spec!r}: use scripted, llama or module:factory")
    return getattr(importlib.import_module(module_name), attr)(**kwargs)


# --------------------------------------------------------------------------- server


class RecordedRequest(dict):
    """A request's JSON body ({} for a GET) that also knows its `.method` and `.path`."""

    def __init__(self, method: str, path: str, body: dict[str, Any]) -> None:
        super().__init__(body)
        self.method = method
        self.path = path


@dataclass
class _Fault:
    kind: str  # fail | delay | cut | close | fill | trickle | patch
    remaining: int | None  # None: until cleared
    paths: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)


class _HangUp(Exception):
    """Raised inside a handler to end the connection on purpose."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _full_name(name: str) -> str:
    return name if ":" in name else f"{name}:latest"


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (for 'connection refused' tests, too)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class OllamaServer:
    """An Ollama-protocol server on a background thread; see the module docstring."""

    def __init__(self, *engines: Engine, host: str = "127.0.0.1", port: int = 0) -> None:
        self.engines: list[Engine] = list(engines) or [ScriptedEngine()]
        self.requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._engine_locks = {id(e): threading.Lock() for e in self.engines}
        self._loaded: dict[str, int] = {}  # model -> last num_ctx, for /api/ps
        self._stopping = threading.Event()
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.app = self
        self._thread: threading.Thread | None = None

    # ---- lifecycle

    @property
    def engine(self) -> Engine:
        return self.engines[0]

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> OllamaServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="ollama-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers waiting in a delay fault
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()

    def __enter__(self) -> OllamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- faults

    def fail_next(
        self, n: int | None = 1, status: int = 500, error: str = "internal server error",
        paths: Iterable[str] = MODEL_PATHS,
    ) -> None:
        self._add("fail", n, paths, status=status, error=error)

    def delay_next(self, seconds: float, n: int | None = 1, paths: Iterable[str] = MODEL_PATHS) -> None:
        self._add("delay", n, paths, seconds=seconds)

    def cut_stream_next(
        self, n: int | None = 1, after: int | None = None, partial: bool = True, clean_eof: bool = False,
        paths: Iterable[str] = MODEL_PATHS,
    ) -> None:
        self._add("cut", n, paths, after=after, partial=partial, clean_eof=clean_eof)

    def close_next(self, n: int | None = 1, paths: Iterable[str] = MODEL_PATHS) -> None:
        self._add("close", n, paths)

    def fill_context_next(self, n: int | None = 1, paths: Iterable[str] = MODEL_PATHS) -> None:
        self._add("fill", n, paths)

    def trickle_next(self, n: int | None = 1, interval: float = 1.0, forever: bool = True,
                     paths: Iterable[str] = MODEL_PATHS) -> None:
        self._add("trickle", n, paths, interval=interval, forever=forever)

    def patch_reply_next(self, n: int | None = 1, fields: dict[str, Any] | None = None,
                         body: Any = None, paths: Iterable[str] = MODEL_PATHS) -> None:
        self._add("patch", n, paths, fields=fields or {}, body=body)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def bodies(self, path: str | None = None) -> list[RecordedRequest]:
        """Recorded requests, optionally only those to `path`."""
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def _add(self, kind: str, n: int | None, paths: Iterable[str], **params: Any) -> None:
        if n is not None and n < 1:
            raise ValueError("n must be >= 1 or None")
        with self._lock:
            self._faults.append(_Fault(kind, n, tuple(paths), params))

    def _take_faults(self, path: str) -> dict[str, dict[str, Any]]:
        """The first pending fault of each kind that applies to `path`, counted down."""
        taken: dict[str, dict[str, Any]] = {}
        with self._lock:
            for fault in list(self._faults):
                if fault.kind in taken or path not in fault.paths:
                    continue
                taken[fault.kind] = fault.params
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
        return taken

    # ---- request handling (called on handler threads)

    def _record(self, method: str, path: str, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(RecordedRequest(method, path, body))

    def _find(self, model: str) -> Engine | None:
        return next((e for e in self.engines if _full_name(e.name) == _full_name(model)), None)

    def _handle(self, h: _Handler, method: str, path: str, body: dict[str, Any]) -> None:
        if path.startswith("/_"):
            return self._control(h, method, path, body)
        self._record(method, path, body)
        faults = self._take_faults(path)
        if "delay" in faults:
            self._stopping.wait(float(faults["delay"]["seconds"]))
        if "close" in faults:
            raise _HangUp
        if "fail" in faults:
            return h.send_json(int(faults["fail"]["status"]), {"error": faults["fail"]["error"]})
        if "patch" in faults and faults["patch"].get("body") is not None:
            return h.send_json(200, faults["patch"]["body"])

        route = (method, path)
        if route in {("GET", "/"), ("HEAD", "/")}:
            return h.send_text(200, "Ollama is running")
        if route == ("GET", "/api/version"):
            return h.send_json(200, {"version": VERSION})
        if route == ("GET", "/api/tags"):
            return h.send_json(200, {"models": [self._model_entry(e) for e in self.engines]})
        if route == ("GET", "/api/ps"):
            return h.send_json(200, {"models": self._ps()})
        if route == ("POST", "/api/show"):
            return self._show(h, body)
        if route in {("POST", "/api/chat"), ("POST", "/api/generate")}:
            return self._generate(h, path, body, faults)
        return h.send_text(404, "404 page not found")

    def _model_entry(self, e: Engine) -> dict[str, Any]:
        name = _full_name(e.name)
        return {
            "name": name,
            "model": name,
            "modified_at": _now(),
            "size": e.size,
            "digest": hashlib.sha256(name.encode()).hexdigest(),
            "details": self._details(e),
        }

    @staticmethod
    def _details(e: Engine) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": e.family,
            "families": [e.family],
            "parameter_size": e.parameter_size,
            "quantization_level": e.quantization_level,
        }

    def _ps(self) -> list[dict[str, Any]]:
        expires = (datetime.now(timezone.utc) + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
        with self._lock:
            loaded = dict(self._loaded)
        out = []
        for e in self.engines:
            name = _full_name(e.name)
            if name in loaded:
                out.append({**self._model_entry(e), "expires_at": expires, "size_vram": 0, "context_length": loaded[name]})
        return out

    def _show(self, h: _Handler, body: dict[str, Any]) -> None:
        model = str(body.get("model") or body.get("name") or "")
        engine = self._find(model)
        if engine is None:
            return h.send_json(404, {"error": f"model '{model}' not found"})
        h.send_json(200, {
            "modelfile": f"FROM {engine.name}\n",
            "parameters": getattr(engine, "parameters", ""),  # Modelfile PARAMETER lines, e.g. "num_ctx 4096"
            "template": "{{ .Prompt }}",
            "details": self._details(engine),
            "model_info": {
                "general.architecture": engine.family,
                f"{engine.family}.context_length": engine.context_length,
            },
            "capabilities": ["completion"],
            "modified_at": _now(),
        })

    def _generate(self, h: _Handler, path: str, body: dict[str, Any], faults: dict[str, dict[str, Any]]) -> None:
        is_chat = path == "/api/chat"
        model = str(body.get("model") or "")
        if not model:
            return h.send_json(400, {"error": "model is required"})
        engine = self._find(model)
        if engine is None:
            return h.send_json(404, {"error": f'model "{model}" not found, try pulling it first'})
        options = body.get("options") or {}
        try:
            num_ctx = int(options.get("num_ctx") or DEFAULT_NUM_CTX)
            num_predict = int(options.get("num_predict", -1))
            temperature = options.get("temperature")
        except (TypeError, ValueError, AttributeError) as exc:
            return h.send_json(400, {"error": f"invalid options: {exc}"})
        if engine.context_length:
            num_ctx = min(num_ctx, engine.context_length)
        if is_chat:
            messages = list(body.get("messages") or [])
        else:
            messages = [{"role": "user", "content": str(body.get("prompt") or "")}]
            if body.get("system"):
                messages.insert(0, {"role": "system", "content": str(body["system"])})
        streaming = body.get("stream", True) is not False

        started = time.monotonic_ns()
        with self._engine_locks.setdefault(id(engine), threading.Lock()):
            prompt = engine.render(messages)
            if len(prompt) > num_ctx:
                if body.get("truncate") is False:
                    return h.send_json(400, {"error": "input length exceeds the context length"})
                prompt = prompt[-num_ctx:]  # Ollama's default: drop the oldest input, silently
            with self._lock:
                self._loaded[_full_name(engine.name)] = num_ctx
            prompt_done = time.monotonic_ns()
            pieces = engine.stream(prompt, num_ctx, num_predict, temperature)
            lines = self._reply_lines(engine, is_chat, pieces, num_predict, len(prompt), num_ctx, faults)
            timing = {"started": started, "prompt_done": prompt_done}
            trickle = faults.get("trickle")
            if trickle is not None and streaming:
                return h.send_trickle(lines(timing), trickle, self._stopping, piece_of=lambda text: {
                    "model": _full_name(engine.name), "created_at": _now(),
                    **({"message": {"role": "assistant", "content": text}} if is_chat else {"response": text}),
                    "done": False})
            if streaming:
                h.send_stream(lines(timing), faults.get("cut"))
            else:
                h.send_single(lines(timing), is_chat, faults.get("cut"), trickle, self._stopping)

    def _reply_lines(
        self, engine: Engine, is_chat: bool, pieces: Iterator[str], num_predict: int,
        prompt_tokens: int, num_ctx: int, faults: dict[str, dict[str, Any]],
    ) -> Callable[[dict[str, int]], Iterator[dict[str, Any]]]:
        """Build the reply as Ollama's stream objects: one per token, then the done object."""
        name = _full_name(engine.name)

        def piece_obj(text: str) -> dict[str, Any]:
            obj: dict[str, Any] = {"model": name, "created_at": _now()}
            if is_chat:
                obj["message"] = {"role": "assistant", "content": text}
            else:
                obj["response"] = text
            obj["done"] = False
            return obj

        def gen(timing: dict[str, int]) -> Iterator[dict[str, Any]]:
            count, done_reason = 0, "stop"
            try:
                for piece in pieces:
                    count += 1
                    yield piece_obj(piece)
                    if num_predict > 0 and count >= num_predict:
                        done_reason = "length"
                        break
            except Exception as exc:  # noqa: BLE001 - an engine crash becomes Ollama's error object
                yield {"error": f"engine {name} failed: {exc}"}
                return
            finally:
                close = getattr(pieces, "close", None)
                if close is not None:
                    close()
            end = time.monotonic_ns()
            final = piece_obj("")
            final.update({
                "done": True,
                "done_reason": done_reason,
                "total_duration": end - timing["started"],
                "load_duration": 0,
                "prompt_eval_count": max(prompt_tokens, num_ctx) if "fill" in faults else prompt_tokens,
                "prompt_eval_duration": timing["prompt_done"] - timing["started"],
                "eval_count": count,
                "eval_duration": end - timing["prompt_done"],
            })
            final.update((faults.get("patch") or {}).get("fields") or {})
            yield final

        return gen

    def _control(self, h: _Handler, method: str, path: str, body: dict[str, Any]) -> None:
        """Runtime fault control for a server running in another process."""
        if path == "/_requests" and method == "GET":
            reqs = [{"method": r.method, "path": r.path, "body": dict(r)} for r in self.bodies()]
            return h.send_json(200, reqs)
        if path == "/_fault" and method == "DELETE":
            self.clear_faults()
            return h.send_json(200, {"ok": True})
        if path == "/_fault" and method == "POST":
            setters = {
                "fail": self.fail_next, "delay": self.delay_next, "cut": self.cut_stream_next,
                "close": self.close_next, "fill": self.fill_context_next, "trickle": self.trickle_next,
                "patch": self.patch_reply_next,
            }
            kwargs = dict(body)
            setter = setters.get(str(kwargs.pop("kind", "")))
            if setter is None:
                return h.send_json(400, {"error": f"kind must be one of {sorted(setters)}"})
            try:
                setter(**kwargs)
            except (TypeError, ValueError) as exc:
                return h.send_json(400, {"error": str(exc)})
            return h.send_json(200, {"ok": True})
        return h.send_text(404, "404 page not found")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    app: OllamaServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, _HangUp, TimeoutError)):
            return  # clients hanging up and deliberate hang-ups are normal here
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # chunked NDJSON streams, keep-alive like Ollama
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms delayed-ACK stalls
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # tests read `requests`, not stderr

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        try:
            body = json.loads(raw) if raw.strip() else {}
            if not isinstance(body, dict):
                raise ValueError("request body must be a JSON object")
        except ValueError as exc:
            self.send_json(400, {"error": f"invalid request body: {exc}"})
            return
        try:
            self.server.app._handle(self, method, path, body)
        except _HangUp:
            self.close_connection = True

    # ---- writers

    def send_text(self, status: int, text: str) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8")

    def send_json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json; charset=utf-8")

    def _send(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_trickle(self, objects: Iterator[dict[str, Any]], trickle: dict[str, Any], stopping: threading.Event,
                     piece_of: Callable[[str], dict[str, Any]]) -> None:
        """A stream that never stalls long enough for a read timeout: one line every `interval`."""
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        interval = float(trickle["interval"])
        source: Iterable[dict[str, Any]] = (piece_of("tick ") for _ in iter(int, 1)) if trickle["forever"] else objects
        for obj in source:
            if stopping.wait(interval):
                raise _HangUp
            self._chunk(json.dumps(obj).encode() + b"\n")  # a client that gave up ends this with a broken pipe
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def send_single(self, objects: Iterator[dict[str, Any]], is_chat: bool, cut: dict[str, Any] | None,
                    trickle: dict[str, Any] | None = None, stopping: threading.Event | None = None) -> None:
        """stream=false: accumulate the pieces into the done object, like Ollama."""
        key = "message" if is_chat else "response"
        text, final = [], {}
        for obj in objects:
            if "error" in obj:
                return self.send_json(500, obj)
            text.append(obj["message"]["content"] if is_chat else obj["response"])
            final = obj
        if is_chat:
            final[key] = {"role": "assistant", "content": "".join(text)}
        else:
            final[key] = "".join(text)
        data = json.dumps(final).encode()
        if trickle is not None:  # the whole body promised, sent a byte at a time
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            for i in range(len(data)):
                if stopping is not None and stopping.wait(float(trickle["interval"])):
                    raise _HangUp
                self.wfile.write(data[i:i + 1])
                self.wfile.flush()
            return None
        if cut is None:
            return self._send(200, data, "application/json; charset=utf-8")
        # Promise the whole body, deliver half, hang up.
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        raise _HangUp

    def send_stream(self, objects: Iterator[dict[str, Any]], cut: dict[str, Any] | None) -> None:
        """NDJSON over chunked encoding, one object per token, flushed as produced."""
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i, obj in enumerate(objects):
            line = json.dumps(obj).encode() + b"\n"
            if cut is not None and (i == cut["after"] or (cut["after"] is None and obj.get("done"))):
                if cut["partial"]:
                    self._chunk(line[: len(line) // 2])
                if cut["clean_eof"]:
                    self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
                raise _HangUp
            self._chunk(line)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


# --------------------------------------------------------------------------- __main__


def _parse_engine_args(pairs: Sequence[str]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--engine-arg expects KEY=VALUE, got {pair!r}")
        try:
            kwargs[key] = json.loads(value)
        except ValueError:
            kwargs[key] = value
    return kwargs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.ollama_server", description="Serve an engine over the Ollama HTTP API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on stdout)")
    parser.add_argument("--engine", default="scripted", help="scripted | llama | package.module:factory")
    parser.add_argument("--model", help="model name to serve (default: the engine's)")
    parser.add_argument("--engine-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="keyword argument for the engine factory; VALUE is JSON if it parses")
    args = parser.parse_args(argv)

    kwargs = _parse_engine_args(args.engine_arg)
    if args.model:
        kwargs["name"] = args.model
    engine = make_engine(args.engine, **kwargs)
    server = OllamaServer(engine, host=args.host, port=args.port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    print(f"ollama_server: {_full_name(engine.name)} listening on {server.url}", flush=True)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        server.stop()
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
