"""The collector's sanitizing stage: one object holding every rule, applied by the normalizer.

Fail-closed by construction: the normalizer reads a fixed set of keys (``conventions.READ_KEYS``)
and every free-text value it keeps passes through ``text`` or ``ident``; content keys are only
measured; everything else is never stored.
"""

from __future__ import annotations

import hashlib
import re

from agent_otel.sanitize import ContentKeys, RedactionCounts, Scrubber, anonymize_ip, pseudonymize
from agent_otel.settings import SanitizerSettings

IDENT_MAX = 256
# Names and ids repeat across spans (agents, tools, models, users, sessions): ``ident`` and
# ``user`` remember their result per value, the redactions counted with it, so a repeated value
# costs one dict lookup (issue 7). Bounded like the scrubber's own memo: cleared when full, and
# values longer than this are not remembered. Raw values stay in this process's memory only.
_MEMO_SIZE = 50_000
_MEMO_MAX_LENGTH = 512
_Memo = dict[str, tuple[str, tuple[str, ...]]]
# The id the plugin derives for an execution: trace id and span id in hex. Hex holds no secret,
# but its digit runs can pass for a card number (a Luhn-valid run after a letter), and a mangled
# id would detach the feedback that names it from its execution.
_DERIVED_EXECUTION_ID = re.compile(r"[0-9a-f]{32}-[0-9a-f]{16}")
_ANONYMIZED_IP = re.compile(r"^(?:\d{1,3}\.){1,3}xxx(?:\.xxx)*$|^[0-9a-f:]+/\d{1,3}$")


def storable(value: str) -> str:
    """Text every database accepts: NUL characters dropped (PostgreSQL text cannot hold them)
    and lone surrogates (possible from OTLP/JSON escapes) replaced."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "replace").decode("utf-8")
    return value


class SpanSanitizer:
    def __init__(self, settings: SanitizerSettings) -> None:
        self.settings = settings
        self.scrubber = Scrubber(
            disabled=settings.disabled_rules,
            extra_patterns=settings.extra_patterns,
            ipv4_keep_octets=settings.ipv4_keep_octets,
            ipv6_keep_bits=settings.ipv6_keep_bits,
            scrub_file_paths=settings.scrub_file_paths,
            max_length=settings.max_text_length,
        )
        self.content_keys = ContentKeys(settings.extra_content_keys, settings.extra_content_key_prefixes)
        key = settings.user_id_hmac_key
        self._user_key = key.get_secret_value().encode() if key else None
        self._idents: _Memo = {}
        self._users: _Memo = {}

    def text(self, value: str, counts: RedactionCounts) -> str:
        """Free text (error messages, log bodies): scrubbed and cut to the configured length."""
        return self.scrubber.scrub(storable(value), counts)

    def ident(self, value: str, counts: RedactionCounts) -> str:
        """Names and ids (agent, tool, model, session): scrubbed and cut to 256 characters."""
        hit = self._idents.get(value)
        if hit is None:
            fired = RedactionCounts()
            hit = (self.scrubber.scrub(storable(value[:IDENT_MAX]), fired), tuple(fired.elements()))
            _remember(self._idents, value, hit)
        for name in hit[1]:
            counts[name] += 1
        return hit[0]

    def execution_id(self, value: str, counts: RedactionCounts) -> str:
        """An execution id: the plugin's derived form (``<trace id>-<span id>`` in hex) is kept as
        sent; any other is scrubbed like a name and cut to 200 characters."""
        if _DERIVED_EXECUTION_ID.fullmatch(value):
            return value
        return self.ident(value, counts)[:200]

    def user(self, value: str, counts: RedactionCounts) -> str:
        """A user id: pseudonymised with the configured key; otherwise stored as sent unless it
        holds personal data (an e-mail, a phone number...), which becomes a one-way hash."""
        hit = self._users.get(value)
        if hit is None:
            hit = self._user(value)
            _remember(self._users, value, hit)
        for name in hit[1]:
            counts[name] += 1
        return hit[0]

    def _user(self, value: str) -> tuple[str, tuple[str, ...]]:
        """``user``'s result and the redactions it counts."""
        if self._user_key is not None:
            return pseudonymize(value, self._user_key), ("user_id_pseudonymised",)
        value = storable(value)
        fired: RedactionCounts = RedactionCounts()
        cleaned = self.scrubber.scrub(value[:IDENT_MAX], fired)
        if not fired:
            return cleaned, ()
        return "pii_" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32], tuple(fired.elements())

    def ip(self, value: str, counts: RedactionCounts) -> str | None:
        """An anonymised client address; one anonymised already (by the plugin) is kept as is."""
        anonymized = anonymize_ip(value, self.settings.ipv4_keep_octets, self.settings.ipv6_keep_bits)
        if anonymized is not None:
            counts["ip_address"] += 1
            return anonymized
        return value if _ANONYMIZED_IP.match(value) else None


def _remember(memo: _Memo, value: str, result: tuple[str, tuple[str, ...]]) -> None:
    if len(value) <= _MEMO_MAX_LENGTH:
        if len(memo) >= _MEMO_SIZE:
            memo.clear()
        memo[value] = result
