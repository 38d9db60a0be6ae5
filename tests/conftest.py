"""Test-wide settings. Builders live in builders.py (a plain module, imported by name)."""

import os

from hypothesis import settings

# CI must not fail on a draw no one can reproduce: derandomized there, exploring locally.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")
