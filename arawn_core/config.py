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

# tomllib, platformdirs and difflib are imported where used: with no config file (or --data-dir
# given) a one-shot command never needs them, and each costs a noticeable part of its start-up.

APP_NAME = "arawn"
DEFAULT_HOST = "http://127.0.0.1:11434"
DEFAULT_OPENAI_HOST = "http://127.0.0.1:8000/v1"


from arawn_core.errors import ConfigError  # noqa: E402,F401  (defined with the other errors; re-exported)


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


@dataclass(frozen=True)
class WorkstreamSettings:
    data_dir: str = ""  # "" -> platformdirs user data dir
    session_timeout_minutes: float = 60.0
    end_sessions_on_quit: bool = True
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
    "context.recall_max_tokens": (0, 1_048_576),
}
_CHOICES: dict[str, tuple[str, ...]] = {"llm.backend": ("auto", "ollama", "openai", "embedded")}
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
    settings = _build(Settings, data, "", where)
    return replace(settings, source=where)


def default_config_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME)) / "arawn.toml"


def find_config(explicit: str | None = None) -> Path | None:
    """The lookup order from DESIGN: --config, $ARAWN_CONFIG, ./arawn.toml, user config dir."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found (given by --config)")
        return path
    env = os.environ.get("ARAWN_CONFIG")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found (given by $ARAWN_CONFIG)")
        return path
    for candidate in (Path.cwd() / "arawn.toml", default_config_path()):
        if candidate.is_file():
            return candidate
    return None


def load_settings(config: str | None = None, data_dir: str | None = None) -> Settings:
    path = find_config(config)
    if path is None:
        settings = Settings()
    else:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise ConfigError(f"{path}: line {line}: config is not valid UTF-8") from None
        settings = parse_settings(text, str(path))
    if data_dir:
        settings = settings.with_data_dir(data_dir)
    return settings
