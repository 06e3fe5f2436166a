"""Builds under nix-hold, says what is held, and releases when a line arrives on stdin. With
--for first, the outputs are held for as long as this program runs instead, and go when it exits.

    python3 examples/python/example.py nix build -f test/fixtures/demo.nix
    python3 examples/python/example.py --for nix-build test/fixtures/demo.nix
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nix_hold import hold_for_this_process, nix_hold  # noqa: E402

if sys.argv[1:2] == ["--for"]:
    paths = hold_for_this_process(sys.argv[2:])
    print("held " + " ".join(paths), flush=True)
    sys.stdin.readline()
    sys.exit(0)

with nix_hold(sys.argv[1:]) as paths:
    print("held " + " ".join(paths), flush=True)
    sys.stdin.readline()  # stands in for the work that needs the paths
print("released", flush=True)
