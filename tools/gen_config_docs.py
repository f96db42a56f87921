"""Write docs/configuration.md from the settings models (a test checks it is up to date).

.venv/bin/python tools/gen_config_docs.py
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agent_otel.settings import ENV_KEYS, ListenAddress, Settings

TARGET = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"

HEADER = """# Configuration reference

Generated from `src/agent_otel/settings.py` by `tools/gen_config_docs.py`; do not edit by hand.

Settings come from, highest precedence first: command-line flags, environment variables, the
config file (YAML, or TOML when the name ends in `.toml`; given by `--config` or
`AGENT_OTEL_CONFIG`), then the defaults below. Unknown keys and invalid values stop the
collector at start-up with a message naming the setting. Nested settings are written as
sections in the file:

```yaml
db_url: postgresql://agent_otel@db.internal:5432/agent_otel
otlp_http: 0.0.0.0:4318
ingest:
  max_queue_spans: 500000
sanitizer:
  disabled_rules: [file_path]
retention:
  executions_days: 14
```

## Environment variables

| variable | setting |
|---|---|
"""


def _default(value: Any) -> str:
    if isinstance(value, ListenAddress):
        return str(value)
    if value is None or hasattr(value, "get_secret_value"):
        return "(unset)"
    if isinstance(value, list | dict) and not value:
        return "[]" if isinstance(value, list) else "{}"
    return str(value)


def rows(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    for name, field in model.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel) and not isinstance(default, ListenAddress):
            yield f"\n## `{prefix}{name}`\n\n{(type(default).__doc__ or '').strip()}\n"
            yield "| setting | default | meaning |\n|---|---|---|"
            yield from rows(type(default), f"{prefix}{name}.")
            continue
        description = (field.description or "").replace("|", "\\|")
        yield f"| `{prefix}{name}` | `{_default(default)}` | {description} |"


def render() -> str:
    env = "\n".join(f"| `{variable}` | `{setting}` |" for variable, setting in ENV_KEYS.items())
    top = "\n## Top level\n\n| setting | default | meaning |\n|---|---|---|"
    return HEADER + env + "\n" + top + "\n" + "\n".join(rows(Settings)) + "\n"


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if TARGET.exists() and TARGET.read_text() == text else 1)
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
