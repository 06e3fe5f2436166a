"""Hold Nix build outputs from Python for the length of a `with` block.

    with nix_hold(["nix", "build", ".#thing"]) as paths:
        subprocess.run(["nix", "copy", "--to", "ssh://host", *paths], check=True)

The outputs cannot be garbage-collected inside the block. Leaving it (normally, by an exception,
or by the process dying) releases them; nothing is written to disk.
"""

import contextlib
import json
import socket
import subprocess


class NixHoldError(Exception):
    """nix-hold reported an error; `kind` is build, protocol, store or usage."""

    def __init__(self, kind, message, exit_code=None):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.exit_code = exit_code


@contextlib.contextmanager
def nix_hold(command, *, nix_hold_command=("nix-hold",), env=None):
    """Runs `command` under nix-hold and yields the list of held output paths."""
    ours, theirs = socket.socketpair()
    with ours:
        proc = subprocess.Popen(
            [*nix_hold_command, "--fd", str(theirs.fileno()), "--", *command],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            env=env,
        )
        theirs.close()  # only the child keeps that end: its EOF is our signal, and ours is its
        channel = ours.makefile("rwb", buffering=0)
        try:
            event = json.loads(channel.readline() or b'{"error":{"kind":"store","message":"nix-hold exited"}}')
            if "error" in event:
                err = event["error"]
                raise NixHoldError(err["kind"], err["message"], err.get("exitCode"))
            yield event["built"]
            channel.write(b'{"release":true}\n')
            channel.readline()  # {"released":true}
        finally:
            channel.close()
            proc.wait()
