// Command umlexec runs Debian's stock User-Mode-Linux kernel with the
// ptrace regset it cannot use on some hosts refused (package
// internal/umlhost says why): `umlexec linux.uml ARGS...`.
package main

import (
	"fmt"
	"os"

	"github.com/flintvm/flint/internal/umlhost"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" {
		fmt.Fprintln(os.Stderr, "usage: umlexec PROGRAM [ARGS...]  (runs PROGRAM with ptrace NT_X86_XSTATE regsets refused)")
		os.Exit(2)
	}
	fmt.Fprintln(os.Stderr, umlhost.Exec(os.Args[1:]))
	os.Exit(127)
}
