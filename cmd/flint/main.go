// Command flint is the Flint microVM monitor's command line: it turns flags
// into a vmm.Config, runs the VM, and maps how it ended to an exit code. It
// holds no VM logic of its own.
package main

import (
	"os"
)

func main() {
	os.Exit(newApp(os.Stdout, os.Stderr, launchVM).run(os.Args))
}
