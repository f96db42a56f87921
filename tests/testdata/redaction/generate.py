"""Generate the redaction corpora (deterministic: fixed seed, stdlib only).

    .venv/bin/python tests/testdata/redaction/generate.py          # rewrite secrets.json and benign.json
    .venv/bin/python tests/testdata/redaction/generate.py --check  # exit 1 if the committed files differ

``secrets.json``: planted secrets and personal data, each with its ``kind``, the ``text`` to plant
(sometimes the bare value, sometimes inside a realistic sentence, header or URL) and ``needles``:
substrings that must never be found in anything the collector stores, logs or exposes
(compared case-insensitively, so lower-casing is no escape).

``benign.json``: realistic text that is NOT sensitive (error messages, model names, URLs, versions,
UUIDs, timestamps, hashes, numbers...). The scrubber should leave it unchanged; the share it alters
is the false-positive rate reported in docs/security.md.
"""

from __future__ import annotations

import base64
import json
import random
import string
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

SEED = 20261124
HERE = Path(__file__).resolve().parent
ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "/+"
URLSAFE = ALNUM + "-_"
PER_KIND = 32

Item = dict[str, object]


def _s(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    digits = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return digits + str((10 - total % 10) % 10)


FIRST = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "oscar"]
LAST = ["smith", "jones", "garcia", "muller", "rossi", "kim", "nguyen", "dubois", "silva", "kowalski"]
DOMAINS = ["example.com", "acme-corp.io", "mail.example.org", "corp.example.net", "uni.example.edu", "gmail.com"]
HOSTS = ["db.internal", "api.example.com", "10.0.3.7", "queue.prod.svc", "redis.example.net", "git.example.org"]
SENTENCES = [
    "{s}",
    "{s}",
    "request failed: {s}",
    "Error: upstream rejected credentials {s} (status 401)",
    "user said: please use {s} for this",
    '{{"messages": [{{"role": "user", "content": "my details: {s}"}}]}}',
    "retrying with {s} after timeout",
    "config dump: {s}; region=eu-west-1",
]


def openai_key(rng: random.Random) -> tuple[str, list[str]]:
    style = rng.choice(["sk-", "sk-proj-", "sk-svcacct-", "sk-admin-"])
    body = _s(rng, ALNUM, 48) if style == "sk-" else _s(rng, URLSAFE, rng.randint(60, 120))
    key = style + body
    return key, [key, body[:24]]


def anthropic_key(rng: random.Random) -> tuple[str, list[str]]:
    body = _s(rng, URLSAFE, 93) + "AA"
    key = "sk-ant-" + rng.choice(["api03", "admin01"]) + "-" + body
    return key, [key, body[:24]]


def aws_access_key(rng: random.Random) -> tuple[str, list[str]]:
    key = rng.choice(["AKIA", "ASIA"]) + _s(rng, string.ascii_uppercase + "234567", 16)
    return key, [key]


def aws_secret_key(rng: random.Random) -> tuple[str, list[str]]:
    while True:
        key = _s(rng, B64, 40)
        if any(c.isdigit() for c in key) and any(c.islower() for c in key) and any(c.isupper() for c in key):
            break
    form = rng.choice(["{k}", "aws_secret_access_key={k}", "AWS_SECRET_ACCESS_KEY: {k}", "secret {k}"])
    return form.format(k=key), [key]


def github_token(rng: random.Random) -> tuple[str, list[str]]:
    if rng.random() < 0.7:
        token = rng.choice(["ghp_", "gho_", "ghs_", "ghu_", "ghr_"]) + _s(rng, ALNUM, 36)
    else:
        token = "github_pat_" + _s(rng, ALNUM, 22) + "_" + _s(rng, ALNUM, 59)
    return token, [token]


def google_api_key(rng: random.Random) -> tuple[str, list[str]]:
    key = "AIza" + _s(rng, URLSAFE, 35)
    return key, [key]


def jwt(rng: random.Random) -> tuple[str, list[str]]:
    header = _b64url(json.dumps({"alg": rng.choice(["HS256", "RS256"]), "typ": "JWT"}).encode())
    payload = _b64url(
        json.dumps({"sub": str(rng.randint(10**6, 10**9)), "name": rng.choice(FIRST), "iat": 1700000000}).encode()
    )
    signature = _b64url(rng.randbytes(32))
    token = f"{header}.{payload}.{signature}"
    return token, [token, payload, signature]


def bearer_header(rng: random.Random) -> tuple[str, list[str]]:
    token = _s(rng, ALNUM + "-._~", rng.randint(24, 64))
    form = rng.choice(["Authorization: Bearer {t}", "authorization=Bearer {t}", "Bearer {t}", "BEARER {t}"])
    return form.format(t=token), [token]


