"""arawn.toml -> typed, validated settings.

Every error is a `ConfigError` whose message is one line naming the file, the
key (or line) and what was expected, so the CLI can print it and exit 2.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# tomllib, platformdirs and difflib are imported where used: with no config file (or --data-dir
# given) a one-shot command never needs them, and each costs a noticeable part of its start-up.

APP_NAME = "arawn"
DEFAULT_HOST = "http://127.0.0.1:11434"
DEFAULT_OPENAI_HOST = "http://127.0.0.1:8000/v1"


from arawn_core.errors import ConfigError  # noqa: E402,F401  (defined with the other errors; re-exported)


# ---- hosts -------------------------------------------------------------------
_HOST_EXAMPLE = "write it like http://127.0.0.1:11434"
_HOSTNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")


def host_problem(value: str) -> str | None:
    """Why `value` is not a usable LLM host URL (None when it is).

    Accepted: what the ollama client accepts, and only that: `host`, `host:port`,
    `http(s)://host[:port][/path]`, IPv6 in brackets. The client itself raises a bare
    ValueError (at import time, for $OLLAMA_HOST) on a bad port, so this runs first.
    """
    text = value.strip()
    if not text:
        return "it is empty"
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        return "it contains spaces or control characters"
    url = text if "://" in text else f"http://{text}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # "Port out of range 0-65535", "Invalid IPv6 URL", a port that is not a number
        return str(exc) or "it is not a URL"
    if parts.scheme not in ("http", "https"):
        return f"the scheme {parts.scheme!r} is not http or https"
    if not parts.hostname:
        return "it has no host name"
    if port == 0:
        return "port 0 is not a port a server listens on"
    if parts.query or parts.fragment or "?" in url or "#" in url:
        return "a host URL has no ?query or #fragment"
    bracketed = parts.netloc.rsplit("@", 1)[-1].startswith("[")
    return _address_problem(parts.hostname, bracketed)


def _address_problem(name: str, bracketed: bool) -> str | None:
    """What the HTTP client would refuse later (with its own exception, as a traceback or a bug
    line at the first request): a bad IPv6 literal, a dotted number that is no IPv4 address, a
    label DNS cannot carry (over 63 characters, or a name over 253)."""
    import ipaddress

    if bracketed:
        try:
            ipaddress.IPv6Address(name.split("%", 1)[0])
        except ValueError:
            return f"{_shown(name)[:80]!r} is not an IPv6 address"
        return None
    if not set(name) <= _HOSTNAME_CHARS:
        return f"{_shown(name)[:80]!r} is not a host name"
    labels = name.rstrip(".").split(".")
    if all(label.isdigit() for label in labels):
        try:
            ipaddress.IPv4Address(name.rstrip("."))
        except ValueError:
            return f"{name[:80]!r} is not an IPv4 address"
        return None
    if len(name) > 253 or any(not label or len(label) > 63 for label in labels):
        return f"{name[:80]!r} is not a host name (a DNS name has labels of 1 to 63 characters, 253 in all)"
    return None


def validate_host(value: str, where: str) -> str:
    """`value` unchanged if it is a usable host URL, else ConfigError naming `where` (file and key, or
    the variable) and what to write. Every configured host goes through here."""
    problem = host_problem(value)
    if problem is not None:
        raise ConfigError(f"{where}: {_shown(value)!r} is not a valid host ({problem}); {_HOST_EXAMPLE}")
    return value


@dataclass(frozen=True)
class LLMSettings:
    backend: str = "auto"  # auto | ollama | openai | embedded
    host: str = ""  # "" -> $OLLAMA_HOST, else DEFAULT_HOST (openai: DEFAULT_OPENAI_HOST)
    model: str = "llama3.2"
    model_path: str = ""  # embedded GGUF; "" -> the gemma3-270m package model
    num_ctx: int = 8192  # 0 -> the server's
    request_timeout_s: float = 300.0
    max_reply_tokens: int = 1024
    api_key: str = ""  # openai: "" -> $OPENAI_API_KEY, else none
    hosts: list[str] = field(default_factory=list)  # more servers of the same backend serving the same model
    host_slots: int = 1  # requests each host serves at once
    stop: list[str] = field(default_factory=list)  # openai: stop sequences sent with every request

    @property
    def resolved_host(self) -> str:
        if self.backend == "openai":
            return self.host or DEFAULT_OPENAI_HOST
        return self.host or os.environ.get("OLLAMA_HOST", "") or DEFAULT_HOST

    @property
    def all_hosts(self) -> list[str]:
        """The pool: `host` (when set, or when there is no `hosts`) then each of `hosts`, without repeats."""
        first = [self.resolved_host] if self.host or not self.hosts else []
        return list(dict.fromkeys(first + [h.strip() for h in self.hosts if h.strip()]))


@dataclass(frozen=True)
class CompressionSettings:
    enabled: bool = True
    model: str = ""  # "" -> [llm].model
    max_summary_tokens: int = 1024
    token_threshold_chars: int = 32000
    min_messages: int = 4
    verbatim_max_chars: int = 2000
    max_concurrency: int = 2  # LLM calls in flight for compression, across all jobs
    max_jobs: int = 2  # compression jobs running at once (the scheduler)
    max_attempts: int = 5
    retry_base_s: float = 2.0
    retry_max_s: float = 300.0
    fan_in: int = 4
    safety_margin_tokens: int = 256
    audit: str = "repair"  # repair | report | off: check each summary's key items (arawn_core.memory.audit)
    key_items_share: float = 0.25  # of max_summary_tokens: bound of the verbatim "Key items" section
    prompt_style: str = "auto"  # auto | chat | completion (a base model); auto: completion for the packaged model


@dataclass(frozen=True)
class WorkstreamSettings:
    data_dir: str = ""  # "" -> platformdirs user data dir
    session_timeout_minutes: float = 60.0
    end_sessions_on_quit: bool = True
    pin_budget_tokens: int = 1024  # room for pinned notes in every chat context
    compression: CompressionSettings = field(default_factory=CompressionSettings)


@dataclass(frozen=True)
class ContextSettings:
    """What a chat turn's context holds beyond the summaries and the recent turns."""

    recall: bool = True  # add the earlier messages the new user message is about (arawn_core.recall)
    recall_max_tokens: int = 1024  # the most the recalled block may cost


