"""Hold Nix build outputs from Python for the length of a `with` block.

    with nix_hold(["nix", "build", ".#thing"]) as paths:
        subprocess.run(["nix", "copy", "--to", "ssh://host", *paths], check=True)

The outputs cannot be garbage-collected inside the block. Leaving it (normally, by an exception,
or by the process dying) releases them; nothing is written to disk.

`paths` can hold more until then: `paths.keep(["./result"])` adds paths that exist, and
`paths.expect([path], store="ssh-ng://host")` roots a path on another machine before a
`nix copy --to ssh-ng://host` lands it there, already held (PROTOCOL.md, section 4.3). A
nix-hold that ends early (killed, say) raises NixHoldError at the next request or on leaving the
block, saying how it ended: the paths were not held all along.

To hold for as long as this process runs instead, with nothing to release:

    paths = hold_for_this_process(["nix-build", "default.nix", "-A", "thing"])
"""

import contextlib
import json
import os
import signal
import socket
import subprocess


class NixHoldError(Exception):
    """nix-hold reported an error, or ended without one; `kind` is build, protocol, store or usage.

    `exit_code` is the build's exit status for kind build, and nix-hold's own (128+N for signal N)
    when it ended without a word; `store` is the store URL a keep or expect named.
    """

    def __init__(self, kind, message, exit_code=None, store=None):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.exit_code = exit_code
        self.store = store


class Hold(list):
    """The paths held on nix-hold's own store, and the channel to hold more with."""

    def __init__(self, proc, channel):
        super().__init__()
        self._proc = proc
        self._channel = channel
        self.lost = []  # paths a lost daemon connection took before it was made again

    def keep(self, paths, *, store=None):
        """Holds paths that exist (store paths, or links into the store), on `store` if given.

        Returns them as store paths; nothing of the request is held if one is not valid.
        """
        return self._ask({"keep": list(paths)}, "kept", store)

    def expect(self, paths, *, store=None):
        """Roots store paths that need not exist yet, on `store` if given; returns them."""
        return self._ask({"expect": list(paths)}, "expected", store)

    def _ask(self, request, answer, store):
        if store is not None:
            request["store"] = store
        try:
            self._channel.write(json.dumps(request).encode() + b"\n")
        except OSError:
            pass  # nix-hold is gone: reading says how it ended
        paths = self._next(answer)
        if store is None:
            self.extend(p for p in paths if p not in self)
        return paths

    def _next(self, key):
        """The value of the next event named `key`; an error, or the hold ending, raises NixHoldError."""
        while True:
            try:
                line = self._channel.readline()
            except ConnectionResetError:  # nix-hold died with a request of ours unread
                line = b""
            if not line:
                raise self._ended()
            event = json.loads(line)
            if key in event:
                return event[key]
            if "error" in event:
                err = event["error"]
                raise NixHoldError(err["kind"], err["message"], err.get("exitCode"), event.get("store"))
            if "lost" in event:
                self.lost.extend(event["lost"])
                if "store" not in event:
                    self[:] = [p for p in self if p not in event["lost"]]
            elif "released" in event or "expired" in event:  # a signal, or --max-hold
                raise NixHoldError("store", f"nix-hold ended the hold ({line.decode().strip()})")
            # any other event is one a later protocol version added: not an answer

    def _release(self):
        try:
            self._channel.write(b'{"release":true}\n')
        except OSError:
            pass  # as in _ask
        self._next("released")

    def _ended(self):
        status = self._proc.wait()
        if status < 0:
            return NixHoldError("store", f"nix-hold was killed by {signal.Signals(-status).name}; nothing is held", 128 - status)
        return NixHoldError("store", f"nix-hold exited with status {status} without a word; nothing is held", status)


@contextlib.contextmanager
def nix_hold(command, *, store=None, nix_hold_command=("nix-hold",), env=None):
    """Runs `command` under nix-hold and yields the held output paths: a Hold, which is a list.

    `store` is the store URL to build in and hold on (nix-hold --store).
    """
    ours, theirs = socket.socketpair()
    with ours:
        store_flags = [] if store is None else ["--store", store]
        with theirs:  # closed here, whether nix-hold starts or not
            proc = subprocess.Popen(
                [*nix_hold_command, "--fd", str(theirs.fileno()), *store_flags, "--", *command],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                env=env,
            )
        # only the child keeps that end now: its EOF is our signal, and ours is its
        channel = ours.makefile("rwb", buffering=0)
        try:
            hold = Hold(proc, channel)
            hold.extend(hold._next("built"))
            yield hold
            hold._release()
        finally:
            # Closing the file object alone leaves the socket open (it only drops a reference),
            # and nix-hold would wait for our EOF as long as we wait for its exit. On an exception
            # in the block this EOF is the release: nix-hold lets go of everything and exits.
            channel.close()
            ours.close()
            proc.wait()


def hold_for_this_process(command, *, store=None, nix_hold_command=("nix-hold",), env=None):
    """Runs `command` under `nix-hold --for` this process and returns the held output paths.

    They stay held until this process exits, however it exits; there is nothing to release:

        paths = hold_for_this_process(["nix-build", "default.nix", "-A", "thing"])

    A failed build raises subprocess.CalledProcessError with the build's exit status; the build's
    progress and nix-hold's messages go to this process's stderr.
    """
    store_flags = [] if store is None else ["--store", store]
    done = subprocess.run(
        [*nix_hold_command, "--for", str(os.getpid()), *store_flags, "--", *command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        check=True,
    )
    return done.stdout.split()