def basic_auth_header(rng: random.Random) -> tuple[str, list[str]]:
    user, password = rng.choice(FIRST), _s(rng, ALNUM + "!#%", 14)
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    form = rng.choice(["Authorization: Basic {e}", "Basic {e}", "proxy-authorization: basic {e}"])
    return form.format(e=encoded), [encoded, password]


def url_password(rng: random.Random) -> tuple[str, list[str]]:
    user, password = rng.choice(FIRST), _s(rng, ALNUM + "!$*", rng.randint(10, 20))
    scheme = rng.choice(["postgres", "postgresql", "mysql", "https", "redis", "amqp", "mongodb+srv"])
    url = (
        f"{scheme}://{user}:{password}@{rng.choice(HOSTS)}:{rng.randint(1000, 9999)}/{rng.choice(['app', 'v1', 'db'])}"
    )
    return url, [password, f"{user}:{password}"]


def email(rng: random.Random) -> tuple[str, list[str]]:
    local = f"{rng.choice(FIRST)}{rng.choice(['.', '_', '+', ''])}{rng.choice(LAST)}{rng.randint(1, 99)}"
    address = f"{local}@{rng.choice(DOMAINS)}"
    return address, [address]


def phone(rng: random.Random) -> tuple[str, list[str]]:
    a, b, c = rng.randint(201, 989), rng.randint(200, 999), rng.randint(1000, 9999)
    number = rng.choice(
        [
            f"+1 {a} {b} {c}",
            f"+1-{a}-{b}-{c}",
            f"({a}) {b}-{c}",
            f"{a}-{b}-{c}",
            f"{a}.{b}.{c}",
            f"+44 20 {rng.randint(7000, 8999)} {rng.randint(1000, 9999)}",
            f"+49 151 {rng.randint(1000000, 9999999)}",
            f"+33 6 {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)}",
            f"+4915{rng.randint(100000000, 999999999)}",
        ]
    )
    return number, [number]


def card_number(rng: random.Random) -> tuple[str, list[str]]:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15), ("6011", 16)])
    digits = _luhn_complete(prefix, length, rng)
    if length == 15:
        spaced = f"{digits[:4]} {digits[4:10]} {digits[10:]}"
    else:
        spaced = " ".join(digits[i : i + 4] for i in range(0, 16, 4))
    text = rng.choice([digits, spaced, spaced.replace(" ", "-")])
    return text, [text, digits]


def ipv4(rng: random.Random) -> tuple[str, list[str]]:
    address = ".".join(str(rng.randint(1, 254)) for _ in range(4))
    text = rng.choice(["{a}", "client {a} connected", "{a}:8443", "from {a}"]).format(a=address)
    return text, [address]


def ipv6(rng: random.Random) -> tuple[str, list[str]]:
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(8)]
    groups[0] = rng.choice(["2001", "2a00", "2604", "fd12"])
    if rng.random() < 0.5:
        address = ":".join(groups)
        needles = [address, ":".join(groups[3:])]
    else:
        address = ":".join(groups[:3]) + "::" + ":".join(groups[6:])
        needles = [address, "::" + ":".join(groups[6:]) if groups[6] != "0" else address]
    text = rng.choice(["{a}", "peer [{a}]:443", "from {a}"]).format(a=address)
    return text, needles


def private_key(rng: random.Random) -> tuple[str, list[str]]:
    body = "\n".join(_s(rng, B64, 64) for _ in range(4))
    kind = rng.choice(["RSA ", "EC ", "", "OPENSSH "])
    pem = f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----"
    return pem, [body.splitlines()[0], body.splitlines()[2]]


def password_assignment(rng: random.Random) -> tuple[str, list[str]]:
    secret = _s(rng, ALNUM + "!@#", rng.randint(10, 18))
    form = rng.choice(['password="{p}"', "passwd: {p}", "PASSWORD={p}", "client_secret={p}", '"api_key": "{p}"'])
    return form.format(p=secret), [secret]


def slack_token(rng: random.Random) -> tuple[str, list[str]]:
    token = rng.choice(["xoxb-", "xoxp-"]) + "-".join(str(rng.randint(10**10, 10**11)) for _ in range(2))
    token += "-" + _s(rng, ALNUM, 24)
    return token, [token]


def stripe_key(rng: random.Random) -> tuple[str, list[str]]:
    key = rng.choice(["sk_live_", "rk_live_", "sk_test_"]) + _s(rng, ALNUM, 24)
    return key, [key]


