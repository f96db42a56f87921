"""The redaction corpora (tests/testdata/redaction/): every planted secret is redacted by the
scrubber alone, the benign corpus stays under 1% false positives, and the committed files are
exactly what the generator produces."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from agent_otel.sanitize import RedactionCounts, Scrubber

CORPUS = Path(__file__).resolve().parent.parent / "testdata" / "redaction"


def load(name: str) -> list[object]:
    items: list[object] = json.loads((CORPUS / name).read_text(encoding="utf-8"))["items"]
    return items


def test_committed_corpus_matches_its_generator() -> None:
    result = subprocess.run([sys.executable, str(CORPUS / "generate.py"), "--check"], check=False)
    assert result.returncode == 0, "run .venv/bin/python tests/testdata/redaction/generate.py"


def test_corpus_is_large_and_varied() -> None:
    items = load("secrets.json")
    kinds = Counter(item["kind"] for item in items)  # type: ignore[index]
    assert len(items) >= 500 and len(kinds) >= 10
    for kind in ("openai_key", "anthropic_key", "aws_access_key", "github_token", "google_api_key", "jwt"):
        assert kinds[kind] >= 20
    for kind in ("bearer_header", "basic_auth_header", "url_password", "email", "phone", "card_number", "ipv4", "ipv6"):
        assert kinds[kind] >= 20


def test_every_planted_secret_is_redacted() -> None:
    scrubber = Scrubber()
    missed = []
    for item in load("secrets.json"):
        out = scrubber.scrub(item["text"], RedactionCounts()).lower()  # type: ignore[index]
        leaked = [n for n in item["needles"] if n.lower() in out]  # type: ignore[index]
        if leaked:
            missed.append((item["id"], leaked))  # type: ignore[index]
    assert missed == []


def test_benign_false_positive_rate_is_under_one_percent() -> None:
    scrubber = Scrubber()
    benign = [str(b) for b in load("benign.json")]
    altered = [b for b in benign if scrubber.scrub(b, RedactionCounts()) != b]
    assert len(benign) >= 300
    assert len(altered) / len(benign) < 0.01, altered


def test_the_screen_skips_only_texts_no_gate_would_open() -> None:
    """The screen (hints and prechecks scanned in C) only short-cuts the gates: over the whole
    corpus, and cut-outs of it (ids, fragments), results and counts equal the gates' alone."""
    screened, gated = Scrubber(), Scrubber()
    gated._screen = None
    texts = [str(item["text"]) for item in load("secrets.json")] + [str(b) for b in load("benign.json")]  # type: ignore[index]
    texts += [text[i : i + width] for text in texts for i in range(0, len(text), 7) for width in (8, 24, 48)]
    unchanged = 0
    for text in texts:
        screened_counts, gated_counts = RedactionCounts(), RedactionCounts()
        assert screened.scrub(text, screened_counts) == gated.scrub(text, gated_counts), text
        assert screened_counts == gated_counts, text
        unchanged += screened.scrub(text, RedactionCounts()) == text
    assert len(texts) > 10_000 and unchanged > len(texts) // 2  # mostly clean fragments: the screen's case


def test_an_extra_pattern_without_a_gate_turns_the_screen_off() -> None:
    scrubber = Scrubber(extra_patterns={"ticket": r"TICKET-\d{4}"})
    assert scrubber._screen is None
    assert scrubber.scrub("see TICKET-1234 now", RedactionCounts()) == "see [REDACTED] now"
