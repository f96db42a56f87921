"""Scrubber throughput: how long the ingest hot path spends per stored string.

    .venv/bin/python bench/scrub.py [--rounds 5] [--json]

Workloads (each timed on a fresh ``Scrubber``, best of ``--rounds``):
- ``idents``: names and ids as spans repeat them (agent, tool, model, session...): mostly memo hits.
- ``clean_text``: unique benign sentences and error messages (no memo: every one is new).
- ``secret_text``: the redaction corpus (tests/testdata/redaction/secrets.json): every rule fires.
- ``long_text``: 2 KB free-text values (log bodies, status messages) with one secret in each.
- ``benign_corpus``: tests/testdata/redaction/benign.json (ids, hashes, timestamps, URLs...).
It also prints the corpus figures: recall on the secrets corpus and the benign false-positive rate.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from agent_otel.sanitize import RedactionCounts, Scrubber  # noqa: E402

CORPUS = ROOT / "tests" / "testdata" / "redaction"


def _load(name: str) -> list[object]:
    data: list[object] = json.loads((CORPUS / name).read_text(encoding="utf-8"))["items"]
    return data


def workloads(seed: int = 7) -> dict[str, list[str]]:
    rng = random.Random(seed)
    secrets = [str(item["text"]) for item in _load("secrets.json")]  # type: ignore[index]
    benign = [str(item) for item in _load("benign.json")]
    names = [f"agent-{i:02d}" for i in range(24)] + ["search_kb", "gpt-4o-mini", "openai", "chat", "execute_tool"]
    idents = [rng.choice(names) for _ in range(20_000)] + [f"session-{rng.randrange(500)}" for _ in range(5_000)]
    templates = [
        "upstream returned {n} after {m} ms; retrying request {n} of batch {m}",
        "Tool {t} failed: no results for query number {n}",
        "RateLimitError: Rate limit reached for {t} on tokens per min: Limit {n}, Used {m}",
        "Read timed out. (read timeout={n}) while calling {t}",
    ]
    clean = [
        rng.choice(templates).format(n=rng.randrange(10**6), m=rng.randrange(10**4), t=rng.choice(names))
        for _ in range(10_000)
    ]
    filler = " ".join(
        rng.choice(["the", "agent", "called", "tool", "with", "result", "and", "then"]) for _ in range(380)
    )
    long_text = [f"{filler[: rng.randrange(1500, 1900)]} {rng.choice(secrets)} end {i}" for i in range(1_000)]
    return {
        "idents": idents,
        "clean_text": clean,
        "secret_text": secrets * 4,
        "long_text": long_text,
        "benign_corpus": benign * 10,
    }


def time_workload(texts: list[str], rounds: int, make: Callable[[], Scrubber]) -> float:
    """Best nanoseconds per string over ``rounds`` runs, each on a fresh scrubber (cold memo)."""
    best = float("inf")
    for _ in range(rounds):
        scrubber = make()
        counts = RedactionCounts()
        scrub = scrubber.scrub
        started = time.perf_counter_ns()
        for text in texts:
            scrub(text, counts)
        best = min(best, (time.perf_counter_ns() - started) / len(texts))
    return best


def corpus_quality(scrubber: Scrubber) -> dict[str, float]:
    missed = 0
    items = _load("secrets.json")
    for item in items:
        out = scrubber.scrub(str(item["text"]), RedactionCounts()).lower()  # type: ignore[index]
        if any(str(n).lower() in out for n in item["needles"]):  # type: ignore[index]
            missed += 1
    benign = [str(b) for b in _load("benign.json")]
    altered = sum(1 for b in benign if scrubber.scrub(b, RedactionCounts()) != b)
    return {
        "secrets": len(items),
        "secrets_missed": missed,
        "benign": len(benign),
        "benign_altered": altered,
        "false_positive_rate": altered / len(benign),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, object] = {}
    for name, texts in workloads().items():
        results[name] = round(time_workload(texts, args.rounds, Scrubber), 1)
    results["quality"] = corpus_quality(Scrubber())
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{'workload':<16}{'ns/string':>12}")
    for name, value in results.items():
        if name != "quality":
            print(f"{name:<16}{value:>12,.0f}")
    quality = results["quality"]
    assert isinstance(quality, dict)
    print(
        f"secrets corpus: {quality['secrets'] - quality['secrets_missed']}/{quality['secrets']} redacted; "
        f"benign corpus: {quality['benign_altered']}/{quality['benign']} altered "
        f"({quality['false_positive_rate']:.2%} false positives)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
