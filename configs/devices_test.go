package configs

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestDeviceCount: a config with more virtio devices on a transport than
// Flint has room for is refused when it is decoded (exit code 2, PUT 400
// at once), naming the first device over the limit and the limit; it
// failed only when the VM was built ("pci: bus 0 is full", exit 1).
func TestDeviceCount(t *testing.T) {
	doc := func(drives int, flint string) string {
		var d []string
		for i := range drives {
			d = append(d, fmt.Sprintf(`{"drive_id": "d%d", "path_on_host": "/p", "is_root_device": false}`, i))
		}
		return `{"boot-source": {"kernel_image_path": "k"}, "drives": [` + strings.Join(d, ", ") + `]` + flint + `}`
	}
	for _, tc := range []struct {
		name, doc, path, want string
	}{
		{"31 drives", doc(31, ""), "", ""},
		{"40 drives", doc(40, ""), "drives[31]", "drives[31] is virtio device 32 on the pci transport: at most 31 fit"},
		{"31 drives and entropy", doc(31, `, "entropy": {}`), "entropy", "at most 31"},
		{"one mmio drive of 32", doc(32, `, "flint": {"drives": {"d5": {"transport": "mmio"}}}`), "", ""},
		{"10 mmio drives", doc(10, `, "flint": {"drives": {"d0": {"transport": "mmio"}, "d1": {"transport": "mmio"}, "d2": {"transport": "mmio"},
			"d3": {"transport": "mmio"}, "d4": {"transport": "mmio"}, "d5": {"transport": "mmio"}, "d6": {"transport": "mmio"},
			"d7": {"transport": "mmio"}, "d8": {"transport": "mmio"}, "d9": {"transport": "mmio"}}}`), "drives[9]", "on the mmio transport: at most 9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeVMConfig([]byte(tc.doc))
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Path != tc.path || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want a FieldError at %s containing %q", err, tc.path, tc.want)
			}
		})
	}
}
