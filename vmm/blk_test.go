package vmm

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flintvm/flint/devices/pci"
	"github.com/flintvm/flint/ratelimit"
	"github.com/flintvm/flint/vmm/vmmtest"
)

func TestDriveValidate(t *testing.T) {
	ok := DriveConfig{ID: "rootfs", Path: "/img"}
	for _, tc := range []struct {
		name  string
		mod   func(*DriveConfig)
		field string // "" means valid
	}{
		{"minimal", func(*DriveConfig) {}, ""},
		{"everything", func(d *DriveConfig) {
			d.Root, d.PartUUID, d.ReadOnly, d.CacheType, d.Transport = true, "6a3f-01/PARTNROFF=1", true, CacheWriteback, "mmio"
			d.RateLimit = &ratelimit.Config{Ops: ratelimit.BucketConfig{Size: 10, RefillTime: 100}}
		}, ""},
		{"20-byte id", func(d *DriveConfig) { d.ID = strings.Repeat("a", 20) }, ""},
		// Firecracker's config files take any drive_id; the API path's
		// rule is configs.CheckPathID's.
		{"empty id", func(d *DriveConfig) { d.ID = "" }, ""},
		{"long id", func(d *DriveConfig) { d.ID = strings.Repeat("a", 65) }, ""},
		{"id with a dash", func(d *DriveConfig) { d.ID = "root-fs" }, ""},
		{"id with a newline", func(d *DriveConfig) { d.ID, d.Path = "a\nb", "" }, `drive "a\nb": path_on_host`},
		{"no path", func(d *DriveConfig) { d.Path = "" }, "path_on_host"},
		{"partuuid without root", func(d *DriveConfig) { d.PartUUID = "abcd" }, "partuuid"},
		{"partuuid with a space", func(d *DriveConfig) { d.Root, d.PartUUID = true, "ab cd" }, "partuuid"},
		{"cache type", func(d *DriveConfig) { d.CacheType = "writeback" }, "cache_type"},
		{"transport", func(d *DriveConfig) { d.Transport = "virtio" }, "transport"},
		{"rate limiter", func(d *DriveConfig) {
			d.RateLimit = &ratelimit.Config{Bandwidth: ratelimit.BucketConfig{Size: 1 << 20}}
		}, "rate_limiter.bandwidth.refill_time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := ok
			tc.mod(&d)
			err := d.Validate()
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.field != "" && (err == nil || !strings.Contains(err.Error(), tc.field)):
				t.Fatalf("error %v, want one naming %s", err, tc.field)
			}
		})
	}
}

// TestDriveSerial: the serial is the drive_id's first 20 bytes
// (blk.Open refuses a longer one).
func TestDriveSerial(t *testing.T) {
	for id, want := range map[string]string{"": "", "rootfs": "rootfs", "root-fs-of-the-web-server": "root-fs-of-the-web-s",
		strings.Repeat("x", 20): strings.Repeat("x", 20)} {
		if got := driveSerial(id); got != want {
			t.Errorf("driveSerial(%q) = %q, want %q", id, got, want)
		}
	}
}

