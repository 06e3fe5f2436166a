"""Builds under nix-hold, says what is held, and releases when a line arrives on stdin.

    python3 examples/python/example.py nix build -f test/fixtures/demo.nix
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nix_hold import nix_hold  # noqa: E402

with nix_hold(sys.argv[1:]) as paths:
    print("held " + " ".join(paths), flush=True)
    sys.stdin.readline()  # stands in for the work that needs the paths
print("released", flush=True)
