package fs

// An end-to-end test with the real Linux 6.1 fuse and virtiofs drivers:
// Debian's user-mode Linux (virtio_uml is a vhost-user frontend) boots a
// busybox initramfs that mounts two of these devices served over
// vhost-user: the host's "/" read-only (it runs dynamically linked host
// programs from it, glibc and ld.so included, and tries to write) and a
// writable temp dir (it creates, writes, truncates, changes modes and
// owners, renames, links and removes).

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/internal/umlhost"
	"github.com/flintvm/flint/internal/umlhost/umltest"
)

// TestMain lets the UML test start user-mode Linux through umlhost (this
// binary, re-executed, installs umlhost's filter and executes UML).
func TestMain(m *testing.M) {
	umlhost.MaybeExec()
	os.Exit(m.Run())
}

// umlInit is the guest's /init; %s is the host directory the read-only
// share must refuse to write into.
const umlInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
insmod /lib/fuse.ko
insmod /lib/virtiofs.ko
mkdir -p /host /rw
mount -t virtiofs root /host && echo MOUNT-ROOT-OK
mount -t virtiofs rw /rw && echo MOUNT-RW-OK
echo "SUM $(chroot /host /usr/bin/sha256sum /usr/bin/linux.uml)"
echo "SH $(chroot /host /bin/sh -c 'echo $((6*7))')"
echo "LS $(chroot /host /bin/ls -d /usr/bin)"
if touch /host%[1]s/written 2>/dev/null; then echo RO-WRITE-WORKED; else echo RO-WRITE-REFUSED; fi
if ls /host/proc/self >/dev/null 2>&1; then echo PROC-SERVED; else echo PROC-REFUSED; fi
echo hello > /rw/new && echo WRITE-OK
echo 0123456789 > /rw/attrs && truncate -s 3 /rw/attrs && chmod 640 /rw/attrs && chown 1000:1001 /rw/attrs
echo "ATTRS $(stat -c '%%s %%a %%u:%%g' /rw/attrs)"
mkdir /rw/d && mv /rw/new /rw/d/moved && ln -s moved /rw/d/link && ln /rw/d/moved /rw/d/hard
echo "LINK $(cat /rw/d/link) $(stat -c %%h /rw/d/moved)"
yes abcdefg | head -c 4194304 > /rw/big && echo "BIG $(md5sum < /rw/big)"
echo "IN $(cat /rw/in.txt)"
if cat /rw/outlink >/dev/null 2>&1; then echo OUTLINK-READ; else echo OUTLINK-REFUSED; fi
rm /rw/d/hard && echo "FILES $(ls /rw/d | tr '\n' ' ')"
echo "COUNT $(ls /host/usr/bin | wc -l)"
insmod /lib/overlay.ko
mkdir -p /ovl /merged && mount -t tmpfs tmpfs /ovl && mkdir /ovl/u /ovl/w
mount -t overlay overlay -o lowerdir=/host,upperdir=/ovl/u,workdir=/ovl/w /merged && echo OVL-MOUNT-OK
echo appended >> /merged%[1]s/existing && echo "OVL $(chroot /merged /bin/cat %[1]s/existing | tr '\n' ' ')"
umount /merged
umount /rw && umount /host && echo UMOUNT-OK
poweroff -f
`

func TestUML(t *testing.T) {
	if testing.Short() {
		t.Skip("boots user-mode Linux")
	}
	dir := t.TempDir()
	rw := filepath.Join(dir, "rw")
	roProbe := filepath.Join(dir, "ro-probe")
	os.Mkdir(rw, 0o755)
	os.Mkdir(roProbe, 0o755)
	writeFile(t, filepath.Join(roProbe, "existing"), []byte("orig\n"))
	writeFile(t, filepath.Join(rw, "in.txt"), []byte("from-the-host"))
	writeFile(t, filepath.Join(dir, "secret"), []byte("outside"))
	os.Symlink("../secret", filepath.Join(rw, "outlink"))
	initrd := umltest.Initramfs(t, dir, fmt.Sprintf(umlInit, roProbe), "fs/fuse/fuse.ko", "fs/fuse/virtiofs.ko", "fs/overlayfs/overlay.ko")

	root, err := New(Config{Tag: "root", Root: "/", ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	share, err := New(Config{Tag: "rw", Root: rw})
	if err != nil {
		t.Fatal(err)
	}
	defer share.Close()
	umltest.Serve(t, root, filepath.Join(dir, "root.sock"), nil)
	umltest.Serve(t, share, filepath.Join(dir, "rw.sock"), nil)

	out := runUML(t, dir, initrd, filepath.Join(dir, "root.sock"), filepath.Join(dir, "rw.sock"))
	if testing.Verbose() {
		t.Logf("console:\n%s", out)
	}
	uml := readFile(t, umlhost.Binary)
	entries, _ := os.ReadDir("/usr/bin")
	for _, want := range []string{
		"MOUNT-ROOT-OK", "MOUNT-RW-OK",
		fmt.Sprintf("SUM %x  /usr/bin/linux.uml", sha256.Sum256(uml)),
		"SH 42", "LS /usr/bin",
		"RO-WRITE-REFUSED", "PROC-REFUSED",
		"WRITE-OK", "ATTRS 3 640 1000:1001", "LINK hello 2", fmt.Sprintf("BIG %x  -", md5.Sum(bytes.Repeat([]byte("abcdefg\n"), 4<<20/8))), "IN from-the-host", "OUTLINK-REFUSED",
		"FILES link moved ",
		fmt.Sprintf("COUNT %d", len(entries)),
		"OVL-MOUNT-OK", "OVL orig appended ",
		"UMOUNT-OK",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	if t.Failed() && !testing.Verbose() {
		t.Logf("console:\n%s", out)
	}
	if b := readFile(t, filepath.Join(rw, "d", "moved")); string(b) != "hello\n" {
		t.Errorf("host file %q", b)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(rw, "attrs"), &st); err != nil || st.Size != 3 || st.Mode&0o7777 != 0o640 || st.Uid != 1000 || st.Gid != 1001 {
		t.Errorf("host attrs file after truncate, chmod and chown in the guest: %+v %v", st, err)
	}
	if st, err := os.Stat(filepath.Join(rw, "big")); err != nil || st.Size() != 4<<20 {
		t.Errorf("host big file: %v %v", st, err)
	}
	if ents, _ := os.ReadDir(roProbe); len(ents) != 1 || string(readFile(t, filepath.Join(roProbe, "existing"))) != "orig\n" {
		t.Errorf("the read-only share was written: %v", ents)
	}
	if s := root.Stats(); s.ReadBytes < uint64(len(uml)) {
		t.Errorf("root share stats %+v", s)
	}
	if n := share.OpenFiles() + root.OpenFiles(); n != 0 {
		t.Errorf("%d descriptors still held after umount", n)
	}
}

func runUML(t *testing.T, dir, initrd string, socks ...string) string {
	args := []string{"mem=256M", "initrd=" + initrd, "con=null", "con0=fd:0,fd:1", "quiet"}
	for _, s := range socks {
		args = append(args, "virtio_uml.device="+s+":26")
	}
	return umltest.Run(t, dir, 120*time.Second, args...)
}
