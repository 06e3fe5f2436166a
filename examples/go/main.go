// Builds under nix-hold, says what is held, and releases when a line arrives on stdin.
//
//	go run . nix build -f ../../test/fixtures/demo.nix
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"

	"example.invalid/nixhold-example/nixhold"
)

func main() {
	h, err := nixhold.Build(context.Background(), os.Args[1:]...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("held " + strings.Join(h.Paths, " "))
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // stands in for the work that needs the paths
	if err := h.Release(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("released")
}
