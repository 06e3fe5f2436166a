"""Runs nix-hold with --command-fd/--status-fd on two real pipes and relays them to stdio.

Usage: pipes.py NODE CLI ARGS...   (the test talks to this script's stdin and stdout)
"""
import os
import subprocess
import sys
import threading

cmd_r, cmd_w = os.pipe()
st_r, st_w = os.pipe()
node, cli, *args = sys.argv[1:]
child = subprocess.Popen(
    [node, cli, "--command-fd", str(cmd_r), "--status-fd", str(st_w), *args],
    pass_fds=[cmd_r, st_w],
    stdin=subprocess.DEVNULL,
)
os.close(cmd_r)
os.close(st_w)


def relay_in():
    # the test's lines go to the command pipe; its EOF closes the pipe
    while True:
        data = os.read(0, 65536)
        if not data:
            break
        os.write(cmd_w, data)
    os.close(cmd_w)


threading.Thread(target=relay_in, daemon=True).start()
while True:
    data = os.read(st_r, 65536)
    if not data:
        break
    os.write(1, data)
sys.exit(child.wait())
