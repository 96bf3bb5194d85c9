// Command flint is the Flint microVM monitor's command line: it turns flags
// into a vmm.Config, runs the VM, and maps how it ended to an exit code. It
// holds no VM logic of its own.
//
// The same binary is command mode's guest agent: started as /init inside a
// guest that Flint booted with its generated initramfs, it runs package agent
// instead of the CLI (agent.IsAgent).
package main

import (
	"os"

	"github.com/flintvm/flint/agent"
)

func main() {
	if agent.IsAgent() {
		agent.Main() // never returns
	}
	os.Exit(newApp(os.Stdout, os.Stderr, launchVM).run(os.Args))
}
