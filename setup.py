"""The one compiled part of agent-otel: the normalizer's span scan (issue 7; see the C file's
comment). ``optional``: without a C compiler the package installs and runs on the pure-Python
walk, which gives the same results more slowly (``make test`` under CI=true requires it built)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "agent_otel.collector.pipeline._spanscan",
            ["src/agent_otel/collector/pipeline/_spanscan.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
