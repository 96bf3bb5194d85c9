package api

import (
	"strings"
	"testing"
)

// TestPathSlashes: Firecracker's router trims leading slashes and ignores
// one trailing slash, so clients that join URLs with an extra '/' work
// there; they work here too (they were 400 "Invalid request method and/or
// path"). An empty id is still no id.
func TestPathSlashes(t *testing.T) {
	_, c, _ := serve(t, Options{Controller: &fakeVM{}, ID: "vm1", Version: "v9"})
	c.ok(204, "PUT", "/machine-config/", `{"vcpu_count": 2, "mem_size_mib": 256}`)
	c.ok(204, "PATCH", "//machine-config", `{"mem_size_mib": 512}`)
	c.ok(204, "PUT", "/drives/rootfs/", `{"drive_id": "rootfs", "path_on_host": "r.ext4", "is_root_device": true}`)
	c.ok(200, "GET", "//", "")
	if out := c.ok(200, "GET", "/vm/config/", ""); !strings.Contains(out, `"mem_size_mib":512`) || !strings.Contains(out, `"drive_id":"rootfs"`) {
		t.Fatalf("GET /vm/config/: %s", out)
	}
	c.fault("PUT", "/drives//", `{"drive_id": "x", "path_on_host": "r.ext4", "is_root_device": false}`, "Invalid request method and/or path")
	c.fault("PUT", "/drives/a//", `{"drive_id": "a", "path_on_host": "r.ext4", "is_root_device": false}`, `API Resource IDs can only contain alphanumeric characters and underscores. (the path's id "a/"`)
}

// TestPathFaultOneLine: a path that matches no endpoint is named in the
// fault quoted when it holds a control character (a %0A decodes to a
// newline), so the message, which is also logged, stays one line; a
// plain path is written as it is, as in Firecracker's phrase.
func TestPathFaultOneLine(t *testing.T) {
	_, c, _ := serve(t, Options{Controller: &fakeVM{}, ID: "vm1", Version: "v9"})
	for _, tc := range []struct{ method, path, want string }{
		{"GET", "/no%0Ape", `Invalid request method and/or path: GET "/no\npe"`},
		{"GET", "/nope", "Invalid request method and/or path: GET /nope."}, // Firecracker's, to the period
		{"PUT", "/pmem/a%0Db", `PUT "/pmem/a\rb" is not supported`},
	} {
		if msg := c.fault(tc.method, tc.path, "", tc.want); strings.ContainsAny(msg, "\r\n") {
			t.Errorf("%s %s: %q spans lines", tc.method, tc.path, msg)
		}
	}
}

// TestPathIDRule: the API keeps its id rule for the ids in its paths
// (letters, digits, '_', at most 64), which a config file's ids need not
// follow: configs no longer applies it when decoding a drive or an
// interface, the API does.
func TestPathIDRule(t *testing.T) {
	_, c, _ := serve(t, Options{Controller: &fakeVM{}, ID: "vm1", Version: "v9"})
	// Firecracker's words, then Flint's.
	c.fault("PUT", "/drives/root-fs", `{"drive_id": "root-fs", "path_on_host": "r.ext4", "is_root_device": true}`,
		`API Resource IDs can only contain alphanumeric characters and underscores. (the path's id "root-fs": want 1 to 64 letters, digits or underscores)`)
	c.fault("PUT", "/network-interfaces/eth-0", `{"iface_id": "eth-0", "host_dev_name": "tap0"}`,
		`API Resource IDs can only contain alphanumeric characters and underscores. (the path's id "eth-0": want 1 to 64`)
	// A body's id that breaks the rule differs from the path's; the
	// message shows it on one line.
	if msg := c.fault("PUT", "/network-interfaces/eth0", `{"iface_id": "a\nb", "host_dev_name": "tap0"}`,
		`The id from the path [eth0] does not match the id from the body ["a\nb"]!`); strings.ContainsAny(msg, "\r\n") {
		t.Errorf("%q spans lines", msg)
	}
	c.fault("PUT", "/drives/rootfs", `{"drive_id": "root-fs", "path_on_host": "r.ext4", "is_root_device": true}`, "The id from the path does not match the id from the body!")
	long := strings.Repeat("d", 65)
	c.fault("PUT", "/drives/"+long, `{"drive_id": "`+long+`", "path_on_host": "r.ext4", "is_root_device": true}`, "want 1 to 64")
	// 21 to 64 bytes is an API id (the disk serial is its first 20).
	id := strings.Repeat("d", 64)
	c.ok(204, "PUT", "/drives/"+id, `{"drive_id": "`+id+`", "path_on_host": "r.ext4", "is_root_device": true}`)
}
