"""Documentation that is generated from code must match the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agent_otel.collector.pipeline.conventions import CONCEPTS

ROOT = Path(__file__).resolve().parent.parent


def test_configuration_reference_is_current() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_config_docs.py"), "--check"], check=False)
    assert result.returncode == 0, "docs/configuration.md is stale: run .venv/bin/python tools/gen_config_docs.py"


def test_readme_lists_every_attribute_key_the_collector_reads() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [key for keys in CONCEPTS.values() for key in keys if f"`{key}`" not in readme]
    assert missing == [], f"README's attribute-key table lacks {missing}"


def test_schema_reference_is_current() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_schema_docs.py"), "--check"], check=False)
    assert result.returncode == 0, "docs/schema.md is stale: run .venv/bin/python tools/gen_schema_docs.py"
