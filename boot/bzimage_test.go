package boot

import (
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/flintvm/flint/mem"
)

// fakeKernel builds a minimal bzImage the way a 6.1 kernel's header looks:
// protocol 2.15, 4 setup sectors, relocatable, 64-bit entry.
type fakeKernel struct {
	setupSects  byte
	version     uint16
	headerEnd   int
	loadFlags   byte
	xloadflags  uint16
	align       uint32
	relocatable byte
	initSize    uint32
	cmdlineSize uint32
	initrdMax   uint32
	pref        uint64
	payload     int
}

func defaultFake() fakeKernel {
	return fakeKernel{
		setupSects: 4, version: 0x020f, headerEnd: 0x26c, loadFlags: LoadedHigh,
		xloadflags: XLFKernel64 | XLFCanBeLoadedAbove4G, align: 2 << 20, relocatable: 1,
		initSize: 8 << 20, cmdlineSize: 2047, initrdMax: 0x7fffffff, pref: 16 << 20, payload: 64 << 10,
	}
}

func (f fakeKernel) bytes() []byte {
	sects := int(f.setupSects)
	if sects == 0 {
		sects = 4
	}
	b := make([]byte, (sects+1)*512+f.payload)
	le := binary.LittleEndian
	b[offSetupSects] = f.setupSects
	le.PutUint16(b[offBootFlag:], BootFlag)
	b[offJump], b[offJump+1] = 0xeb, byte(f.headerEnd-0x202)
	copy(b[offHeaderMagic:], "HdrS")
	le.PutUint16(b[offVersion:], f.version)
	b[offLoadFlags] = f.loadFlags
	le.PutUint32(b[offCode32Start:], 0x100000)
	le.PutUint32(b[offInitrdAddrMax:], f.initrdMax)
	le.PutUint32(b[offKernelAlign:], f.align)
	b[offRelocatable] = f.relocatable
	le.PutUint16(b[offXLoadFlags:], f.xloadflags)
	le.PutUint32(b[offCmdlineSize:], f.cmdlineSize)
	le.PutUint64(b[offPrefAddress:], f.pref)
	le.PutUint32(b[offInitSize:], f.initSize)
	le.PutUint64(b[zpSetupData:], 0xdeadbeef) // Load must not pass this on
	for i := (sects + 1) * 512; i < len(b); i++ {
		b[i] = byte(i * 7)
	}
	return b
}

func TestParseSetupHeaderValid(t *testing.T) {
	h, err := ParseSetupHeader(defaultFake().bytes())
	if err != nil {
		t.Fatal(err)
	}
	if h.SetupSects != 4 || h.Version != 0x020f || !h.Relocatable || h.KernelAlignment != 2<<20 ||
		h.InitSize != 8<<20 || h.CmdlineSize != 2047 || h.InitrdAddrMax != 0x7fffffff ||
		h.PrefAddress != 16<<20 || h.HeaderEnd != 0x26c || len(h.Raw) != 0x26c-0x1f1 || h.SetupSize() != 2560 {
		t.Fatalf("%+v", h)
	}
	if h.ProtocolString() != "2.15" {
		t.Fatal(h.ProtocolString())
	}
	f := defaultFake()
	f.setupSects = 0 // means 4
	if h, err := ParseSetupHeader(f.bytes()); err != nil || h.SetupSects != 4 {
		t.Fatalf("setup_sects 0: %v %+v", err, h)
	}
}

func TestParseSetupHeaderErrors(t *testing.T) {
	mod := func(f func(k *fakeKernel)) []byte { k := defaultFake(); f(&k); return k.bytes() }
	patch := func(b []byte, off int, v ...byte) []byte { copy(b[off:], v); return b }
	good := defaultFake().bytes()
	cases := []struct {
		name  string
		image []byte
		kind  error
		msg   string
	}{
		{"empty", nil, ErrKernelTruncated, "truncated: file has 0 bytes"},
		{"short", good[:511], ErrKernelTruncated, "truncated: file has 511 bytes"},
		{"one sector", good[:512], ErrKernelTruncated, "truncated: setup needs 2560 bytes, file has 512"},
		{"not a kernel", patch(make([]byte, 4096), offBootFlag, 0x55, 0xaa), ErrNotBzImage, "HdrS"},
		{"no boot flag", patch(defaultFake().bytes(), offBootFlag, 0, 0), ErrNotBzImage, "boot flag"},
		{"no magic", patch(defaultFake().bytes(), offHeaderMagic, 'E', 'L', 'F'), ErrNotBzImage, `not a bzImage (no "HdrS" magic at 0x202)`},
		{"old protocol", mod(func(k *fakeKernel) { k.version = 0x0205 }), ErrUnsupportedKernel, "boot protocol 2.05 is too old"},
		{"no jump", patch(defaultFake().bytes(), offJump, 0x90), ErrBadHeader, "no short jump"},
		{"short header", mod(func(k *fakeKernel) { k.headerEnd = 0x240 }), ErrBadHeader, "setup header ends at 0x240"},
		{"zImage", mod(func(k *fakeKernel) { k.loadFlags = 0 }), ErrUnsupportedKernel, "LOADED_HIGH"},
		{"32-bit only", mod(func(k *fakeKernel) { k.xloadflags = 0 }), ErrUnsupportedKernel, "XLF_KERNEL_64"},
		{"2.10 kernel", mod(func(k *fakeKernel) { k.version = 0x020a }), ErrUnsupportedKernel, "protocol 2.10"},
		{"truncated setup", good[:2000], ErrKernelTruncated, "truncated: setup needs 2560 bytes, file has 2000"},
		{"no payload", good[:2560], ErrKernelTruncated, "no protected-mode code"},
		{"big setup_sects", mod(func(k *fakeKernel) { k.setupSects = 200; k.payload = 0 })[:4096], ErrKernelTruncated, "setup needs 102912 bytes"},
		{"alignment", mod(func(k *fakeKernel) { k.align = 3 << 20 }), ErrBadHeader, "kernel_alignment"},
		{"init_size", mod(func(k *fakeKernel) { k.initSize = 0 }), ErrBadHeader, "init_size is 0"},
		{"pref", mod(func(k *fakeKernel) { k.pref = 1 << 60 }), ErrBadHeader, "pref_address"},
		{"initrd max", mod(func(k *fakeKernel) { k.initrdMax = 0x1000 }), ErrBadHeader, "initrd_addr_max"},
		{"past the hole", mod(func(k *fakeKernel) { k.pref = 0xbfc00000 }), ErrBadHeader, "init_size 8 MiB at run address 0xbfc00000 needs RAM up to 3076 MiB, past 0xc0000000"},
		{"init_size past the hole", mod(func(k *fakeKernel) { k.initSize = 0xffffffff }), ErrBadHeader, "past 0xc0000000 where the MMIO hole starts"},
		{"fixed below 1 MiB", mod(func(k *fakeKernel) { k.relocatable, k.pref = 0, 0x7000 }), ErrBadHeader, "not relocatable and runs at pref_address 0x7000, below 1 MiB"},
	}
	for _, c := range cases {
		h, err := ParseSetupHeader(c.image)
		if err == nil {
			t.Errorf("%s: parsed: %+v", c.name, h)
			continue
		}
		if !errors.Is(err, c.kind) || !errors.Is(err, ErrInvalidKernel) || errors.Is(err, ErrBootConfig) {
			t.Errorf("%s: %v does not match its sentinels", c.name, err)
		}
		if !strings.HasPrefix(err.Error(), "kernel: ") || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: message %q lacks %q", c.name, err, c.msg)
		}
	}
}

