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
