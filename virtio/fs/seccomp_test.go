package fs

import (
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/internal/seccomp"
	"github.com/flintvm/flint/internal/testenv"
)

// seccompChildEnv makes the re-executed test binary serve requests under
// Flint's filter.
const seccompChildEnv = "FLINT_FS_SECCOMP_CHILD"

// TestUnderSeccomp: with seccomp.Options{FileServer: true} the device
// serves every operation under Flint's filter in kill mode (a call the
// filter lacks would kill the child with SIGSYS); without the option the
// first file-serving call kills it.
func TestUnderSeccomp(t *testing.T) {
	if what := os.Getenv(seccompChildEnv); what != "" {
		os.Exit(seccompChild(t, what))
	}
	for _, c := range []struct {
		what   string
		killed bool
	}{{"fileserver", false}, {"plain", true}} {
		t.Run(c.what, func(t *testing.T) {
			ws, out := testenv.RunSelf(t, "TestUnderSeccomp", seccompChildEnv+"="+c.what)
			switch {
			case c.killed && !(ws.Signaled() && ws.Signal() == syscall.SIGSYS):
				t.Fatalf("want death by SIGSYS, got exit %d, signal %v: %s", ws.ExitStatus(), ws.Signal(), out)
			case !c.killed && (ws.Signaled() || ws.ExitStatus() != 0):
				t.Fatalf("want exit 0, got exit %d, signal %v: %s", ws.ExitStatus(), ws.Signal(), out)
			}
		})
	}
}

// seccompChild sets a device up, installs the filter and runs a session
// of every served operation; it returns the exit code.
func seccompChild(t *testing.T, what string) int {
	g := newSyncGuest(t, Config{})
	writeFile(t, g.path("f"), pattern(10000))
	os.Mkdir(g.path("d"), 0o755)
	uid := uint32(os.Getuid()) // getuid is not allowed after Install
	if err := seccomp.InstallWith(seccomp.Options{Mode: seccomp.Kill, FileServer: what == "fileserver"}); err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		return 3
	}
	f := g.mustLookup(rootID, "f")
	fh, e := g.open(f, unix.O_RDWR, false)
	if e != 0 {
		return 4
	}
	if b, e := g.read(fh, 100, 4096); e != 0 || len(b) != 4096 {
		return 5
	}
	if _, e := g.write(fh, 5, pattern(8192)); e != 0 {
		return 6
	}
	d := g.mustLookup(rootID, "d")
	steps := []struct {
		op   uint32
		node uint64
		args [][]byte
	}{
		{opGetattr, f, [][]byte{make([]byte, 16)}},
		{opSetattr, f, [][]byte{func() []byte {
			b := setattrIn(fattrMode|fattrSize|fattrMtimeNow|fattrUID, 100)
			put32(b, 60, 0o640)
			put32(b, 68, uid)
			return b
		}()}},
		{opFsync, 0, [][]byte{le(fh, uint32(0), uint32(0))}},
		{opFallocate, 0, [][]byte{le(fh, uint64(0), uint64(65536), uint32(0), uint32(0))}},
		{opLseek, 0, [][]byte{le(fh, uint64(0), uint32(unix.SEEK_HOLE), uint32(0))}},
		{opStatfs, rootID, nil},
		{opMkdir, d, [][]byte{le(uint32(0o700), uint32(0)), cname("sub")}},
		{opMknod, d, [][]byte{le(uint32(unix.S_IFREG|0o600), uint32(0), uint32(0), uint32(0)), cname("n")}},
		{opSymlink, d, [][]byte{cname("s"), cname("../f")}},
		{opLink, d, [][]byte{le(f), cname("l")}},
		{opRename2, d, [][]byte{le(uint64(rootID), uint32(0), uint32(0)), cname("l"), cname("l2")}},
		{opUnlink, rootID, [][]byte{cname("l2")}},
		{opRmdir, d, [][]byte{cname("sub")}},
	}
	for i, s := range steps {
		if e, _ := g.call(s.op, s.node, entryOutLen+openOutLen, s.args...); e != 0 {
			os.Stderr.WriteString("step failed\n")
			return 10 + i
		}
	}
	if _, _, e := g.create(d, "c", unix.O_RDWR|unix.O_EXCL, 0o600); e != 0 {
		return 30
	}
	dfh, e := g.open(rootID, unix.O_RDONLY, true)
	if e != 0 || len(g.readdir(dfh, true, 4096)) != 4 {
		return 31
	}
	g.release(dfh, true)
	g.release(fh, false)
	g.forget(f, 100)
	return 0
}
