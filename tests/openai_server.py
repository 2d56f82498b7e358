"""A real HTTP server speaking the OpenAI chat-completions protocol, for tests and benchmarks.

Why: arawn's OpenAI backend talks through the real `openai` client over real
HTTP. This server (stdlib only, like `tests/ollama_server.py`, whose engines
it reuses) answers the way the servers people run do, so each server kind's
quirks can be tested without installing it:

    GET  /v1/models              {"object": "list", "data": [{"id": ...}]}; with
                                 flavor "vllm" each entry has "max_model_len"
    GET  /props                  flavor "llama-server" only (llama.cpp):
                                 {"default_generation_settings": {"n_ctx": ...}}
    POST /v1/chat/completions    one JSON object, or (stream true) server-sent
                                 events `data: {chunk}` ... `data: [DONE]`; with
                                 stream_options.include_usage a last chunk with
                                 `choices: []` and `usage`

Flavors (what differs between the real servers, from their docs and source):

* ``"llama-cpp-python"``: `python -m llama_cpp.server`. No context size in
  /v1/models, no /props. A prompt of n_ctx tokens or more gets 400
  {"error": {"message": "This model's maximum context length is N tokens.
  However, you requested M tokens (P in the messages, C in the completion).
  ...", "code": "context_length_exceeded"}}; a shorter prompt whose
  max_tokens does not fit is served with max_tokens cut to what is left.
  An unknown model name is served by the default model.
* ``"vllm"``: max_model_len in /v1/models; 400 with the same wording when
  prompt + max_tokens exceeds it; an unknown model gets 404 "The model `x`
  does not exist.".
* ``"llama-server"``: /props with n_ctx; an over-long prompt gets 400
  {"error": {"type": "exceed_context_size_error", "n_ctx": N, "n_prompt_tokens": P}}.

Faults (each for the next `n` chat requests; None: until `clear_faults`):
``fail_next(n, status, message)``, ``delay_next(seconds, n)``,
``close_next(n)`` (hang up without answering). Every request is recorded
in `requests` (`.method`, `.path`, `.headers`, the JSON body).

`slots` bounds the chat requests served at once (like a server running one
sequence at a time); `latency_s` and `token_latency_s` add realistic time
before the first token and between tokens.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable, Iterator

try:
    from tests.ollama_server import Engine, ScriptedEngine, free_port
except ModuleNotFoundError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from ollama_server import Engine, ScriptedEngine, free_port  # type: ignore[no-redef]

__all__ = ["Gauge", "OpenAIServer", "ScriptedEngine", "free_port", "context_message"]

FLAVORS = ("llama-cpp-python", "vllm", "llama-server")
CHAT_PATH = "/v1/chat/completions"


def context_message(n_ctx: int, prompt: int, completion: int) -> str:
    """The wording llama-cpp-python's server (and vLLM) use for an over-long request."""
    return (f"This model's maximum context length is {n_ctx} tokens. However, you requested "
            f"{prompt + completion} tokens ({prompt} in the messages, {completion} in the completion). "
            "Please reduce the length of the messages or completion.")


class Recorded(dict):
    def __init__(self, method: str, path: str, headers: dict[str, str], body: dict[str, Any]) -> None:
        super().__init__(body)
        self.method = method
        self.path = path
        self.headers = headers


@dataclass
class _Fault:
    kind: str
    remaining: int | None
    params: dict[str, Any] = field(default_factory=dict)


class _HangUp(Exception):
    pass


