"""``python -m agent_otel`` is the ``agent-otel`` command."""

import sys

from agent_otel.cli import main

sys.exit(main())