func TestRootArgs(t *testing.T) {
	d := func(id string, root, ro bool, uuid string) DriveConfig {
		return DriveConfig{ID: id, Path: "/" + id, Root: root, ReadOnly: ro, PartUUID: uuid}
	}
	for _, tc := range []struct {
		name   string
		drives []DriveConfig
		want   string
		err    string
	}{
		{"none", nil, "", ""},
		{"no root", []DriveConfig{d("data", false, false, "")}, "", ""},
		{"root only", []DriveConfig{d("rootfs", true, false, "")}, "root=/dev/vda rw", ""},
		{"read-only root after a data drive", []DriveConfig{d("data", false, false, ""), d("rootfs", true, true, "")}, "root=/dev/vda ro", ""},
		{"partuuid", []DriveConfig{d("data", false, false, ""), d("rootfs", true, false, "0eb8b4c7-02")}, "root=PARTUUID=0eb8b4c7-02 rw", ""},
		{"two roots", []DriveConfig{d("a", true, false, ""), d("b", true, false, "")}, "", "is_root_device"},
		{"duplicate ids", []DriveConfig{d("a", true, false, ""), d("a", false, false, "")}, "", "drive_id"},
		{"invalid drive", []DriveConfig{{ID: "x"}}, "", "path_on_host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := rootArgs(tc.drives)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one naming %s", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("rootArgs = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	order := orderDrives([]DriveConfig{d("a", false, false, ""), d("b", false, false, ""), d("r", true, false, "")})
	if order[0].ID != "r" || order[1].ID != "a" || order[2].ID != "b" {
		t.Fatalf("order %v", order)
	}
}

func TestVdName(t *testing.T) {
	for i, want := range map[int]string{0: "vda", 1: "vdb", 25: "vdz", 26: "vdaa", 27: "vdab", 51: "vdaz", 52: "vdba", 701: "vdzz", 702: "vdaaa"} {
		if got := vdName(i); got != want {
			t.Errorf("vdName(%d) = %s, want %s", i, got, want)
		}
	}
}

// TestDrivesOnPCIAndMMIO attaches a drive on each transport to a real
// (never started) VM and reads their identities the way a guest would.
func TestDrivesOnPCIAndMMIO(t *testing.T) {
	needKVM(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{Kernel: vmmtest.BzImage(vmmtest.Spin), CPUs: 1, MemoryMiB: 64, Console: "none"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	pciDrive, pciTr, err := m.addDrive(DriveConfig{ID: "root", Path: img, Root: true, CacheType: CacheWriteback,
		RateLimit: &ratelimit.Config{Ops: ratelimit.BucketConfig{Size: 100, RefillTime: 10}}})
	if err != nil {
		t.Fatal(err)
	}
	defer pciDrive.Close()
	defer pciTr.Close()
	mmioDrive, mmioTr, err := m.addDrive(DriveConfig{ID: "data", Path: img, ReadOnly: true, Transport: "mmio"})
	if err != nil {
		t.Fatal(err)
	}
	defer mmioDrive.Close()
	defer mmioTr.Close()
	if pciDrive.Capacity() != 2048 || pciDrive.Limiter() == nil || !mmioDrive.ReadOnly() || mmioDrive.Limiter() != nil {
		t.Fatal("drive options not applied")
	}
	// The PCI function: vendor 0x1af4, device 0x1042 (block).
	if !hasPCIFunction(m, 0x1042_1af4) {
		t.Error("no virtio-blk PCI function on bus 0")
	}
	// The MMIO window: magic "virt", version 2, device id 2; the
	// capacity at config offset 0x100.
	regs := make([]byte, 4)
	base := platformMMIOWindow.Start
	for off, want := range map[uint64]uint32{0: 0x74726976, 4: 2, 8: 2, 0x100: 2048} {
		m.mmio.Read(base+off, regs)
		if got := binary.LittleEndian.Uint32(regs); got != want {
			t.Errorf("virtio-mmio register %#x = %#x, want %#x", off, got, want)
		}
	}
	if len(m.acpiDevices) != 1 || m.acpiDevices[0].MMIOBase != base || len(m.pciINTx) != 1 {
		t.Errorf("ACPI devices %+v, INTx %+v", m.acpiDevices, m.pciINTx)
	}
	// A bad image is an error naming the drive, and attaches nothing.
	if _, _, err := m.addDrive(DriveConfig{ID: "bad", Path: filepath.Join(dir, "missing")}); err == nil || !strings.Contains(err.Error(), "bad") {
		t.Errorf("missing image: %v", err)
	}
	if m.mmioSlots != 1 || m.pciSlots != 1 {
		t.Errorf("slots used: mmio %d pci %d", m.mmioSlots, m.pciSlots)
	}
	closeDrives(m.log, nil, nil, nil)
}

// hasPCIFunction reports whether a function on bus 0 answers vendor and
// device id id (device<<16 | vendor) through 0xCF8/0xCFC, as the guest
// would read it.
func hasPCIFunction(m *Machine, id uint32) bool {
	addr, got := make([]byte, 4), make([]byte, 4)
	for dev := uint8(1); dev < 32; dev++ {
		binary.LittleEndian.PutUint32(addr, pci.ConfigAddress(0, dev, 0, 0))
		m.pio.Write(0xcf8, addr)
		m.pio.Read(0xcfc, got)
		if binary.LittleEndian.Uint32(got) == id {
			return true
		}
	}
	return false
}
