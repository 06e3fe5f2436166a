// Builds under nix-hold, says what is held, and releases when a line arrives on stdin. With
// -for first, the outputs are held for as long as this program runs instead, and go when it exits.
//
//	go run . nix build -f ../../test/fixtures/demo.nix
//	go run . -for nix-build ../../test/fixtures/demo.nix
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
	if len(os.Args) > 1 && os.Args[1] == "-for" {
		paths, err := nixhold.BuildFor(context.Background(), os.Args[2:]...)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("held " + strings.Join(paths, " "))
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		return
	}
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