@dataclass(frozen=True)
class UISettings:
    theme: str = "textual-dark"
    show_summary_panel: bool = True


@dataclass(frozen=True)
class Settings:
    llm: LLMSettings = field(default_factory=LLMSettings)
    workstream: WorkstreamSettings = field(default_factory=WorkstreamSettings)
    ui: UISettings = field(default_factory=UISettings)
    context: ContextSettings = field(default_factory=ContextSettings)
    source: str | None = None  # the file these came from, if any

    @property
    def data_dir(self) -> Path:
        if self.workstream.data_dir:
            return Path(self.workstream.data_dir).expanduser()
        import platformdirs

        return Path(platformdirs.user_data_dir(APP_NAME))

    @property
    def compression_model(self) -> str:
        return self.workstream.compression.model or self.llm.model

    def with_data_dir(self, data_dir: str | Path) -> Settings:
        return replace(self, workstream=replace(self.workstream, data_dir=str(data_dir)))


# Validation rules beyond the type: (minimum, maximum) for numbers, choices for strings.
_RANGES: dict[str, tuple[float, float]] = {
    "llm.num_ctx": (256, 1_048_576),
    "llm.request_timeout_s": (0.1, 86_400),
    "llm.max_reply_tokens": (1, 1_048_576),
    "llm.host_slots": (1, 256),
    "workstream.session_timeout_minutes": (0, 525_600),
    "workstream.pin_budget_tokens": (0, 1_048_576),
    "workstream.compression.max_summary_tokens": (16, 1_048_576),
    "workstream.compression.token_threshold_chars": (1000, 100_000_000),
    "workstream.compression.min_messages": (0, 1_000_000),
    "workstream.compression.verbatim_max_chars": (0, 100_000_000),
    "workstream.compression.max_concurrency": (1, 64),
    "workstream.compression.max_jobs": (1, 64),
    "workstream.compression.max_attempts": (1, 100),
    "workstream.compression.retry_base_s": (0, 3600),
    "workstream.compression.retry_max_s": (0, 86_400),
    "workstream.compression.fan_in": (2, 64),
    "workstream.compression.safety_margin_tokens": (0, 100_000),
    "workstream.compression.key_items_share": (0, 0.9),
    "context.recall_max_tokens": (0, 1_048_576),
}
_CHOICES: dict[str, tuple[str, ...]] = {"llm.backend": ("auto", "ollama", "openai", "embedded"),
                                        "workstream.compression.audit": ("repair", "report", "off"),
                                        "workstream.compression.prompt_style": ("auto", "chat", "completion")}
