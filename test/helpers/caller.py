"""A caller that starts nix-hold on a socketpair, reports, and then only waits (to be killed).

Usage: caller.py NODE CLI ARGS...   Prints nix-hold's pid, then its first event, one per line.
"""
import socket
import subprocess
import sys
import time

node, cli, *args = sys.argv[1:]
ours, theirs = socket.socketpair()
child = subprocess.Popen([node, cli, "--fd", str(theirs.fileno()), *args], pass_fds=[theirs.fileno()])
theirs.close()
print(child.pid, flush=True)
print(ours.makefile("rb").readline().decode().strip(), flush=True)
while True:
    time.sleep(3600)
