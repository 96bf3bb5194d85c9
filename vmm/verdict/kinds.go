// Package verdict owns command mode's judgement of a run (`flint run
// --kernel K -- CMD`): the streaming scanner that finds kernel splats
// (panic, oops, BUG, WARNING, KASAN, KFENCE, UBSAN, lockdep, hung tasks,
// lockups, RCU stalls) in the guest's console output, the --fail-on list
// that says which of them fail a run, the exit-code scheme that maps a run's
// outcome to Flint's exit status (docs/command-mode.md has the table), and
// the --report JSON and --junit XML writers.
//
// It decides; it runs nothing. The VMM feeds it console bytes and the exit
// device's report (devices/exitdev) and acts on what it says. It imports
// nothing from the module but devices/exitdev, and never kvm.
package verdict

import (
	"fmt"
	"strings"
)

// KernelArgs are the kernel command-line arguments command mode needs for
// a trustworthy verdict: panic=-1 reboots a panicked guest at once (Debian
// builds PANIC_TIMEOUT=0: it would hang), loglevel=5 lets KERN_WARNING
// reach the console (WARN() and lockdep print at that level, which "quiet"
// hides), and printk.time=1 stamps kernel lines so the scanner can tell
// them from user output on the console.
const KernelArgs = "panic=-1 loglevel=5 printk.time=1"

// Kind is a class of kernel splat.
type Kind uint8

// Splat kinds, in the order --fail-on lists them.
const (
	// Panic: "Kernel panic - not syncing: ...".
	Panic Kind = iota
	// Oops: "Oops: ...", "general protection fault", "BUG: unable to
	// handle ...", "BUG: kernel NULL pointer dereference".
	Oops
	// Bug: any other "BUG: ..." and "kernel BUG at ...".
	Bug
	// Warn: "WARNING: ..." (usually after "------------[ cut here ]------------").
	Warn
	// KASAN: "BUG: KASAN: ..." reports.
	KASAN
	// KFENCE: "BUG: KFENCE: ..." reports.
	KFENCE
	// UBSAN: "UBSAN: ..." reports.
	UBSAN
	// Lockdep: circular or recursive locking, inconsistent lock state,
	// suspicious RCU usage and lockdep's other reports.
	Lockdep
	// Hung: "INFO: task NAME:PID blocked for more than N seconds."
	Hung
	// Lockup: soft lockups and hard (NMI watchdog) lockups.
	Lockup
	// RCU: RCU CPU stall reports ("detected stalls", "self-detected stall").
	RCU

	numKinds
)

var kindNames = [numKinds]string{
	Panic: "panic", Oops: "oops", Bug: "bug", Warn: "warn", KASAN: "kasan", KFENCE: "kfence",
	UBSAN: "ubsan", Lockdep: "lockdep", Hung: "hung", Lockup: "lockup", RCU: "rcu",
}

// String returns the kind's --fail-on name.
func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// MarshalText gives the --fail-on name, so reports spell kinds as users do.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads a kind's --fail-on name back, so Go code can decode
// a report.
func (k *Kind) UnmarshalText(b []byte) error {
	v, ok := kindByName(string(b))
	if !ok {
		return fmt.Errorf("unknown splat kind %q (valid names: %s)", b, strings.Join(kindNames[:], ", "))
	}
	*k = v
	return nil
}

// Set is a set of kinds.
type Set uint32

// All holds every kind; None holds none.
const (
	All  Set = 1<<numKinds - 1
	None Set = 0
)

// DefaultFailOn is what --fail-on means when it is not given: every kind.
// A CI job should not go green over a WARNING or a KASAN report that its
// test provoked; a user who knows a kernel warns at boot narrows it
// ("all,-warn").
const DefaultFailOn = All

// Has reports whether k is in s.
func (s Set) Has(k Kind) bool { return k < numKinds && s&(1<<k) != 0 }

// With returns s with k added.
func (s Set) With(k Kind) Set { return s | 1<<k }

// String lists s the way ParseFailOn reads it back: "all", "none", or the
// names in order, comma-separated.
func (s Set) String() string {
	switch s & All {
	case All:
		return "all"
	case None:
		return "none"
	}
	var names []string
	for k := range numKinds {
		if s.Has(k) {
			names = append(names, k.String())
		}
	}
	return strings.Join(names, ",")
}

// ParseFailOn parses a --fail-on value: comma-separated kind names (panic,
// oops, bug, warn, kasan, kfence, ubsan, lockdep, hung, lockup, rcu), "all"
// and "none", each optionally prefixed with "-" to remove it from what the
// items before it built ("all,-warn"). Case and spaces around names are
// ignored. An empty value, an empty item or an unknown name is an error
// that names the item and the valid names. A panic fails a run even when
// the set leaves it out (see Judge).
func ParseFailOn(v string) (Set, error) {
	if strings.TrimSpace(v) == "" {
		return 0, fmt.Errorf("--fail-on: empty list (use \"none\" to fail on no kernel splat; valid names: %s)", validNames())
	}
	var s Set
	for _, item := range strings.Split(v, ",") {
		name := strings.ToLower(strings.TrimSpace(item))
		remove := strings.HasPrefix(name, "-")
		name = strings.TrimSpace(strings.TrimPrefix(name, "-"))
		var bits Set
		switch name {
		case "all":
			bits = All
		case "none":
			if remove {
				return 0, fmt.Errorf("--fail-on: %q removes nothing", strings.TrimSpace(item))
			}
			s = None
			continue
		case "":
			return 0, fmt.Errorf("--fail-on %q: empty item (valid names: %s)", v, validNames())
		default:
			k, ok := kindByName(name)
			if !ok {
				return 0, fmt.Errorf("--fail-on: unknown kind %q (valid names: %s)", strings.TrimSpace(item), validNames())
			}
			bits = 1 << k
		}
		if remove {
			s &^= bits
		} else {
			s |= bits
		}
	}
	return s, nil
}

func kindByName(name string) (Kind, bool) {
	for k, n := range kindNames {
		if n == name {
			return Kind(k), true
		}
	}
	return 0, false
}

func validNames() string { return strings.Join(kindNames[:], ", ") + ", all, none" }