class Gauge:
    """Requests in flight across several servers (a pool's hosts), and the most at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def __enter__(self) -> Gauge:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.now -= 1


class OpenAIServer:
    """An OpenAI-protocol server on a background thread; see the module docstring."""

    def __init__(self, *engines: Engine, flavor: str = "llama-cpp-python", host: str = "127.0.0.1",
                 port: int = 0, slots: int = 0, latency_s: float = 0.0, token_latency_s: float = 0.0,
                 gauge: Gauge | None = None) -> None:
        if flavor not in FLAVORS:
            raise ValueError(f"flavor must be one of {FLAVORS}")
        self.engines: list[Engine] = list(engines) or [ScriptedEngine()]
        self.flavor = flavor
        self.latency_s = latency_s
        self.gauge = gauge
        self.token_latency_s = token_latency_s
        self.requests: list[Recorded] = []
        self.served = 0
        self.max_in_flight = 0
        self._in_flight = 0
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(slots) if slots > 0 else None
        self._conns: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._httpd = _Server((host, port), _Handler)
        self._httpd.app = self
        self._thread: threading.Thread | None = None

    # ---- lifecycle
    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The base URL a client is configured with (including /v1)."""
        return self.root + "/v1"

    def start(self) -> OpenAIServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="openai-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and hang up on open keep-alive connections (a stopped host is really gone)."""
        self._stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- faults
    def fail_next(self, n: int | None = 1, status: int = 500, message: str = "internal server error",
                  code: str | None = None) -> None:
        self._add("fail", n, status=status, message=message, code=code)

    def delay_next(self, seconds: float, n: int | None = 1) -> None:
        self._add("delay", n, seconds=seconds)

    def close_next(self, n: int | None = 1) -> None:
        self._add("close", n)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _add(self, kind: str, n: int | None, **params: Any) -> None:
        with self._lock:
            self._faults.append(_Fault(kind, n, params))

    def _take(self) -> dict[str, dict[str, Any]]:
        taken: dict[str, dict[str, Any]] = {}
        with self._lock:
            for fault in list(self._faults):
                if fault.kind in taken:
                    continue
                taken[fault.kind] = fault.params
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
        return taken

    def bodies(self, path: str | None = CHAT_PATH) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def refusals(self) -> int:
        """Chat requests answered with a 400 about the context."""
        with self._lock:
            return sum(1 for r in self.requests if r.path == CHAT_PATH and getattr(r, "refused", False))

    # ---- handling
    def _engine(self, model: str) -> Engine | None:
        for e in self.engines:
            if e.name == model:
                return e
        return self.engines[0] if self.flavor == "llama-cpp-python" else None

    def handle(self, h: _Handler, method: str, path: str, body: dict[str, Any]) -> None:
        rec = Recorded(method, path, {k.lower(): v for k, v in h.headers.items()}, body)
        with self._lock:
            self.requests.append(rec)
        if (method, path) == ("GET", "/v1/models"):
            data = []
            for e in self.engines:
                entry: dict[str, Any] = {"id": e.name, "object": "model", "created": 0, "owned_by": "me"}
                if self.flavor == "vllm":
                    entry["max_model_len"] = e.context_length
                data.append(entry)
            return h.send_json(200, {"object": "list", "data": data})
        if (method, path) == ("GET", "/props") and self.flavor == "llama-server":
            return h.send_json(200, {"default_generation_settings": {"n_ctx": self.engines[0].context_length},
                                     "total_slots": 1})
        if (method, path) == ("POST", CHAT_PATH):
            return self._chat(h, rec, body)
        return h.send_json(404, {"error": {"message": f"not found: {path}", "code": 404}})

    def _chat(self, h: _Handler, rec: Recorded, body: dict[str, Any]) -> None:
        faults = self._take()
        if "delay" in faults:
            self._stopping.wait(float(faults["delay"]["seconds"]))
        if "close" in faults:
            raise _HangUp
        if "fail" in faults:
            f = faults["fail"]
            err = {"message": f["message"], "type": "server_error" if f["status"] >= 500 else "invalid_request_error",
                   "code": f["code"]}
            return h.send_json(int(f["status"]), {"error": err})
        model = str(body.get("model") or "")
        engine = self._engine(model)
        if engine is None:
            return h.send_json(404, {"error": {"message": f"The model `{model}` does not exist.",
                                               "type": "NotFoundError", "param": None, "code": 404}})
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        max_tokens = int(max_tokens) if max_tokens else 0
        n_ctx = engine.context_length
        if self._slots is not None:
            self._slots.acquire()
        try:
            with self._lock:
                self._in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self._in_flight)
            prompt = engine.render(list(body.get("messages") or []))
            refusal = self._refusal(len(prompt), max_tokens, n_ctx)
            if refusal is not None:
                rec.refused = True  # type: ignore[attr-defined]
                return h.send_json(400, refusal)
            if max_tokens <= 0 or len(prompt) + max_tokens > n_ctx:
                max_tokens = n_ctx - len(prompt)
            if self.latency_s:
                with self.gauge or contextlib.nullcontext():
                    self._stopping.wait(self.latency_s)
            pieces = engine.stream(prompt, n_ctx, max_tokens, body.get("temperature"))
            with self._lock:  # counted before the reply goes out: a client may check as soon as it has it
                self.served += 1
            if body.get("stream"):
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                h.send_sse(self._chunks(engine.name, pieces, max_tokens, len(prompt), include_usage))
            else:
                h.send_json(200, self._whole(engine.name, pieces, max_tokens, len(prompt)))
        finally:
            with self._lock:
                self._in_flight -= 1
            if self._slots is not None:
                self._slots.release()

    def _refusal(self, prompt: int, max_tokens: int, n_ctx: int) -> dict[str, Any] | None:
        if self.flavor == "llama-cpp-python" and prompt >= n_ctx:
            return {"error": {"message": context_message(n_ctx, prompt, max_tokens), "type": "invalid_request_error",
                              "param": "messages", "code": "context_length_exceeded"}}
        if self.flavor == "vllm" and prompt + max_tokens > n_ctx:
            return {"error": {"message": context_message(n_ctx, prompt, max_tokens), "type": "BadRequestError",
                              "param": None, "code": 400}}
        if self.flavor == "llama-server" and prompt >= n_ctx:
            return {"error": {"code": 400, "message": "the request exceeds the available context size, try "
                              "increasing it", "type": "exceed_context_size_error", "n_prompt_tokens": prompt,
                              "n_ctx": n_ctx}}
        return None

    def _tokens(self, pieces: Iterator[str], max_tokens: int) -> Iterator[tuple[str, str | None]]:
        count = 0
        for piece in pieces:
            if count and self.token_latency_s:
                time.sleep(self.token_latency_s)
            count += 1
            if max_tokens > 0 and count >= max_tokens:
                yield piece, "length"
                close = getattr(pieces, "close", None)
                if close:
                    close()
                return
            yield piece, None
        yield "", "stop"

    def _whole(self, model: str, pieces: Iterator[str], max_tokens: int, prompt: int) -> dict[str, Any]:
        text, reason, n = [], "stop", 0
        for piece, finish in self._tokens(pieces, max_tokens):
            if piece:
                n += 1
            text.append(piece)
            reason = finish or reason
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(text)},
                             "finish_reason": reason}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": n, "total_tokens": prompt + n}}

    def _chunks(self, model: str, pieces: Iterator[str], max_tokens: int, prompt: int,
                include_usage: bool) -> Iterator[dict[str, Any]]:
        cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        base = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        n = 0
        for piece, finish in self._tokens(pieces, max_tokens):
            if piece:
                n += 1
                yield {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            if finish:
                yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
        if include_usage:
            yield {**base, "choices": [],
                   "usage": {"prompt_tokens": prompt, "completion_tokens": n, "total_tokens": prompt + n}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    app: OpenAIServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, _HangUp, TimeoutError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def setup(self) -> None:
        super().setup()
        with self.server.app._lock:
            self.server.app._conns.add(self.connection)

    def finish(self) -> None:
        with self.server.app._lock:
            self.server.app._conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return self.send_json(400, {"error": {"message": "invalid JSON body"}})
        try:
            self.server.app.handle(self, method, self.path.split("?", 1)[0], body if isinstance(body, dict) else {})
        except _HangUp:
            self.close_connection = True

    def send_json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_sse(self, chunks: Iterable[dict[str, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in chunks:
            self._chunk(f"data: {json.dumps(chunk)}\n\n".encode())
        self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


