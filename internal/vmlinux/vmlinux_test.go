package vmlinux

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flintvm/flint/boot"
)

// lz4Frame wraps blocks in the legacy frame and appends the size trailer.
func lz4Frame(size int, blocks ...[]byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, lz4LegacyMagic)
	for _, blk := range blocks {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(blk)))
		b = append(b, blk...)
	}
	return binary.LittleEndian.AppendUint32(b, uint32(size))
}

// litBlock is an LZ4 block holding lit as literals only.
func litBlock(lit []byte) []byte {
	n := len(lit)
	if n < 15 {
		return append([]byte{byte(n << 4)}, lit...)
	}
	b := []byte{0xf0}
	for n -= 15; n >= 255; n -= 255 {
		b = append(b, 255)
	}
	return append(append(b, byte(n)), lit...)
}

func TestDecodeLZ4Block(t *testing.T) {
	// "abc", then a match 3 back of 4+5 bytes (overlapping its own
	// output), then the last literals "Z".
	blk := []byte{0x35, 'a', 'b', 'c', 3, 0, 0x10, 'Z'}
	out, err := decodeLZ4Block(blk, nil, 100)
	if err != nil || string(out) != "abcabcabcabcZ" {
		t.Fatalf("%q, %v", out, err)
	}
	long := bytes.Repeat([]byte("0123456789"), 60)
	if out, err := decodeLZ4Block(litBlock(long), []byte("prev"), 1000); err != nil || string(out) != "prev"+string(long) {
		t.Fatalf("long literals: %v", err)
	}
	// A match reaching back into an earlier block's output.
	if out, err := decodeLZ4Block([]byte{0x00, 4, 0, 0x10, '!'}, []byte("wxyz"), 100); err != nil || string(out) != "wxyzwxyz!" {
		t.Fatalf("cross-block match: %q, %v", out, err)
	}
	for _, c := range []struct {
		name  string
		blk   []byte
		limit int
		msg   string
	}{
		{"offset 0", []byte{0x10, 'a', 0, 0, 0x00}, 100, "match offset 0"},
		{"offset past output", []byte{0x10, 'a', 2, 0, 0x00}, 100, "match offset 2 with 1 bytes"},
		{"literals past block", []byte{0x50, 'a'}, 100, "5 literals at 1 run past"},
		{"truncated offset", []byte{0x10, 'a', 1}, 100, "truncated match offset"},
		{"truncated length", []byte{0xf0}, 100, "truncated length"},
		{"ends with match", []byte{0x10, 'a', 1, 0}, 100, "ends with a match"},
		{"literals over limit", []byte{0x30, 'a', 'b', 'c'}, 2, "longer than the stream's declared size"},
		{"match over limit", []byte{0x1f, 'a', 1, 0, 200, 0x00}, 100, "longer than the stream's declared size"},
	} {
		if _, err := decodeLZ4Block(c.blk, nil, c.limit); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want %q", c.name, err, c.msg)
		}
	}
}

func TestDecodeLZ4Legacy(t *testing.T) {
	a, b := bytes.Repeat([]byte{'a'}, 20), []byte("tail")
	// Two blocks, a concatenated stream's magic between them.
	in := lz4Frame(24, litBlock(a))
	in = binary.LittleEndian.AppendUint32(in[:len(in)-4], lz4LegacyMagic)
	in = binary.LittleEndian.AppendUint32(in, uint32(len(litBlock(b))))
	in = append(in, litBlock(b)...)
	out, err := decodeLZ4Legacy(in, 24)
	if err != nil || string(out) != string(a)+"tail" {
		t.Fatalf("%q, %v", out, err)
	}
	// Bytes after the declared size are not read (the kernel's trailer).
	if out, err := decodeLZ4Legacy(append(in, 1, 2, 3, 4, 5, 6), 24); err != nil || len(out) != 24 {
		t.Fatalf("trailing bytes: %v", err)
	}
	for _, c := range []struct {
		name string
		in   []byte
		want int
		msg  string
	}{
		{"no magic", []byte{1, 2, 3, 4}, 1, "no legacy frame magic"},
		{"short", in[:len(in)-2], 24, "runs past the end"},
		{"ends early", in[:4+4+len(litBlock(a))], 24, "stream ends after 20 of 24 bytes"},
		{"longer than declared", in, 10, "longer than the stream's declared size"},
	} {
		if _, err := decodeLZ4Legacy(c.in, c.want); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want %q", c.name, err, c.msg)
		}
	}
}

// fakeBzImage is a bzImage with payload at payload_offset 0x40 after two
// setup sectors (protocol 2.15).
func fakeBzImage(payload []byte) []byte {
	const setup = 3 * sectorSize
	b := make([]byte, setup+0x40+len(payload)+16)
	b[offSetupSects] = 2
	le.PutUint32(b[offHeaderMagic:], headerMagic)
	le.PutUint16(b[offVersion:], 0x020f)
	le.PutUint32(b[offPayloadOffset:], 0x40)
	le.PutUint32(b[offPayloadLength:], uint32(len(payload)))
	copy(b[setup+0x40:], payload)
	return b
}

