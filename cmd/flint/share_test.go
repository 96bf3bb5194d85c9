package main

import (
	"path"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseShare: no --share value panics, and an accepted one names an
// absolute host directory and a clean absolute guest directory other
// than /.
func FuzzParseShare(f *testing.F) {
	for _, s := range []string{"/tmp:/mnt", "/tmp:/mnt:rw", "/tmp:/mnt:ro", ".:/src", "/tmp:mnt", "/tmp:/", ":/x", "/tmp:/a/../b", "a:b:c:d", "/tmp:/caf\xe9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		s, err := parseShare(v)
		if err != nil {
			if strings.Count(err.Error(), "\n") != 0 {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if !path.IsAbs(s.host) || !path.IsAbs(s.guest) || path.Clean(s.guest) != s.guest || s.guest == "/" || !utf8.ValidString(s.guest) {
			t.Fatalf("%q accepted as %+v", v, s)
		}
	})
}

// TestParseShareNotUTF8: a guest directory that is not UTF-8 is refused
// with one line (the agent's mount table is JSON text), not mounted at a
// name with U+FFFD in place of its bytes.
func TestParseShareNotUTF8(t *testing.T) {
	_, err := parseShare(t.TempDir() + ":/mnt/caf\xe9")
	if err == nil || !strings.Contains(err.Error(), "UTF-8") || strings.Contains(err.Error(), "\n") {
		t.Errorf("error %v, want one line naming UTF-8", err)
	}
}
