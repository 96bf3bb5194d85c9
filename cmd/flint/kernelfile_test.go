package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/flintvm/flint/api"
	"github.com/flintvm/flint/boot"
	"github.com/flintvm/flint/vmm/vmmtest"
)

// debugVmlinux writes tinyELF grown to size bytes by a sparse tail, as
// debug sections grow a kernel developer's vmlinux (no disk is used), and
// returns its path and the ELF's own bytes.
func debugVmlinux(t *testing.T, size int64, change func(b []byte)) (string, []byte) {
	t.Helper()
	b := tinyELF("Linux version 6.1.0-dbg (dev@box) (gcc) #1 SMP\n")
	if change != nil {
		change(b)
	}
	p := writeFile(t, "vmlinux", b)
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	return p, b
}

// checkCompactKernel checks that the kernel a VM got is the compact image
// of the ELF elf: its segment's bytes, far less than the file.
func checkCompactKernel(t *testing.T, got, elf []byte) {
	t.Helper()
	k, err := boot.ParseELF(got)
	if err != nil {
		t.Fatalf("the VM's kernel: %v", err)
	}
	if len(got) > 64<<10 || len(k.Segments) != 1 || !bytes.Equal(got[k.Segments[0].Offset:][:k.Segments[0].Filesz], elf[0x1000:]) {
		t.Fatalf("the VM's kernel is %d bytes, segments %+v", len(got), k.Segments)
	}
}

// TestKernelDebugVmlinux: a 3 GiB vmlinux (over the 512 MiB limit, which
// bounds the bytes held, not the file) is read as its compact image by
// every way of naming a kernel: --kernel, a config file, the API.
func TestKernelDebugVmlinux(t *testing.T) {
	p, elf := debugVmlinux(t, 3<<30, nil)
	code, _, stderr, cfg := runArgs(t, "run", "--kernel", p)
	if code != 0 || cfg == nil {
		t.Fatalf("--kernel: code %d: %s", code, stderr)
	}
	checkCompactKernel(t, cfg.Kernel, elf)

	conf := configFile(t, fmt.Sprintf(`{"boot-source": {"kernel_image_path": %q}}`, p))
	code, _, stderr, cfg = runArgs(t, "run", "--config", conf)
	if code != 0 || cfg == nil {
		t.Fatalf("--config: code %d: %s", code, stderr)
	}
	checkCompactKernel(t, cfg.Kernel, elf)

	sock, exit, built, _, apiErr := apiApp(t, "--console", "none")
	c := api.Client(sock)
	for _, r := range [][3]string{
		{"PUT", "/boot-source", fmt.Sprintf(`{"kernel_image_path": %q}`, p)},
		{"PUT", "/actions", `{"action_type": "InstanceStart"}`},
	} {
		if st, out := call(t, c, r[0], r[1], r[2]); st != 204 {
			t.Fatalf("%s %s: %d %s", r[0], r[1], st, out)
		}
	}
	got := <-built
	checkCompactKernel(t, got.Kernel, elf)
	call(t, c, "PUT", "/actions", `{"action_type": "SendCtrlAltDel"}`)
	select {
	case <-exit:
	case <-time.After(10 * time.Second):
		t.Fatalf("flint did not exit after the guest reset: %s", apiErr)
	}
}

// TestKernelFileErrors: a malformed ELF vmlinux of any size, and a bzImage
// over the limit, are one line naming the file and the problem, exit 2.
func TestKernelFileErrors(t *testing.T) {
	le := binary.LittleEndian
	outside, _ := debugVmlinux(t, 1<<30, func(b []byte) { le.PutUint64(b[64+8:], 2<<30) }) // p_offset past the file
	huge, _ := debugVmlinux(t, 2<<40, func(b []byte) {
		le.PutUint64(b[64+32:], 1<<40) // a TiB of segment in a 2 TiB file
		le.PutUint64(b[64+40:], 1<<40)
	})
	phdrs, _ := debugVmlinux(t, 1<<20, func(b []byte) { le.PutUint16(b[56:], 200) })
	bz := writeFile(t, "bzImage", []byte("MZ not an ELF"))
	if err := os.Truncate(bz, 600<<20); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, path, want string }{
		{"segment outside the file", outside, outside + ": kernel: ELF program header 0: file range [0x80000000, +0x30) is outside the 1073741824-byte file"},
		{"segments over the limit", huge, huge + ": ELF kernel's loadable segments and notes are 1048576 MiB, more than the 512 MiB limit"},
		{"absurd program header count", phdrs, phdrs + ": kernel: ELF has 200 program headers, Flint reads at most 64"},
		{"bzImage over the limit", bz, bz + ": 600 MiB is too large (limit 512 MiB)"},
	} {
		t.Run(c.name, func(t *testing.T) { wantUsageError(t, []string{"run", "--kernel", c.path}, "--kernel: "+c.want) })
	}
}

// TestAPIModeReadsKernelOnce: `flint run --api-sock --kernel K` reads K
// before it listens, to refuse a bad one at once; InstanceStart boots
// those bytes. It read K again: a file replaced in between (here by
// garbage) was checked in one version and booted in another, and a large
// kernel was read twice.
func TestAPIModeReadsKernelOnce(t *testing.T) {
	orig := vmmtest.BzImage(vmmtest.Spin)
	k := writeFile(t, "bzImage", orig)
	sock, exit, built, _, apiErr := apiApp(t, "--kernel", k, "--console", "none")
	if err := os.WriteFile(k, []byte("not a kernel any more"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := api.Client(sock)
	// The client names a kernel too; --kernel wins over it.
	other := writeFile(t, "other", vmmtest.BzImage(vmmtest.PowerOffViaACPI))
	for _, r := range [][2]string{
		{"/boot-source", fmt.Sprintf(`{"kernel_image_path": %q}`, other)},
		{"/actions", `{"action_type": "InstanceStart"}`},
	} {
		if st, out := call(t, c, "PUT", r[0], r[1]); st != 204 {
			t.Fatalf("PUT %s: %d %s", r[0], st, out)
		}
	}
	if got := <-built; !bytes.Equal(got.Kernel, orig) {
		t.Errorf("the VM got %d bytes (%.20q), want the %d checked before listening", len(got.Kernel), got.Kernel, len(orig))
	}
	call(t, c, "PUT", "/actions", `{"action_type": "SendCtrlAltDel"}`)
	select {
	case <-exit:
	case <-time.After(10 * time.Second):
		t.Fatalf("flint did not exit after the guest reset: %s", apiErr)
	}
}
