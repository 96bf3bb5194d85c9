package configs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestCheckFiles: every input file a config names is checked, and the
// error names the JSON path, the file and the problem on one line.
func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	cfg := func(kernel, initrd string, drives ...string) *VMConfig {
		c := &VMConfig{BootSource: &BootSource{KernelImagePath: kernel, InitrdPath: initrd}}
		for _, d := range drives {
			c.Drives = append(c.Drives, Drive{DriveID: "d", PathOnHost: d})
		}
		return c
	}
	cases := []struct {
		c          *VMConfig
		path, want string
	}{
		{cfg(file, ""), "", ""},
		{cfg(file, file, file, file), "", ""},
		{cfg(missing, ""), "boot-source.kernel_image_path", "boot-source.kernel_image_path: " + missing + ": The kernel file cannot be opened: No such file or directory (os error 2)"},
		{cfg(dir, ""), "boot-source.kernel_image_path", dir + " is a directory, not a regular file"},
		{cfg(file, missing), "boot-source.initrd_path", "boot-source.initrd_path: " + missing + ": The initrd file cannot be opened: No such file or directory (os error 2)"},
		{cfg(file, fifo), "boot-source.initrd_path", fifo + " is a FIFO, not a regular file"},
		{cfg(file, "", file, missing), "drives[1].path_on_host", "drives[1].path_on_host: " + missing + ": No such file or directory (os error 2)"},
		{cfg(file, "", fifo), "drives[0].path_on_host", fifo + " is a FIFO, not a regular file or block device"},
		{cfg(file, "", ""), "drives[0].path_on_host", "drives[0].path_on_host: empty path"},
	}
	for i, tc := range cases {
		err := tc.c.CheckFiles()
		if tc.want == "" {
			if err != nil {
				t.Errorf("case %d: %v", i, err)
			}
			continue
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Path != tc.path || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("case %d: got %v, want %s: ...%s", i, err, tc.path, tc.want)
		}
	}
	if _, err := os.Stat("/dev/null"); err == nil {
		d := Drive{PathOnHost: "/dev/null"}
		if err := d.CheckFile("drives"); err == nil || !strings.Contains(err.Error(), "a character device") {
			t.Errorf("/dev/null as a drive: %v", err)
		}
	}
}
