"""``make install`` builds the venv on the interpreter ``tools/pick-python`` prints: one that can
make a venv with pip, 3.11 or newer, and, where this machine has one, a CPython built for speed
(linked into its executable or configured with --enable-optimizations) rather than pyenv's
default shared-library build, which ran the collector about 10% slower (docs/performance.md)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PICK = ROOT / "tools" / "pick-python"

FAST = """
import sys, sysconfig
with open("/proc/self/maps") as maps:
    shared = "libpython" in maps.read()
optimized = "--enable-optimizations" in (sysconfig.get_config_var("CONFIG_ARGS") or "")
print("fast" if optimized or not shared else "slow")
"""


def _run(python: str, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)


def _pick() -> str:
    return subprocess.run(["sh", str(PICK)], capture_output=True, text=True, check=True, timeout=120).stdout.strip()


def test_the_picked_interpreter_can_build_the_venv() -> None:
    python = _pick()
    probe = _run(python, "import sys, ensurepip, venv; print(sys.version_info >= (3, 11))")
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "True"


def test_a_fast_build_is_preferred_where_the_machine_has_one() -> None:
    candidates = [Path("/usr/bin/python3"), Path("/usr/local/bin/python3")]
    fast = [
        str(c)
        for c in candidates
        if c.exists()
        and _run(str(c), "import ensurepip, venv, sys; sys.exit(sys.version_info < (3, 11))").returncode == 0
        and _run(str(c), FAST).stdout.strip() == "fast"
    ]
    picked = _pick()
    if fast:
        assert _run(picked, FAST).stdout.strip() == "fast", picked
        assert picked == fast[0]
    else:  # nothing faster here: the first usable interpreter, still one that builds the venv
        assert _run(picked, "import ensurepip, venv").returncode == 0
