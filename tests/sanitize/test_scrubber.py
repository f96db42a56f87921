"""The scrubbing rules one by one: what each must catch, what it must leave alone, and the
scrubber's contract (counts per occurrence, memo, configuration errors)."""

from __future__ import annotations

import pytest

from agent_otel.sanitize import RedactionCounts, Scrubber, anonymize_ip, luhn_ok, pseudonymize
from agent_otel.sanitize.scrubber import card_number_ok


@pytest.fixture(scope="module")
def scrubber() -> Scrubber:
    return Scrubber()


def scrub(scrubber: Scrubber, text: str) -> tuple[str, RedactionCounts]:
    counts = RedactionCounts()
    return scrubber.scrub(text, counts), counts


CAUGHT = [
    ("openai_key", "key sk-proj-abcdefghijklmnopqrstuvwxyz012345 here", "sk-proj-abcdefghijklmnopqrstuvwxyz012345"),
    ("openai_key", "sk-abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV", "abcdefghijklmnopqrstuvwxyz"),
    ("anthropic_key", "x=sk-ant-api03-" + "a1B2" * 20 + "AA", "a1B2a1B2a1B2"),
    ("aws_access_key", "AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
    ("aws_secret_key", "aws_secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY ok", "wJalrXUtnFEMI/K7MDENG"),
    ("github_token", "using ghp_" + "a1" * 18, "ghp_a1a1"),
    ("github_token", "github_pat_11ABCDEFG0123456789abc_" + "x" * 59, "github_pat_11ABCDEFG"),
    ("google_api_key", "AIzaSyA-1234567890abcdefghijklmnopqrstu", "AIzaSyA-1234567890"),
    ("jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "eyJzdWIi"),
    ("auth_header", "Authorization: Bearer abcdef0123456789ghij", "abcdef0123456789ghij"),
    ("auth_header", "authorization: Basic dXNlcjpodW50ZXIy", "dXNlcjpodW50ZXIy"),
    ("url_credentials", "postgres://admin:S3cret!x@db.internal:5432/app", "S3cret!x"),
    ("secret_assignment", 'config {"password": "hunter2hunter2"}', "hunter2hunter2"),
    ("secret_assignment", 'escaped {\\"api_key\\": \\"abc123secret\\"}', "abc123secret"),
    ("email", "write to jane.doe+tag@example.co.uk please", "jane.doe+tag@example.co.uk"),
    ("phone", "call +1 415 555 0123 now", "415 555 0123"),
    ("phone", "call (415) 555-0123 now", "555-0123"),
    ("phone", "ring +49 151 2794676.", "2794676"),
    ("phone", "ring +33 6 60 39 91 88", "60 39 91 88"),
    ("card_number", "card 4111 1111 1111 1111 exp", "4111 1111 1111 1111"),
    ("card_number", "amex 3782-822463-10005", "822463"),
    ("ipv4", "from 203.0.113.77 via proxy", "203.0.113.77"),
    ("ipv6", "peer [2001:db8:85a3::8a2e:370:7334]:443", "8a2e:370:7334"),
    ("private_key", "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", "MIIEow"),
    ("slack_token", "xoxb-12345678901-abcdefghijkl", "abcdefghijkl"),
    ("stripe_key", "sk_live_abcdefghijklmnop1234", "abcdefghijklmnop1234"),
    ("agent_otel_key", "aoi_" + "Ab3" * 14 + "x", "Ab3Ab3Ab3"),
]


@pytest.mark.parametrize(("rule", "text", "needle"), CAUGHT, ids=[f"{c[0]}-{i}" for i, c in enumerate(CAUGHT)])
def test_rule_catches(scrubber: Scrubber, rule: str, text: str, needle: str) -> None:
    out, counts = scrub(scrubber, text)
    assert needle not in out
    assert counts[rule] >= 1, counts


BENIGN = [
    "gpt-4o-mini-2024-07-18",
    "claude-3-5-sonnet-20241022",
    "93c6a3be-3355-8969-2559-6e592b692847",  # a UUID is not a phone number
    "1680532566987073629",  # nanosecond timestamp, passes Luhn: not a card (no scheme starts with 1)
    "2024-11-05T12:34:56.789Z",
    "Limit 200000, Used 198765",
    "version 2.31.0 build 10.0.19041",
    "the tokens per min limit was reached",
    "task-force-alpha-bravo-charlie-delta",  # 'sk-' inside a word is not a key
    "https://api.openai.com/v1/chat/completions",
    "sha256:" + "ab" * 32,
    "ask-questions-about-the-refund-policy-please",
    "10 000 000 tokens",
    "std::vector<int>",
]


@pytest.mark.parametrize("text", BENIGN)
def test_benign_text_is_left_alone(scrubber: Scrubber, text: str) -> None:
    out, counts = scrub(scrubber, text)
    assert out == text, counts


def test_ip_addresses_are_anonymised_not_removed(scrubber: Scrubber) -> None:
    out, _ = scrub(scrubber, "from 192.168.1.77 and 2001:db8:85a3:1:2:3:4:5")
    assert out == "from 192.168.1.xxx and 2001:db8:85a3::/48"
    assert anonymize_ip("10.0.0.1:8080") == "10.0.0.xxx"
    assert anonymize_ip("not an ip") is None


def test_card_numbers_need_a_scheme_prefix_and_luhn() -> None:
    assert (
        card_number_ok("4111111111111111") and card_number_ok("378282246310005") and card_number_ok("5555555555554444")
    )
    assert card_number_ok("2223003122003222") and card_number_ok("6011111111111117")
    assert not card_number_ok("4111111111111112")  # Luhn fails
    assert luhn_ok("1680532566987073629") and not card_number_ok("1680532566987073629")
    assert not card_number_ok("411111111111")  # too short


def test_counts_are_per_occurrence_even_from_the_memo(scrubber: Scrubber) -> None:
    counts = RedactionCounts()
    for _ in range(3):
        assert scrubber.scrub("mail bob@example.com", counts) == "mail [EMAIL]"
    assert counts["email"] == 3


def test_long_text_is_cut_and_counted() -> None:
    scrubber = Scrubber(max_length=100)
    out, counts = scrub(scrubber, "x" * 500)
    assert len(out) == 100 and counts["truncated"] == 1


def test_configuration_errors_name_the_rule() -> None:
    with pytest.raises(ValueError, match="unknown scrubbing rule"):
        Scrubber(disabled=["no_such_rule"])
    with pytest.raises(ValueError, match="'mine'"):
        Scrubber(extra_patterns={"mine": "(unclosed"})
    custom = Scrubber(extra_patterns={"ticket": r"TICKET-\d+"}, disabled=["email"])
    out, counts = scrub(custom, "TICKET-123456 from bob@example.com")
    assert out == "[REDACTED] from bob@example.com" and counts["ticket"] == 1


def test_pseudonyms_are_stable_keyed_and_one_way() -> None:
    a = pseudonymize("alice@example.com", b"k1")
    assert a == pseudonymize("alice@example.com", b"k1")
    assert a != pseudonymize("alice@example.com", b"k2") and a != pseudonymize("bob@example.com", b"k1")
    assert a.startswith("u_") and "alice" not in a


@pytest.mark.parametrize("text", ["a\x00b", "agent\x00name-longer", "x" * 300 + "\x00"])
def test_nul_bytes_never_survive(scrubber: Scrubber, text: str) -> None:
    """PostgreSQL text cannot hold NUL: every stored string goes through the scrubber."""
    for _ in range(2):  # the second time from the memo
        counts = RedactionCounts()
        out = scrubber.scrub(text, counts)
        assert "\x00" not in out and "\ufffd" in out and counts["nul_byte"] == 1


def test_a_failed_candidate_does_not_hide_a_secret_inside_it(scrubber: Scrubber) -> None:
    # "000 939-708-7066" is a 13-digit run (no card: no scheme starts with 0) holding a phone number
    out, counts = scrub(scrubber, "call 000 939-708-7066")
    assert "939-708-7066" not in out and counts["phone"] == 1


def test_adversarial_inputs_scrub_quickly(scrubber: Scrubber) -> None:
    """No catastrophic backtracking: worst cases we know of stay far under 50 ms at the 2 KB cap."""
    import time

    cases = [
        "A" * 1024 + "b" * 1024,
        "1" * 2048,
        "1 " * 1024,
        "+1 " * 682,
        "a@" + "b." * 1000,
        "1:" * 1024,
        "://" + "a:" * 1000 + "@",
        "bearer " + "a" * 2000,
        "password=" * 220,
        "-----BEGIN PRIVATE KEY-----" + "A" * 2000,
        "/home/" + "a/" * 1000,
        "0 " * 1024,
        "(12) " * 400,
    ]
    for text in cases:
        started = time.perf_counter()
        scrubber.scrub(text, RedactionCounts())
        assert time.perf_counter() - started < 0.05, text[:30]
