"""Built-in scrubbing rules: secrets and personal data that must never be stored.

Each rule is a name, a regular expression and how a match is replaced. Rules are tried as
one alternation in a single pass over the text (see ``Scrubber``); their order matters where
patterns overlap, so the most specific come first (an Anthropic key is also ``sk-...``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

REDACTED: Final = "[REDACTED]"


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    pattern: str
    replacement: str = REDACTED
    # "validate": the match is replaced only if a check passes (Luhn, a real IP address)
    validate: str | None = None
    # The gate: the rule runs only on text containing one of these literals (lower-cased text when
    # hints_ci) AND matching ``precheck`` (run on the lower-cased text when precheck_ci); a rule
    # with neither always runs. A precheck must be a necessary condition of the pattern.
    hints: tuple[str, ...] = ()
    hints_ci: bool = False
    precheck: str | None = None
    precheck_ci: bool = False


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_H = r"[0-9A-Fa-f]{1,4}"
# seven or more digits, dots, spaces or dashes in a row: cards, phones, IPv4 addresses. One
# precheck string shared by three rules: the scrubber evaluates each distinct precheck once.
_DIGIT_RUN = r"\d[\d .()/-]{5,}\d"
# Branches start with their literal and check the boundary behind it with a lookbehind: Python's
# regex engine then rejects most positions on the first character instead of testing \b first.
_W = "A-Za-z0-9_"

BUILTIN_RULES: Final[tuple[Rule, ...]] = (
    Rule(
        "private_key",
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)",
        hints=("-----BEGIN",),
    ),
    Rule("agent_otel_key", rf"ao[ia]_(?<![{_W}]ao[ia]_)[0-9A-Za-z]{{43}}", hints=("aoi_", "aoa_")),
    Rule("jwt", rf"eyJ(?<![{_W}-]eyJ)[A-Za-z0-9_-]{{4,}}\.[A-Za-z0-9_-]{{4,}}\.[A-Za-z0-9_-]{{4,}}", hints=("eyJ",)),
    Rule(
        "url_credentials",
        r"(?<=://)[^\s/@:]{1,256}:[^\s/@]{1,256}@",
        replacement=REDACTED + "@",
        hints=("://",),
        precheck=r"://[^\s/@:]{1,256}:[^\s/@]{1,256}@",
    ),
    Rule(
        "auth_header",
        r"(?i:\b(?:bearer|basic|token|apikey|api-key|digest)[ \t]+)[A-Za-z0-9._~+/=:-]{8,}",
        validate="auth",
        hints=("bearer", "basic", "token", "apikey", "api-key", "digest"),
        hints_ci=True,
        precheck=r"(?:bearer|basic|token|apikey|api-key|digest)[ \t]+[a-z0-9._~+/=:-]{8}",
        precheck_ci=True,
    ),
    Rule("anthropic_key", rf"sk-ant-(?<![{_W}]sk-ant-)[A-Za-z0-9]{{2,10}}-[A-Za-z0-9_-]{{20,}}", hints=("sk-ant-",)),
    Rule(
        "openai_key",
        rf"sk-(?<![{_W}]sk-)(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{{20,}}",
        hints=("sk-",),
    ),
    Rule(
        "aws_access_key",
        rf"(?:AKIA|ASIA|ABIA|ACCA|AIDA|AROA)(?<![{_W}]....)[A-Z0-9]{{16}}(?![{_W}])",
        hints=("AKIA", "ASIA", "ABIA", "ACCA", "AIDA", "AROA"),
    ),
    Rule(
        "aws_secret_key",
        r"(?<![A-Za-z0-9/+])(?=[A-Za-z0-9/+]*[0-9])(?=[A-Za-z0-9/+]*[a-z])(?=[A-Za-z0-9/+]*[A-Z])"
        r"[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])",
        precheck=r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])",
    ),
    Rule(
        "github_token",
        rf"(?:gh[pousr]_|github_pat_)(?<![{_W}]gh._)(?<![{_W}]github_pat_)[A-Za-z0-9_]{{22,}}",
        hints=("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    Rule("google_api_key", rf"AIza(?<![{_W}]AIza)[0-9A-Za-z_-]{{35}}", hints=("AIza",)),
    Rule("google_oauth_token", rf"ya29\.(?<![{_W}]ya29\.)[0-9A-Za-z_-]{{20,}}", hints=("ya29.",)),
    Rule("slack_token", rf"xox[abposr]-(?<![{_W}]xox.-)[A-Za-z0-9-]{{10,}}", hints=("xox",)),
    Rule("stripe_key", r"(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}", hints=("_live_", "_test_")),
    Rule("huggingface_token", rf"hf_(?<![{_W}]hf_)[A-Za-z0-9]{{30,}}", hints=("hf_",)),
    Rule(
        "secret_assignment",
        r"(?i:\b(?:password|passwd|pwd|secret|client_secret|api[_-]?key|access[_-]?token|auth[_-]?token"
        r"|refresh[_-]?token|private[_-]?key)\b)(?:\\?[\"'])?\s*[:=]\s*(?:\\?[\"'])?[^\s\"',;&}\\]{3,}",
        replacement="[REDACTED_SECRET]",
        hints=("pass", "pwd", "secret", "key", "token"),
        hints_ci=True,
        precheck=r"(?:password|passwd|pwd|secret|key|token)(?:\\?[\"'])?\s*[:=]",
        precheck_ci=True,
    ),
    Rule(
        "email",
        r"\b[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}\b",
        replacement="[EMAIL]",
        hints=("@",),
        precheck=r"@[A-Za-z0-9-]{1,63}\.",
    ),
    Rule(
        "card_number",
        # not part of a longer run of digits (by dots or dashes); letters or words around are fine
        r"(?<!\d)(?<!\d[.-])(?:\d[ -]?){12,18}\d(?!\d)(?![.-]\d)",
        replacement="[CARD]",
        validate="card",
        precheck=_DIGIT_RUN,
    ),
    Rule(
        "ipv6",
        rf"(?<![0-9A-Za-z:.])(?:(?:{_H}:){{7}}{_H}|(?:{_H}:){{1,7}}:|(?:{_H}:){{1,6}}:{_H}"
        rf"|(?:{_H}:){{1,5}}(?::{_H}){{1,2}}|(?:{_H}:){{1,4}}(?::{_H}){{1,3}}|(?:{_H}:){{1,3}}(?::{_H}){{1,4}}"
        rf"|(?:{_H}:){{1,2}}(?::{_H}){{1,5}}|{_H}:(?::{_H}){{1,6}}|:(?::{_H}){{1,7}})(?![0-9A-Za-z:])",
        validate="ipv6",
        precheck=r":[0-9A-Fa-f]{0,4}:",
    ),
    Rule("ipv4", rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\d.]*\d)", validate="ipv4", precheck=_DIGIT_RUN),
    Rule(
        "phone",
        # international: +CC then 2 to 6 groups (8 to 15 digits in all, checked after matching);
        # national: (415) 555-0123, 415-555-0123, 020 7946 0958. Never inside dashed ids (UUIDs).
        r"(?<![\w+])(?<!\w-)(?:\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,6}"
        r"|(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]\d{4})(?![\w])(?!-\w)",
        replacement="[PHONE]",
        validate="phone",
        precheck=_DIGIT_RUN,
    ),
    Rule(
        "file_path",
        r"(?<![\w:/.~-])(?:/(?:home|Users|root|var|tmp|etc|opt|srv|usr|mnt|data|app|workspace|private)"
        r"(?:/[\w.@-]+)+|[A-Za-z]:\\(?:[^\\\s\"'<>|]+\\)+[^\\\s\"'<>|]*|~/(?:[\w.@-]+/?)+)",
        validate="path",
        hints=(
            "/home",
            "/Users",
            "/root",
            "/var",
            "/tmp",  # noqa: S108 - a path prefix to scrub, not a temp file
            "/etc",
            "/opt",
            "/srv",
            "/usr",
            "/mnt",
            "/data",
            "/app",
            "/workspace",
            "/private",
            ":\\",
            "~/",
        ),
    ),
)