KINDS: dict[str, Callable[[random.Random], tuple[str, list[str]]]] = {
    "openai_key": openai_key,
    "anthropic_key": anthropic_key,
    "aws_access_key": aws_access_key,
    "aws_secret_key": aws_secret_key,
    "github_token": github_token,
    "google_api_key": google_api_key,
    "jwt": jwt,
    "bearer_header": bearer_header,
    "basic_auth_header": basic_auth_header,
    "url_password": url_password,
    "email": email,
    "phone": phone,
    "card_number": card_number,
    "ipv4": ipv4,
    "ipv6": ipv6,
    "private_key": private_key,
    "password_assignment": password_assignment,
    "slack_token": slack_token,
    "stripe_key": stripe_key,
}


def secrets_corpus(rng: random.Random) -> list[Item]:
    items: list[Item] = []
    for kind, make in KINDS.items():
        for i in range(PER_KIND):
            value, needles = make(rng)
            # the first few of each kind are planted bare (ids, names); the rest inside text
            template = "{s}" if i < 4 else rng.choice(SENTENCES)
            if template.startswith("{{") and kind == "private_key":
                template = "{s}"  # a PEM block inside a JSON string would need escaping; keep it bare
            items.append({"id": f"{kind}-{i:03d}", "kind": kind, "text": template.format(s=value), "needles": needles})
    return items


MODELS = [
    "gpt-4o-mini",
    "gpt-4o-mini-2024-07-18",
    "gpt-4.1",
    "o3-mini",
    "claude-3-5-sonnet-20241022",
    "claude-sonnet-4-20250514",
    "gemini-1.5-pro-002",
    "text-embedding-3-large",
    "llama-3.1-70b-instruct",
    "mistral-large-2411",
    "amazon.titan-text-express-v1",
    "anthropic.claude-3-haiku-20240307-v1:0",
]
ERRORS = [
    "Connection reset by peer",
    "Read timed out. (read timeout=30)",
    "RateLimitError: Rate limit reached for gpt-4o-mini on tokens per min (TPM): Limit 200000, Used 198765",
    "InternalServerError: The server had an error while processing your request. Sorry about that!",
    "BadRequestError: This model's maximum context length is 128000 tokens. However, you requested 131072 tokens",
    "context deadline exceeded after 30.000s",
    "HTTP 503 Service Unavailable from upstream",
    "KeyError: 'choices'",
    "TypeError: 'NoneType' object is not subscriptable",
    "ValueError: invalid literal for int() with base 10: 'abc'",
    "tool search_kb failed: no results for query",
    "JSONDecodeError: Expecting value: line 1 column 1 (char 0)",
    "APIConnectionError: Connection error.",
    "asyncio.exceptions.CancelledError",
    "Timeout waiting for tool execution (60s)",
    "failed to parse function arguments at position 42",
    "status code 429, retry after 20 seconds",
    "Validation failed: field 'temperature' must be <= 2.0",
    "Too many requests: 100 requests per 60 seconds allowed",
    "exit status 137 (OOMKilled)",
]
URLS = [
    "https://api.openai.com/v1/chat/completions",
    "https://api.anthropic.com/v1/messages",
    "https://generativelanguage.googleapis.com/v1beta/models/gemini-1.5-pro:generateContent",
    "http://localhost:8080/healthz",
    "https://example.com/docs/getting-started?page=2&sort=asc",
    "https://github.com/open-telemetry/opentelemetry-python/issues/4123",
    "grpc://collector.observability.svc:4317",
    "https://status.example.com/incidents/01HF3X8Z9K",
    "s3://bucket-name/path/to/object.parquet",
    "https://cdn.example.net/assets/app.3f9a2b1c.js",
]
WORDS = ["search_kb", "summarize", "get_weather", "planner", "router", "support-bot", "triage-agent", "refund_tool"]


