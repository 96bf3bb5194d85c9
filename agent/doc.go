// Package agent is Flint's guest-side init for command mode (`flint run
// --kernel K -- CMD`): the flint binary itself, started by the guest kernel as
// /init from the initramfs Flint generated, becomes this agent. It reads the
// Spec Flint wrote into that initramfs (/flint/agent.json), mounts the early
// filesystems, loads the kernel modules the guest needs in the order given,
// mounts what the host shares, brings up the interfaces, runs the command with
// its standard streams relayed through pipes to the devices the Spec names
// (streams.go: ttys in raw mode, stdin in frames so the host's EOF reaches
// the command: frame.go), telling the exit device each stage it starts, then
// reports how the command ended to Flint's exit device (devices/exitdev: one 32-bit word on an
// I/O port, no guest driver needed) and powers the guest off.
//
// Every step that fails is reported as "agent failed" with the step
// (exitdev.Stage) and the errno, so the host can tell a boot that never ran
// the command from a command that failed.
//
// The package is split so that its logic runs in ordinary tests: Spec
// decoding and validation, and the mapping of a finished command to a status
// word, are plain Go; the steps that only make sense as PID 1 in a guest
// (mounts, module loading, port I/O, power-off) are behind the System
// interface, whose real implementation is in sys_linux.go.
package agent