func TestRunAddress(t *testing.T) {
	h := &SetupHeader{Relocatable: true, KernelAlignment: 2 << 20, PrefAddress: 16 << 20}
	if got := h.runAddress(KernelAddr); got != 16<<20 {
		t.Errorf("relocatable: %#x", got)
	}
	h.PrefAddress = 0
	if got := h.runAddress(KernelAddr); got != 2<<20 {
		t.Errorf("relocatable, no pref: %#x", got)
	}
	h = &SetupHeader{PrefAddress: 16 << 20}
	if got := h.runAddress(KernelAddr); got != 16<<20 {
		t.Errorf("fixed: %#x", got)
	}
}

// TestParseRealKernel parses the bzImage FLINT_KERNEL names (for example
// .cache/kernels/cloud/vmlinuz, fetched by scripts/).
func TestParseRealKernel(t *testing.T) {
	path := os.Getenv("FLINT_KERNEL")
	if path == "" {
		t.Skip("FLINT_KERNEL is not set (point it at a bzImage, e.g. a Debian vmlinuz)")
	}
	image, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseSetupHeader(image)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("protocol %s, setup %d bytes, payload %d bytes, init_size %d MiB, pref %#x, align %#x, cmdline_size %d, initrd_addr_max %#x",
		h.ProtocolString(), h.SetupSize(), len(image)-h.SetupSize(), h.InitSize>>20, h.PrefAddress, h.KernelAlignment, h.CmdlineSize, h.InitrdAddrMax)
	if h.Version < 0x020c || !h.Relocatable || h.InitSize < uint32(len(image)-h.SetupSize()) {
		t.Errorf("unexpected header for a modern kernel: %+v", h)
	}
}

func FuzzParseSetupHeader(f *testing.F) {
	f.Add(defaultFake().bytes()[:3072])
	f.Add([]byte{})
	f.Add(make([]byte, 0x300))
	k := defaultFake()
	k.setupSects, k.payload = 0, 1
	f.Add(k.bytes())
	f.Fuzz(func(t *testing.T, image []byte) {
		h, err := ParseSetupHeader(image)
		if err != nil {
			if h != nil || !errors.Is(err, ErrInvalidKernel) || !strings.HasPrefix(err.Error(), "kernel: ") {
				t.Fatalf("bad error %v (header %v)", err, h)
			}
			return
		}
		if h.SetupSize() >= len(image) || h.HeaderEnd > h.SetupSize() || h.InitSize == 0 ||
			h.XLoadFlags&XLFKernel64 == 0 || h.Version < MinProtocol {
			t.Fatalf("accepted inconsistent header %+v for %d bytes", h, len(image))
		}
		if len(h.Raw) != min(h.HeaderEnd, setupHeaderMaxEnd)-offSetupSects {
			t.Fatalf("raw header %d bytes, end %#x", len(h.Raw), h.HeaderEnd)
		}
		if h.Relocatable && h.runAddress(KernelAddr)%uint64(h.KernelAlignment) != 0 && h.runAddress(KernelAddr) != h.PrefAddress {
			t.Fatalf("run address %#x not aligned", h.runAddress(KernelAddr))
		}
		if h.runAddress(KernelAddr)+uint64(h.InitSize) > mem.MMIOHoleStart {
			t.Fatalf("needs RAM up to %#x, past the MMIO hole", h.runAddress(KernelAddr)+uint64(h.InitSize))
		}
		if h.runAddress(KernelAddr) < KernelAddr {
			t.Fatalf("runs at %#x, below 1 MiB", h.runAddress(KernelAddr))
		}
	})
}