func TestFromBzImage(t *testing.T) {
	kernel := append([]byte("\x7fELF"), bytes.Repeat([]byte("kernel"), 50)...)
	got, err := FromBzImage(fakeBzImage(lz4Frame(len(kernel), litBlock(kernel))))
	if err != nil || !bytes.Equal(got, kernel) {
		t.Fatalf("lz4: %v", err)
	}
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write(kernel)
	w.Close()
	if got, err := FromBzImage(fakeBzImage(gz.Bytes())); err != nil || !bytes.Equal(got, kernel) {
		t.Fatalf("gzip: %v", err)
	}
	notELF := []byte("not an elf file")
	bad := fakeBzImage(lz4Frame(4, litBlock([]byte("ABCD"))))
	le.PutUint16(bad[offVersion:], 0x0207)
	outside := fakeBzImage(lz4Frame(4, litBlock([]byte("ABCD"))))
	le.PutUint32(outside[offPayloadLength:], 1<<20)
	for _, c := range []struct {
		name string
		bz   []byte
		msg  string
	}{
		{"short", make([]byte, 0x100), "bzImage truncated"},
		{"no HdrS", make([]byte, 0x1000), `no "HdrS"`},
		{"old protocol", bad, "boot protocol 2.07 has no payload_offset"},
		{"payload outside", outside, "is empty or outside the"},
		{"zstd", fakeBzImage([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0}), "compression not supported (starts 28 b5 2f fd 00 00)"},
		{"size trailer 0", fakeBzImage(lz4Frame(0, litBlock(kernel))), "size trailer says 0 bytes"},
		{"not ELF", fakeBzImage(lz4Frame(len(notELF), litBlock(notELF))), "not an ELF file"},
		{"xz garbage", fakeBzImage(append(append([]byte{0xfd, '7', 'z', 'X', 'Z', 0}, make([]byte, 20)...), 9, 0, 0, 0)), "xz: "},
	} {
		if _, err := FromBzImage(c.bz); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want %q", c.name, err, c.msg)
		}
	}
}

func TestDisablePVH(t *testing.T) {
	if _, err := DisablePVH([]byte("\x7fELF")); err == nil {
		t.Error("DisablePVH accepted a truncated ELF file")
	}
}

// realKernel reads Debian's bzImage of flavour from the repository's kernel
// cache, skipping the test when it is not there.
func realKernel(t *testing.T, flavour string) []byte {
	t.Helper()
	path := filepath.Join("..", "..", ".cache", "kernels", flavour, "vmlinuz")
	bz, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("no %s kernel at %s (scripts/fetch-kernels.sh, or any e2e test, fetches it): %v", flavour, path, err)
	}
	return bz
}

// TestCloudKernel makes the vmlinux of Debian 12's cloud kernel (LZ4 legacy
// payload), which boot must accept with its PVH note, and its DisablePVH
// copy, which differs in the note's type only.
func TestCloudKernel(t *testing.T) {
	bz := realKernel(t, "cloud")
	elf, err := FromBzImage(bz)
	if err != nil {
		t.Fatal(err)
	}
	k, err := boot.ParseELF(elf)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("vmlinux %d bytes: %d PT_LOADs [%#x, %#x), entry %#x, PVH entry %#x", len(elf), len(k.Segments), k.Start, k.End, k.Entry64, k.PVHEntry)
	if !k.HasPVH || k.Entry64 != k.Start {
		t.Errorf("want a PVH note and the 64-bit entry at the lowest segment: %+v", k)
	}
	if err := boot.CheckKernel(elf, 256<<20, boot.EntryAuto); err != nil {
		t.Errorf("256 MiB guest: %v", err)
	}
	no, err := DisablePVH(elf)
	if err != nil {
		t.Fatal(err)
	}
	nk, err := boot.ParseELF(no)
	if err != nil || nk.HasPVH || nk.Entry64 != k.Entry64 {
		t.Fatalf("without the note: %v, %+v", err, nk)
	}
	diff := 0
	for i := range elf {
		if elf[i] != no[i] {
			diff++
		}
	}
	if diff != 1 || len(no) != len(elf) { // type 18 -> 0: one byte
		t.Errorf("DisablePVH changed %d bytes", diff)
	}
	if _, err := DisablePVH(no); err == nil {
		t.Error("DisablePVH found a note it had disabled")
	}
}

// TestGenericKernelPayload: Debian 12's generic kernel's payload is found
// and is XZ (whose BCJ filter FromBzImage reports it cannot decode).
func TestGenericKernelPayload(t *testing.T) {
	bz := realKernel(t, "amd64")
	p, err := Payload(bz)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(p, []byte{0xfd, '7', 'z', 'X', 'Z', 0}) {
		t.Fatalf("payload starts % x, want the XZ magic", p[:6])
	}
	if _, err := FromBzImage(bz); err == nil || !strings.Contains(err.Error(), "BCJ") {
		t.Errorf("FromBzImage: %v, want the BCJ filter named", err)
	}
}

// FuzzFromBzImage: any bzImage (payload and header alike) decodes or
// fails with an error, never a panic or an over-long result.
func FuzzFromBzImage(f *testing.F) {
	kernel := append([]byte("\x7fELF"), bytes.Repeat([]byte("kernel"), 5)...)
	f.Add(fakeBzImage(lz4Frame(len(kernel), litBlock(kernel))))
	f.Add(fakeBzImage(lz4Frame(13, []byte{0x35, 'a', 'b', 'c', 3, 0, 0x10, 'Z'})))
	f.Add(fakeBzImage([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0}))
	f.Fuzz(func(t *testing.T, bz []byte) {
		out, err := FromBzImage(bz)
		if err == nil && (len(out) > maxKernel || !bytes.HasPrefix(out, []byte("\x7fELF"))) {
			t.Fatalf("accepted %d bytes", len(out))
		}
	})
}
