package verdict

import (
	"reflect"
	"strings"
	"testing"
)

// TestPrintkTime: the last printk.time the kernel takes decides, as Linux
// parses its command line (quotes, a bare bool, values it rejects, init's
// arguments after "--").
func TestPrintkTime(t *testing.T) {
	for _, tc := range []struct {
		cmdline string
		on, set bool
	}{
		{"", false, false},
		{"console=ttyS0 reboot=k", false, false},
		{"console=ttyS0 " + KernelArgs, true, true},
		{KernelArgs + " printk.time=0", false, true},
		{KernelArgs + " printk.time=n", false, true},
		{KernelArgs + " printk.time=N", false, true},
		{KernelArgs + " printk.time=off", false, true},
		{KernelArgs + " printk.time=false", false, true},
		{KernelArgs + " printk.time=disable", false, true},
		{"printk.time=0 printk.time=1", true, true},
		{"printk.time=0 printk.time", true, true},
		{"printk.time=0 printk.time=Yes", true, true},
		{"printk.time=0 printk.time=on", true, true},
		// Rejected values leave the earlier one.
		{"printk.time=1 printk.time=x", true, true},
		{"printk.time=1 printk.time=", true, true},
		{"printk.time=1 printk.time=o", true, true},
		{"printk.time=x", false, false},
		// Quotes: the kernel removes them.
		{`printk.time=1 printk.time="0"`, false, true},
		{`printk.time=1 "printk.time=0"`, false, true},
		{`printk.time=1 "printk.time=0 x"`, false, true},
		{`printk.time=1 x="a printk.time=0"`, true, true},
		// Other parameters and init's arguments.
		{"printk.time=1 printk.times=0 xprintk.time=0 printk.time0", true, true},
		{"printk.time=1 -- printk.time=0", true, true},
		{"printk.time=1 --=x printk.time=0", false, true},
		{"\tprintk.time=1\n printk.time=0  \r", false, true},
	} {
		on, set := PrintkTime(tc.cmdline)
		if on != tc.on || set != tc.set {
			t.Errorf("%q: on %v set %v, want %v %v", tc.cmdline, on, set, tc.on, tc.set)
		}
	}
}

// TestUnstampedConsole: with the kernel's timestamps off, a program's line
// that starts with "[1.0] " does not switch the scanner to ignoring
// unstamped lines, the kernel's oops after it among them; stamped lines
// still count (a guest may turn stamps on at run time). Without
// Limits.Unstamped the scanner cannot tell that console from a stamped
// kernel's and ignores the oops (which is right when the kernel stamps).
func TestUnstampedConsole(t *testing.T) {
	log := "Run /init as init process\n" +
		"[1.0] test 1 of 3\n" +
		"BUG: kernel NULL pointer dereference, address: 0000000000000000\n" +
		"Oops: 0000 [#1] SMP\n" +
		"[2.0] WARNING: CPU: 0 PID: 1 at x.c:1 f\n" +
		"progress ....[    5.1] BUG: Bad page state\n"
	s := NewScanner(Limits{Unstamped: true}, nil)
	s.Write([]byte(log))
	s.Flush()
	got := s.Splats()
	if len(got) != 3 || got[0].Kind != Oops || got[0].Line != 3 || got[0].Uptime != "" ||
		got[0].Title != "BUG: kernel NULL pointer dereference, address: 0000000000000000" ||
		got[1].Kind != Warn || got[1].Uptime != "2.0" || got[2].Kind != Bug || got[2].Uptime != "5.1" {
		t.Fatalf("unstamped: %+v, want the oops on line 3, then the stamped warning and bug", got)
	}
	// Told from the console, the "[1.0]" line makes it stamped: the
	// unstamped oops is ignored, only the stamped lines count.
	if got := kindsOf(scan(t, log)); !reflect.DeepEqual(got, []Kind{Warn, Bug}) {
		t.Fatalf("stamps told from the console: %v, want the stamped warning and bug", got)
	}
}

// TestCallerIDWithoutTime: printk.time=0 on a kernel built with
// CONFIG_PRINTK_CALLER prints the caller id alone before each record.
func TestCallerIDWithoutTime(t *testing.T) {
	log := "[    T1] Run /init as init process\n[   T42] WARNING: CPU: 0 PID: 42 at x.c:1 f\n[    C0] Kernel panic - not syncing: x\n"
	for _, lim := range []Limits{{}, {Unstamped: true}} {
		s := NewScanner(lim, nil)
		s.Write([]byte(log))
		s.Flush()
		got := s.Splats()
		if len(got) != 2 || got[0].Kind != Warn || got[1].Kind != Panic || !strings.HasPrefix(got[0].Title, "WARNING: CPU") {
			t.Errorf("%+v: %+v, want a warning and a panic", lim, got)
		}
	}
}