#: Keys where 0 is allowed outside their range, with a meaning of its own (num_ctx 0: the server's).
_ZERO_ALLOWED = frozenset({"llm.num_ctx"})
#: List keys and the type of their items.
_LIST_ITEMS: dict[str, type] = {"llm.hosts": str, "llm.stop": str}


def _type_name(t: Any) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string",
            list: "an array"}.get(t, str(t))


def _found(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", dict: "table", list: "array"}.get(
        type(value), type(value).__name__
    )
    text = repr(value) if not isinstance(value, (dict, list)) else kind
    return f"{kind} {text}" if not isinstance(value, (dict, list)) else kind


def _shown(key: str) -> str:
    """A key as the message shows it: a quoted TOML key may hold a newline or an escape sequence."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in key)


def _build(cls: type, data: dict[str, Any], prefix: str, where: str) -> Any:
    known = {f.name: f for f in fields(cls) if f.name != "source"}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{_shown(key)}"
        if key not in known:
            import difflib

            near = difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean {prefix}{near[0]!s}?)" if near else ""
            what = "section" if isinstance(value, dict) else "key"
            raise ConfigError(f"{where}: unknown {what} [{dotted}]{hint}" if what == "section"
                              else f"{where}: unknown key {dotted}{hint}")
        f = known[key]
        default = f.default if f.default is not field().default else f.default_factory()  # type: ignore[misc]
        if hasattr(default, "__dataclass_fields__"):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: [{dotted}] must be a table, found {_found(value)}")
            kwargs[key] = _build(type(default), value, dotted + ".", where)
            continue
        want = type(default)
        ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise ConfigError(f"{where}: key {dotted} must be {_type_name(want)}, found {_found(value)}")
        if dotted in _LIST_ITEMS:
            for i, item in enumerate(value):
                if not isinstance(item, _LIST_ITEMS[dotted]) or not str(item) or \
                        (dotted == "llm.hosts" and not str(item).strip()):
                    raise ConfigError(f"{where}: key {dotted}[{i}] must be a non-empty string, found {_found(item)}")
        if dotted in _RANGES and not (dotted in _ZERO_ALLOWED and value == 0):
            lo, hi = _RANGES[dotted]
            if not lo <= value <= hi:
                raise ConfigError(f"{where}: key {dotted} must be between {lo:n} and {hi:n}, found {value!r}")
        if dotted in _CHOICES and value not in _CHOICES[dotted]:
            raise ConfigError(
                f"{where}: key {dotted} must be one of {', '.join(_CHOICES[dotted])}, found {value!r}"
            )
        kwargs[key] = value
    return cls(**kwargs)


def parse_settings(text: str, where: str = "<config>") -> Settings:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line N, column M)"
        raise ConfigError(f"{where}: invalid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses per nested array or inline table
        raise ConfigError(f"{where}: invalid TOML: arrays or inline tables nested too deeply") from None
    settings = _build(Settings, data, "", where)
    check_settings(settings, where)
    return replace(settings, source=where)


#: Tokens the chat keeps free besides the reply (ArawnCore.build_context) and the least input worth a call.
CHAT_MARGIN_TOKENS = 64
MIN_INPUT_TOKENS = 32


def check_settings(settings: Settings, where: str) -> None:
    """What each key passes alone but breaks the first chat or job: checked at load, one line each."""
    llm = settings.llm
    if llm.host:
        validate_host(llm.host, f"{where}: key llm.host")
    for i, host in enumerate(llm.hosts):
        validate_host(host, f"{where}: key llm.hosts[{i}]")
    if not llm.model.strip():
        raise ConfigError(f"{where}: key llm.model is empty; name a model, e.g. model = \"llama3.2\"")
    if _shown(llm.model) != llm.model:
        raise ConfigError(f"{where}: key llm.model {_shown(llm.model)!r} contains control characters")
    room = llm.num_ctx - llm.max_reply_tokens - CHAT_MARGIN_TOKENS
    if llm.num_ctx and room < MIN_INPUT_TOKENS:  # num_ctx 0: the server's, known only at the first call
        raise ConfigError(
            f"{where}: key llm.num_ctx = {llm.num_ctx} leaves {max(room, 0)} tokens for the conversation after"
            f" llm.max_reply_tokens = {llm.max_reply_tokens}: raise llm.num_ctx to at least"
            f" {llm.max_reply_tokens + CHAT_MARGIN_TOKENS + MIN_INPUT_TOKENS} or lower llm.max_reply_tokens")
    comp = settings.workstream.compression
    if comp.model and not comp.model.strip():
        raise ConfigError(f"{where}: key workstream.compression.model is blank; remove it to use llm.model")


def _check_data_dir(settings: Settings, where: str) -> None:
    """A data dir whose `~user` names nobody (or `~` with no home) fails at its first use with
    a RuntimeError from pathlib: refused here, naming where it was given."""
    if not settings.workstream.data_dir:
        return
    try:
        settings.data_dir  # noqa: B018 - expands ~
    except RuntimeError as exc:
        raise ConfigError(f"{where}: {_shown(settings.workstream.data_dir)!r} cannot be expanded ({exc});"
                          " give the full path") from None


def check_environment(settings: Settings) -> None:
    """$OLLAMA_HOST is read only when [llm] host is empty (and the backend is not openai); then it
    must be a host too."""
    if settings.llm.host or settings.llm.backend == "openai":
        return
    value = os.environ.get("OLLAMA_HOST", "")
    if value:
        problem = host_problem(value)
        if problem is not None:
            raise ConfigError(f"$OLLAMA_HOST: {_shown(value)!r} is not a valid host ({problem}); {_HOST_EXAMPLE},"
                              " or unset it")


def default_config_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME)) / "arawn.toml"


def find_config(explicit: str | None = None) -> Path | None:
    """The lookup order from DESIGN: --config, $ARAWN_CONFIG, ./arawn.toml, user config dir."""
    if explicit is not None:
        if not explicit:
            raise ConfigError("--config is empty: name a config file, or leave it out")
        return _given_config(Path(explicit).expanduser(), "--config")
    env = os.environ.get("ARAWN_CONFIG")
    if env:
        return _given_config(Path(env).expanduser(), "$ARAWN_CONFIG")
    for candidate in (Path.cwd() / "arawn.toml", default_config_path()):
        if candidate.is_file():
            return candidate
    return None


def _given_config(path: Path, given_by: str) -> Path:
    import errno
    import stat

    try:
        mode = path.stat().st_mode  # any error the file system gives (too long, a link loop) is the line
    except OSError as exc:
        what = "config file not found" if exc.errno in (errno.ENOENT, errno.ENOTDIR) else \
            f"cannot read config: {exc.strerror}"
        raise ConfigError(f"{path}: {what} (given by {given_by})") from None
    except ValueError:  # a NUL in the path
        raise ConfigError(f"{_shown(str(path))!r}: not a usable path (given by {given_by})") from None
    if stat.S_ISDIR(mode):
        raise ConfigError(f"{path}: is a directory, not a config file (given by {given_by}); name the arawn.toml in it")
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{path}: not a regular file (given by {given_by})")
    return path


def load_settings(config: str | None = None, data_dir: str | None = None) -> Settings:
    path = find_config(config)
    if path is None:
        settings = Settings()
    else:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
        if raw.startswith(b"\xef\xbb\xbf"):
            raise ConfigError(f"{path}: line 1: the file starts with a UTF-8 byte order mark (BOM), which TOML"
                              " does not allow; save it as UTF-8 without BOM")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise ConfigError(f"{path}: line {line}: config is not valid UTF-8") from None
        settings = parse_settings(text, str(path))
    if data_dir is not None:
        if not data_dir.strip():  # `--data-dir "$DIR"` with DIR unset must not mean the default data dir
            raise ConfigError("--data-dir is empty: name the data directory, or leave it out")
        settings = settings.with_data_dir(data_dir)
    _check_data_dir(settings, "--data-dir" if data_dir is not None else f"{settings.source}: key workstream.data_dir")
    check_environment(settings)
    return settings
