"""Paths for the tests: the package from src/ (not an installed copy) and
the bridge's integration harness (tests/integration, `from harness import`)."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT_DIR = os.path.dirname(HERE)
SRC = os.path.join(CLIENT_DIR, "src")
REPO = os.path.dirname(os.path.dirname(CLIENT_DIR))
HARNESS_DIR = os.path.join(REPO, "tests", "integration")

for _p in (HARNESS_DIR, SRC):
    if _p not in sys.path:
        sys.path.insert(0, _p)
