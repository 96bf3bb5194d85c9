package main

import (
	"path"
	"strings"
	"testing"
)

// FuzzParseShare: no --share value panics, and an accepted one names an
// absolute host directory and a clean absolute guest directory other
// than /.
func FuzzParseShare(f *testing.F) {
	for _, s := range []string{"/tmp:/mnt", "/tmp:/mnt:rw", "/tmp:/mnt:ro", ".:/src", "/tmp:mnt", "/tmp:/", ":/x", "/tmp:/a/../b", "a:b:c:d"} {
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
		if !path.IsAbs(s.host) || !path.IsAbs(s.guest) || path.Clean(s.guest) != s.guest || s.guest == "/" {
			t.Fatalf("%q accepted as %+v", v, s)
		}
	})
}