def benign_corpus(rng: random.Random) -> list[str]:
    items: list[str] = []
    items += ERRORS
    items += MODELS
    items += URLS
    items += WORDS
    items += [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(40)]
    items += [rng.randbytes(16).hex() for _ in range(25)]  # trace ids
    items += [rng.randbytes(8).hex() for _ in range(25)]  # span ids
    items += [rng.randbytes(20).hex() for _ in range(20)]  # sha1 / git commits
    items += [rng.randbytes(32).hex() for _ in range(20)]  # sha256
    items += [rng.randbytes(4).hex()[:7] for _ in range(10)]  # short commits
    for _ in range(40):
        y, mo, d = rng.randint(2019, 2027), rng.randint(1, 12), rng.randint(1, 28)
        h, mi, s = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
        items.append(
            rng.choice(
                [
                    f"{y}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}.{rng.randint(0, 999):03d}Z",
                    f"{y}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d}",
                    f"{d:02d}/{mo:02d}/{y}",
                    f"{h:02d}:{mi:02d}:{s:02d}",
                    f"{rng.randint(1_600_000_000, 1_800_000_000)}",
                    f"{rng.randint(1_600_000_000_000_000_000, 1_800_000_000_000_000_000)}",
                    f"{rng.randint(1_600_000_000_000, 1_800_000_000_000)}",
                ]
            )
        )
    for _ in range(30):
        items.append(
            rng.choice(
                [
                    f"{rng.randint(0, 9)}.{rng.randint(0, 40)}.{rng.randint(0, 200)}",
                    f"v{rng.randint(0, 9)}.{rng.randint(0, 40)}.{rng.randint(0, 20)}-rc.{rng.randint(1, 5)}",
                    f"{rng.randint(2020, 2026)}.{rng.randint(1, 12)}.{rng.randint(0, 9)}",
                    f"python-requests/2.{rng.randint(20, 32)}.{rng.randint(0, 3)}",
                    f"OpenAI/Python {rng.randint(1, 2)}.{rng.randint(0, 60)}.{rng.randint(0, 9)}",
                    f"opentelemetry-sdk {rng.randint(1, 1)}.{rng.randint(20, 45)}.{rng.randint(0, 3)}",
                ]
            )
        )
    for _ in range(40):
        items.append(
            rng.choice(
                [
                    str(rng.randint(0, 10**6)),
                    f"{rng.uniform(0, 1000):.3f}",
                    f"{rng.randint(1, 999)},{rng.randint(100, 999)},{rng.randint(100, 999)}",
                    f"{rng.randint(1, 100)}%",
                    f"{rng.randint(1, 5000)} ms",
                    f"{rng.randint(1, 500000)} tokens",
                    f"${rng.uniform(0, 100):.4f}",
                    f"{rng.randint(1, 64)}/{rng.randint(64, 128)} workers busy",
                    f"order #{rng.randint(10000, 99999)}",
                    f"{rng.randint(1, 9)}.{rng.randint(0, 9)}e-{rng.randint(1, 9)}",
                ]
            )
        )
    for _ in range(30):
        pod = f"{rng.choice(WORDS).replace('_', '-')}-{rng.randbytes(4).hex()[:9]}-{_s(rng, string.ascii_lowercase, 5)}"
        items.append(
            rng.choice(
                [
                    pod,
                    f"chatcmpl-{_s(rng, ALNUM, 29)}",
                    f"msg_{_s(rng, ALNUM, 24)}",
                    f"call_{_s(rng, ALNUM, 24)}",
                    f"req_{rng.randbytes(16).hex()}",
                    f"run-{uuid.UUID(int=rng.getrandbits(128))}",
                    f"{rng.choice(WORDS)}.tool",
                    f"invoke_agent {rng.choice(WORDS)}",
                    f"chat {rng.choice(MODELS)}",
                    f"sha256:{rng.randbytes(32).hex()}",
                ]
            )
        )
    sentences = [
        "The assistant answered in {n} ms using {m}.",
        "Retrying request {u} (attempt {k} of 5)",
        "Loaded {n} documents from the index in {k} seconds",
        "Model {m} returned finish_reason=stop after {n} tokens",
        "Cache hit ratio {k}.{n}% over the last hour",
        "Span {h} has {k} children",
        "Deployed build {h} to production at {t}",
        "Queue depth {n}, {k} workers, p95 latency {n} ms",
        "Tool call get_weather(city='Paris') took {k}.{n}s",
        "GET {url} -> 200 in {n} ms",
    ]
    for _ in range(60):
        items.append(
            rng.choice(sentences).format(
                n=rng.randint(1, 9999),
                k=rng.randint(1, 9),
                m=rng.choice(MODELS),
                u=uuid.UUID(int=rng.getrandbits(128)),
                h=rng.randbytes(8).hex(),
                t=f"2025-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}T0{rng.randint(0, 9)}:00:00Z",
                url=rng.choice(URLS),
            )
        )
    return items


def build() -> dict[str, str]:
    rng = random.Random(SEED)
    secrets_items = secrets_corpus(rng)
    benign_items = benign_corpus(rng)
    return {
        "secrets.json": json.dumps({"seed": SEED, "items": secrets_items}, indent=1, ensure_ascii=False) + "\n",
        "benign.json": json.dumps({"seed": SEED, "items": benign_items}, indent=1, ensure_ascii=False) + "\n",
    }


def main(argv: list[str]) -> int:
    outputs = build()
    if "--check" in argv:
        stale = [name for name, text in outputs.items() if (HERE / name).read_text(encoding="utf-8") != text]
        if stale:
            print(f"stale: {', '.join(stale)}; run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    for name, text in outputs.items():
        (HERE / name).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
