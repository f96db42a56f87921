"""Cost per LLM step from a price table (pure lookups on an in-memory index).

A model name matches a priced model exactly, or by the longest priced name it starts with
(``gpt-4o-mini-2024-07-18`` is priced as ``gpt-4o-mini``). Names are first reduced to the
provider's own model id: a path prefix (``openai/gpt-4o``, ``models/gemini-2.5-pro``), a Bedrock
region and vendor prefix (``us.anthropic.claude-sonnet-4-20250514-v1:0``) and the dotted Claude
spelling of some gateways (``claude-3.5-sonnet``) are removed. The provider breaks ties when one
model name is priced by several providers. A step with tokens and no known price gets no cost,
is marked unpriced and counted: it is never silently priced at zero.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from agent_otel.collector.pipeline.model import Category, NormalizedBatch

_CLASSES_WITH_COST = frozenset({Category.LLM, Category.EMBEDDING, Category.AGENT})
# Amazon Bedrock model ids: an optional cross-region prefix, then the model vendor.
_BEDROCK_PREFIX = re.compile(
    r"^(?:(?:us|eu|apac|ap|global|jp|au|ca|us-gov)\.)?"
    r"(?:anthropic|amazon|meta|mistral|cohere|ai21|deepseek|openai|qwen|writer|twelvelabs)\."
)


def model_id(name: str) -> str:
    """The provider's own model id inside a gateway's or cloud's name for it (lower case)."""
    bare = name.strip().lower().rsplit("/", 1)[-1]
    bare = _BEDROCK_PREFIX.sub("", bare)
    if bare.startswith("claude"):
        bare = bare.replace(".", "-")
    return bare


@dataclass(frozen=True, slots=True)
class Price:
    provider: str
    model: str
    effective_from: date
    input_per_million: float
    output_per_million: float
    cached_input_per_million: float | None = None
    source: str = "builtin"


class PriceError(ValueError):
    pass


def _parse(entries: Any, source: str) -> list[Price]:
    if not isinstance(entries, dict) or not isinstance(entries.get("prices"), list):
        raise PriceError(f"price file {source}: expected a mapping with a 'prices' list")
    out = []
    for i, entry in enumerate(entries["prices"]):
        try:
            effective = entry["effective_from"]
            out.append(
                Price(
                    provider=str(entry["provider"]).lower(),
                    model=str(entry["model"]).lower(),
                    effective_from=effective if isinstance(effective, date) else date.fromisoformat(str(effective)),
                    input_per_million=float(entry["input"]),
                    output_per_million=float(entry["output"]),
                    cached_input_per_million=(
                        float(entry["cached_input"]) if entry.get("cached_input") is not None else None
                    ),
                    source=source,
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PriceError(f"price file {source}: entry {i} is invalid ({exc})") from None
    return out


def builtin_prices() -> list[Price]:
    text = (resources.files("agent_otel") / "data" / "model_prices.yaml").read_text(encoding="utf-8")
    return _parse(yaml.safe_load(text), "builtin")


def load_price_file(path: Path) -> list[Price]:
    try:
        return _parse(yaml.safe_load(path.read_text(encoding="utf-8")), str(path))
    except (OSError, yaml.YAMLError) as exc:
        raise PriceError(f"cannot read price file {path}: {exc}") from None


class PriceBook:
    """Prices by model name, each a timeline of effective dates."""

    def __init__(self, prices: Iterable[Price]) -> None:
        merged: dict[tuple[str, str, date], Price] = {}
        for price in prices:  # later entries (the user's file) override earlier ones
            merged[(price.provider, price.model, price.effective_from)] = price
        self.prices = sorted(merged.values(), key=lambda p: (p.model, p.provider, p.effective_from))
        self._by_model: dict[str, list[Price]] = {}
        for price in self.prices:
            self._by_model.setdefault(price.model, []).append(price)
        self._names = sorted(self._by_model, key=len, reverse=True)
        self._match_cache: dict[str, str | None] = {}
        # (provider, model, day) -> price: LLM spans repeat a few models, and looking one up
        # built three lists per span (issue 7); the book does not change once built
        self._price_cache: dict[tuple[str | None, str, date], Price | None] = {}

    def _match(self, model: str) -> str | None:
        key = model.lower()
        if key in self._match_cache:
            return self._match_cache[key]
        found: str | None = key if key in self._by_model else None
        if found is None:
            bare = model_id(key)
            found = next(
                (name for name in self._names if bare == name or bare.startswith((name + "-", name + ":"))), None
            )
        if len(self._match_cache) > 10_000:
            self._match_cache.clear()
        self._match_cache[key] = found
        return found

    def price_of(self, provider: str | None, model: str, day: date) -> Price | None:
        key = (provider, model, day)
        if key in self._price_cache:
            return self._price_cache[key]
        price = self._price_of(provider, model, day)
        if len(self._price_cache) > 10_000:
            self._price_cache.clear()
        self._price_cache[key] = price
        return price

    def _price_of(self, provider: str | None, model: str, day: date) -> Price | None:
        name = self._match(model)
        if name is None:
            return None
        candidates = self._by_model[name]
        if provider:
            same = [p for p in candidates if p.provider == provider.lower()]
            candidates = same or candidates
        dated = [p for p in candidates if p.effective_from <= day]
        if not dated:
            dated = candidates[:1]  # used before its first known date: the earliest price
        dates = [p.effective_from for p in dated]
        return dated[bisect.bisect_right(dates, day) - 1]

    def cost(self, provider: str | None, model: str | None, tokens_in: int, tokens_out: int, day: date) -> float | None:
        if model is None:
            return None
        price = self.price_of(provider, model, day)
        if price is None:
            return None
        return (tokens_in * price.input_per_million + tokens_out * price.output_per_million) / 1_000_000


class Pricer:
    """The pricing stage: sets ``cost_usd`` (or marks unpriced) on spans that carry tokens."""

    def __init__(self, book: PriceBook) -> None:
        self.book = book
        self.unpriced: dict[str, int] = {}

    def apply(self, batch: NormalizedBatch) -> None:
        from agent_otel.collector.pipeline.rows import ts

        for span in batch.spans:
            if span.category not in _CLASSES_WITH_COST or not (span.input_tokens or span.output_tokens):
                continue
            cost = self.book.cost(
                span.provider, span.model, span.input_tokens, span.output_tokens, ts(span.start_ns).date()
            )
            span.cost_usd = cost
            span.priced = cost is not None
            if cost is None:
                key = span.model or "(no model)"
                self.unpriced[key] = self.unpriced.get(key, 0) + 1
