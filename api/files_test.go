package api

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestMain runs the tests in a directory that holds the files their
// bodies name ("k", "r.ext4"), since PUT /boot-source and PUT /drives
// check them, and a link to testdata.
func TestMain(m *testing.M) {
	os.Exit(runInFiles(m))
}

func runInFiles(m *testing.M) int {
	dir, err := os.MkdirTemp("", "flint-api-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	for _, name := range []string{"k", "i", "r.ext4"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(name), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	// The fuzz targets' kept corpus (testdata/fuzz) is read relative to
	// the working directory: a link keeps it found after the Chdir.
	wd, err := os.Getwd()
	if err == nil {
		err = os.Symlink(filepath.Join(wd, "testdata"), filepath.Join(dir, "testdata"))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := os.Chdir(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// TestPutChecksFiles: PUT /boot-source and PUT /drives/{id} check the
// files at once, as Firecracker does: 400 naming the field, with the
// phrases Firecracker's API tests match on, and the configuration keeps
// its previous value.
func TestPutChecksFiles(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	_, c, _ := serve(t, Options{Controller: &fakeVM{}, ID: "vm1", Version: "v9"})
	cases := []struct{ path, body, want string }{
		{"/boot-source", `{"kernel_image_path": "foo.bar"}`,
			"boot-source.kernel_image_path: foo.bar: The kernel file cannot be opened: No such file or directory (os error 2)"},
		{"/boot-source", `{"kernel_image_path": "k", "initrd_path": "nope"}`,
			"boot-source.initrd_path: nope: The initrd file cannot be opened: No such file or directory (os error 2)"},
		{"/boot-source", `{"kernel_image_path": "."}`, "boot-source.kernel_image_path: . is a directory, not a regular file"},
		{"/boot-source", `{"kernel_image_path": "` + fifo + `"}`, "is a FIFO, not a regular file"},
		{"/drives/rootfs", `{"drive_id": "rootfs", "path_on_host": "foo.bar", "is_root_device": true}`,
			"drives.path_on_host: foo.bar: No such file or directory (os error 2)"},
		{"/drives/rootfs", `{"drive_id": "rootfs", "path_on_host": "` + fifo + `", "is_root_device": true}`,
			"is a FIFO, not a regular file or block device"},
	}
	for _, tc := range cases {
		if msg := c.fault("PUT", tc.path, tc.body, tc.want); strings.Contains(msg, "\n") {
			t.Errorf("%s: %q is more than one line", tc.path, msg)
		}
	}
	got := c.ok(200, "GET", "/vm/config", "")
	if strings.Contains(got, "boot-source") || !strings.Contains(got, `"drives":[]`) {
		t.Fatalf("refused PUTs changed the configuration: %s", got)
	}
	c.ok(204, "PUT", "/boot-source", `{"kernel_image_path": "k", "initrd_path": "i"}`)
	c.ok(204, "PUT", "/drives/rootfs", `{"drive_id": "rootfs", "path_on_host": "r.ext4", "is_root_device": true}`)
	// A bad path later leaves the good one in place.
	c.fault("PUT", "/boot-source", `{"kernel_image_path": "gone"}`, "The kernel file cannot be opened")
	if got := c.ok(200, "GET", "/vm/config", ""); !strings.Contains(got, `"kernel_image_path":"k"`) {
		t.Fatalf("vm config after a refused PUT: %s", got)
	}
}
