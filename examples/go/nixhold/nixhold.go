// Package nixhold runs a Nix build under nix-hold and keeps its outputs alive until Release,
// or (BuildFor) for as long as this process runs.
//
//	h, err := nixhold.Build(ctx, "nix", "build", ".#thing")
//	if err != nil { ... }
//	defer h.Release()
//	use(h.Paths)
//
// The outputs are held by nix-hold's daemon connection; if this process dies, nix-hold sees the
// socket close and releases them. Nothing is written to disk.
package nixhold

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// Error is an error nix-hold reported; Kind is build, protocol, store or usage.
type Error struct {
	Kind     string `json:"kind"`
	Message  string `json:"message"`
	ExitCode *int   `json:"exitCode,omitempty"`
}

func (e *Error) Error() string { return e.Kind + ": " + e.Message }

// Hold is a running nix-hold keeping Paths alive.
type Hold struct {
	Paths   []string
	cmd     *exec.Cmd
	channel *os.File
	lines   *bufio.Reader
}

// Command is how nix-hold is started; replace it to use another path.
var Command = []string{"nix-hold"}

// Build runs command (nix build … or nix-build …) under nix-hold and returns once every output is
// valid and held.
func Build(ctx context.Context, command ...string) (*Hold, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	ours := os.NewFile(uintptr(fds[0]), "nix-hold channel")
	theirs := os.NewFile(uintptr(fds[1]), "nix-hold channel (child end)")

	// ExtraFiles[0] becomes fd 3 in the child
	args := append(append(append([]string{}, Command[1:]...), "--fd", "3", "--"), command...)
	cmd := exec.CommandContext(ctx, Command[0], args...)
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = []*os.File{theirs}
	if err := cmd.Start(); err != nil {
		ours.Close()
		theirs.Close()
		return nil, err
	}
	theirs.Close() // only the child keeps that end, so each side sees the other's EOF

	h := &Hold{cmd: cmd, channel: ours, lines: bufio.NewReader(ours)}
	var event struct {
		Built []string `json:"built"`
		Error *Error   `json:"error"`
	}
	line, err := h.lines.ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &event)
	}
	switch {
	case err != nil:
		h.close()
		return nil, fmt.Errorf("nix-hold: %w", err)
	case event.Error != nil:
		h.close()
		return nil, event.Error
	}
	h.Paths = event.Built
	return h, nil
}

// Release drops the hold and waits for nix-hold to exit.
func (h *Hold) Release() error {
	if _, err := h.channel.Write([]byte("{\"release\":true}\n")); err != nil {
		h.close()
		return err
	}
	_, _ = h.lines.ReadBytes('\n') // {"released":true}
	return h.close()
}

func (h *Hold) close() error {
	h.channel.Close()
	return h.cmd.Wait()
}

// BuildFor runs command under `nix-hold --for` this process and returns the held outputs. They
// stay held until this process exits, however it exits; there is nothing to release.
//
//	paths, err := nixhold.BuildFor(ctx, "nix-build", "default.nix", "-A", "thing")
func BuildFor(ctx context.Context, command ...string) ([]string, error) {
	args := append(append(append([]string{}, Command[1:]...), "--for", strconv.Itoa(os.Getpid()), "--"), command...)
	cmd := exec.CommandContext(ctx, Command[0], args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("nix-hold: %w", err)
	}
	return strings.Fields(string(out)), nil
}
