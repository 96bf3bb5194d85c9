package fs

import (
	"testing"

	"golang.org/x/sys/unix"
)

// modeOf is the host file's permission and set-ID bits.
func modeOf(t *testing.T, p string) uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Mode & 0o7777
}

// TestGuestSetsNoSetID: the files the guest makes are the VMM's user's
// (root, often), so no mode the guest gives (CREATE, MKNOD, MKDIR,
// SETATTR) may make one set-user-ID, or set-group-ID (a directory keeps
// set-group-ID: it only hands its group down).
func TestGuestSetsNoSetID(t *testing.T) {
	g := newGuest(t, Config{Root: t.TempDir()})
	const setID = unix.S_ISUID | unix.S_ISGID
	if _, _, e := g.create(rootID, "created", unix.O_RDWR, setID|0o755); e != 0 {
		t.Fatalf("CREATE: errno %d", e)
	}
	g.must(g.call(opMknod, rootID, entryOutLen, le(uint32(unix.S_IFREG|setID|0o755), uint32(0), uint32(0), uint32(0)), cname("made")))
	g.must(g.call(opMkdir, rootID, entryOutLen, le(uint32(setID|0o755), uint32(0)), cname("dir")))
	writeFile(t, g.path("chmodded"), []byte("#!/bin/sh\n"))
	for _, name := range []string{"chmodded", "dir"} {
		in := setattrIn(fattrMode, 0)
		put32(in, 68, setID|0o755)
		g.must(g.call(opSetattr, g.mustLookup(rootID, name), attrOutLen, in))
	}
	for name, want := range map[string]uint32{"created": 0o755, "made": 0o755, "chmodded": 0o755, "dir": unix.S_ISGID | 0o755} {
		if got := modeOf(t, g.path(name)); got != want {
			t.Errorf("%s: mode %#o, want %#o", name, got, want)
		}
	}
}

// TestWriteDropsSetID: a host set-ID program the guest opens for writing
// (or truncates) loses its set-ID bits first, so the guest cannot put its
// code into it; opened to read it keeps them, and set-group-ID without
// group execute (no program's) stays.
func TestWriteDropsSetID(t *testing.T) {
	g := newGuest(t, Config{Root: t.TempDir()})
	mk := func(name string, mode uint32) uint64 {
		writeFile(t, g.path(name), []byte("#!/bin/sh\n"))
		if err := unix.Chmod(g.path(name), mode); err != nil {
			t.Fatal(err)
		}
		return g.mustLookup(rootID, name)
	}
	const suid = unix.S_ISUID | unix.S_ISGID | 0o755
	read := mk("read", suid)
	fh, e := g.open(read, unix.O_RDONLY, false)
	if e != 0 {
		t.Fatalf("OPEN to read: errno %d", e)
	}
	g.release(fh, false)
	written := mk("written", suid)
	if fh, e = g.open(written, unix.O_WRONLY, false); e != 0 {
		t.Fatalf("OPEN to write: errno %d", e)
	}
	g.release(fh, false)
	truncated := mk("truncated", suid)
	g.must(g.call(opSetattr, truncated, attrOutLen, setattrIn(fattrSize, 0)))
	lock := mk("lock", unix.S_ISGID|0o644) // set-group-ID without group execute: no program's
	if fh, e = g.open(lock, unix.O_RDWR, false); e != 0 {
		t.Fatalf("OPEN read-write: errno %d", e)
	}
	g.release(fh, false)
	for name, want := range map[string]uint32{"read": suid, "written": 0o755, "truncated": 0o755, "lock": unix.S_ISGID | 0o644} {
		if got := modeOf(t, g.path(name)); got != want {
			t.Errorf("%s: mode %#o, want %#o", name, got, want)
		}
	}
}
