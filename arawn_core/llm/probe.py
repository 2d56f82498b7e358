"""A light check of an Ollama server: its version and model list over plain HTTP.

Why not the `ollama` client: importing it (pydantic models, httpx, httpcore,
an SSL context built at import) takes a few hundred ms, and at start-up that
happens in a thread that shares the interpreter lock with the screen just as
the user starts typing. The status line and `doctor` only need two small GET
requests (`/api/version`, `/api/tags`; and `/api/show` for the model's context),
so this module makes them with asyncio streams and nothing else; the full client is imported at the first chat or
compression (`arawn_core.llm.lazy`).

The same rules as the real backend (`ollama_backend`): only the configured
host is contacted (no proxy from the environment: none is read here), no
redirect is followed (a 3xx is reported, not obeyed), and the whole probe is
bounded in time.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from arawn_core.llm.server_context import ServerContext

#: The whole probe (connect, both requests, both replies) ends within this many seconds.
PROBE_TIMEOUT_S = 3.0
#: Replies bigger than this are not an Ollama version or model list (a server with a few
#: hundred models answers /api/tags in well under 1 MB).
MAX_REPLY_BYTES = 4 * 1024 * 1024
DEFAULT_PORT = 11434


@dataclass
class ProbeResult:
    """What the probe learned; `detail` says why when the server is not usable."""

    url: str
    reachable: bool
    version: str = ""
    models: list[str] = field(default_factory=list)
    detail: str = ""


class ProbeError(Exception):
    """One request of the probe failed; the message is what the user reads."""


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    base_path: str

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.base_path}"

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_host(host: str) -> _Target:
    """`[llm] host` read as the ollama client reads it (so the probe asks the server the chats
    will go to): without a scheme, http on port 11434; with one, its usual port unless given."""
    text = host.strip()
    default_port = DEFAULT_PORT
    if "://" not in text:
        text = f"http://{text}"
    else:
        default_port = 443 if text.lower().startswith("https://") else 80
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ProbeError(f"unsupported scheme {parts.scheme!r} in host {host!r} (use http or https)")
    try:
        port = parts.port or default_port
    except ValueError:
        raise ProbeError(f"bad port in host {host!r}") from None
    return _Target(scheme, parts.hostname or "127.0.0.1", port, parts.path.rstrip("/"))


async def probe(host: str, timeout_s: float = PROBE_TIMEOUT_S) -> ProbeResult:
    """Version and models of the Ollama server at `host`; never raises for a server that is down."""
    try:
        target = parse_host(host)
    except ProbeError as exc:
        return ProbeResult(host, False, detail=str(exc))
    # both requests at once, each on its own connection; the first failure ends the probe
    tasks = [asyncio.ensure_future(_get_json(target, path)) for path in ("/api/version", "/api/tags")]
    try:
        version_doc, tags_doc = await asyncio.wait_for(asyncio.gather(*tasks), timeout_s)
    except asyncio.TimeoutError:
        return ProbeResult(target.url, False, detail=f"no answer from {target.url} within {timeout_s:g}s")
    except ProbeError as exc:
        return ProbeResult(target.url, False, detail=str(exc))
    finally:
        for task in tasks:
            task.cancel()  # the other request, when one failed: no connection is left behind
    version = version_doc.get("version") if isinstance(version_doc, dict) else None
    listing = tags_doc.get("models") if isinstance(tags_doc, dict) else None
    if not isinstance(version, str) or not version or not isinstance(listing, list):
        return ProbeResult(target.url, False, detail=f"{target.url} did not answer like Ollama")
    models = []
    for entry in listing:
        if isinstance(entry, dict):
            name = entry.get("model") or entry.get("name")
            if isinstance(name, str) and name:
                models.append(name)
    return ProbeResult(target.url, True, version=version, models=models)


async def show_context(host: str, model: str, timeout_s: float = PROBE_TIMEOUT_S) -> ServerContext | None:
    """The context the server runs `model` with, from `POST /api/show` (as the full backend reads it);
    None when the server does not say, does not know the model, or cannot be asked."""
    from arawn_core.llm.server_context import from_ollama_show

    try:
        target = parse_host(host)
        shown = await asyncio.wait_for(_get_json(target, "/api/show", {"model": model}), timeout_s)
    except (ProbeError, asyncio.TimeoutError):
        return None
    if not isinstance(shown, dict):
        return None
    info = shown.get("model_info")
    params = shown.get("parameters")
    return from_ollama_show(info if isinstance(info, dict) else None, params if isinstance(params, str) else None)


async def _get_json(target: _Target, path: str, body: object = None) -> object:
    """GET `path` (POST with a JSON `body`) on its own connection (Connection: close) and parse the
    JSON reply."""
    ssl_context = None
    if target.scheme == "https":
        import ssl

        ssl_context = ssl.create_default_context()
    where = f"{target.url}{path}"
    try:
        reader, writer = await asyncio.open_connection(
            target.host, target.port, ssl=ssl_context, server_hostname=target.host if ssl_context else None)
    except ConnectionRefusedError:
        raise ProbeError(f"cannot connect to {target.url}: connection refused") from None
    except (OSError, ValueError) as exc:
        raise ProbeError(f"cannot connect to {target.url}: {exc}") from None
    try:
        payload = b"" if body is None else json.dumps(body).encode("utf-8")
        head = (f"{'GET' if body is None else 'POST'} {target.base_path}{path} HTTP/1.1\r\n"
                f"Host: {target.host_header}\r\nAccept: application/json\r\nUser-Agent: arawn-probe\r\n"
                + (f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n" if body is not None else "")
                + "Connection: close\r\n\r\n")
        writer.write(head.encode("ascii") + payload)
        await writer.drain()
        status, headers = await _read_head(reader, where)
        if 300 <= status < 400:
            raise ProbeError(f"HTTP {status} from {where}: redirects are not followed (set [llm] host to the"
                             " server's own address)")
        if status != 200:
            raise ProbeError(f"HTTP {status} from {where}")
        body = await _read_body(reader, headers, where)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        raise ProbeError(f"connection to {target.url} broke: {exc or type(exc).__name__}") from None
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ProbeError(f"{where} did not answer with JSON") from None


async def _read_head(reader: asyncio.StreamReader, where: str) -> tuple[int, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")  # bounded by the reader's limit (64 KiB)
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/") or not status_line[1].isdigit():
        raise ProbeError(f"{where} did not answer with HTTP")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(status_line[1]), headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str], where: str) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ProbeError(f"{where} sent a malformed chunked reply") from None
            if size == 0:
                return bytes(body)
            if len(body) + size > MAX_REPLY_BYTES:
                raise ProbeError(f"{where} sent more than {MAX_REPLY_BYTES} bytes")
            body += await reader.readexactly(size)
            await reader.readexactly(2)  # the chunk's CRLF
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit() or int(length) > MAX_REPLY_BYTES:
            raise ProbeError(f"{where} announced a reply of {length!r} bytes")
        return await reader.readexactly(int(length))
    body = await reader.read(MAX_REPLY_BYTES + 1)  # Connection: close: the body ends at EOF
    while len(body) <= MAX_REPLY_BYTES and (more := await reader.read(MAX_REPLY_BYTES + 1 - len(body))):
        body += more
    if len(body) > MAX_REPLY_BYTES:
        raise ProbeError(f"{where} sent more than {MAX_REPLY_BYTES} bytes")
    return body
