package initramfs

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"math/rand"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"
)

// xzDecode decodes b with xzReader.
func xzDecode(b []byte) ([]byte, error) {
	x, err := newXZReader(bufio.NewReader(bytes.NewReader(b)))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(x)
}

// xzLib compresses data with ulikunitz/xz's writer.
func xzLib(t testing.TB, c xz.WriterConfig, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := c.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestXZReaderDecodes: every layout xz and ulikunitz/xz write (each check
// type, one block or many, incompressible data stored uncompressed, empty
// input, several streams with stream padding) decodes to the original.
func TestXZReaderDecodes(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	random := make([]byte, 70<<10)
	rng.Read(random)
	text := []byte(strings.Repeat("modinfo license=GPL depends=virtio,virtio_ring\x00", 2000))
	mixed := append(append([]byte(nil), text...), random...)
	files := map[string][2][]byte{}
	for _, data := range [][]byte{nil, text, random, mixed} {
		for _, c := range []xz.WriterConfig{{CheckSum: xz.CRC32}, {CheckSum: xz.CRC64}, {CheckSum: xz.SHA256}, {NoCheckSum: true},
			{CheckSum: xz.CRC32, BlockSize: 50 << 10, DictCap: 64 << 10}} {
			files[strings.Repeat("x", len(files))] = [2][]byte{xzLib(t, c, data), data}
		}
	}
	if _, err := exec.LookPath("xz"); err == nil {
		for _, args := range [][]string{{"--check=crc32", "--lzma2=dict=1MiB"}, {"--check=crc64", "-6e"}, {"--check=sha256", "-0"},
			{"--check=none"}, {"--block-size=30000", "-T2"}} {
			cmd := exec.Command("xz", append([]string{"-c"}, args...)...)
			cmd.Stdin = bytes.NewReader(mixed)
			out, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			files["xz "+strings.Join(args, " ")] = [2][]byte{out, mixed}
		}
	}
	a, b := xzLib(t, xz.WriterConfig{CheckSum: xz.CRC32}, text), xzLib(t, xz.WriterConfig{CheckSum: xz.SHA256}, random)
	multi := append(append(append(append([]byte(nil), a...), make([]byte, 8)...), b...), make([]byte, 4)...)
	files["two streams"] = [2][]byte{multi, append(append([]byte(nil), text...), random...)}
	for name, f := range files {
		got, err := xzDecode(f[0])
		if err != nil || !bytes.Equal(got, f[1]) {
			t.Errorf("%q: %d bytes (want %d), %v", name, len(got), len(f[1]), err)
		}
	}
}

// patchDict sets the dictionary size code of the LZMA2 filter in the
// first block header of the xz stream at b[at:] (as xz and ulikunitz/xz
// write it: no sizes, the filter right after the flags) and fixes the
// header's CRC32.
func patchDict(t *testing.T, b []byte, at int, code byte) []byte {
	t.Helper()
	h := b[at+12:]
	size := (int(h[0]) + 1) * 4
	if h[1] != 0 || h[2] != 0x21 || h[3] != 1 {
		t.Fatalf("unexpected block header % x", h[:size])
	}
	h[4] = code
	binary.LittleEndian.PutUint32(h[size-4:], crc32.ChecksumIEEE(h[:size-4]))
	return b
}

// TestXZDictionaryBound: a block header asking for a dictionary above
// maxXZDict (up to 4 GiB) is refused before anything is allocated, in the
// first stream or a later one, while 64 MiB (xz -9) is accepted and
// 96 MiB, the next size, is not.
func TestXZDictionaryBound(t *testing.T) {
	elfData := append(append([]byte(nil), magicELF...), make([]byte, 1000)...)
	small := func() []byte { return xzLib(t, xz.WriterConfig{CheckSum: xz.CRC32, DictCap: 1 << 20}, elfData) }
	for _, c := range []struct {
		name string
		file []byte
	}{
		{"4 GiB", patchDict(t, small(), 0, 40)},
		{"1.5 GiB", patchDict(t, small(), 0, 37)},
		{"second stream", func() []byte { a := small(); return patchDict(t, append(a, small()...), len(a), 40) }()},
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var d moduleDecoder
		_, err := d.decode("m.ko.xz", bytes.NewReader(c.file))
		d.close()
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrBadModule) || !strings.Contains(err.Error(), "LZMA2 dictionary") {
			t.Errorf("%s: %v, want ErrBadModule naming the dictionary", c.name, err)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
			t.Errorf("%s: decoding allocated %d MiB", c.name, grew>>20)
		}
	}
	if got, err := xzDecode(patchDict(t, small(), 0, 28)); err != nil || !bytes.Equal(got, elfData) {
		t.Errorf("64 MiB dictionary: %d bytes, %v", len(got), err)
	}
	if _, err := xzDecode(patchDict(t, small(), 0, 29)); err == nil || !strings.Contains(err.Error(), "96 MiB LZMA2 dictionary") {
		t.Errorf("96 MiB dictionary: %v", err)
	}
}

// TestXZReaderErrors: damage anywhere in the container is an error, never
// wrong data.
func TestXZReaderErrors(t *testing.T) {
	data := []byte(strings.Repeat("abcdefgh", 3000))
	good := xzLib(t, xz.WriterConfig{CheckSum: xz.CRC32}, data)
	for i := range good {
		bad := append([]byte(nil), good...)
		bad[i] ^= 0x10
		if got, err := xzDecode(bad); err == nil && !bytes.Equal(got, data) {
			t.Fatalf("byte %d flipped: decoded wrong data without an error", i)
		}
	}
	for n := 0; n < len(good); n++ {
		if _, err := xzDecode(good[:n]); err == nil {
			t.Fatalf("cut to %d of %d bytes: no error", n, len(good))
		}
	}
	for name, b := range map[string][]byte{
		"trailing garbage": append(append([]byte(nil), good...), 1, 2, 3, 4),
		"odd padding":      append(append([]byte(nil), good...), 0, 0),
	} {
		if _, err := xzDecode(b); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// xzBlocks builds an xz stream (no check) of n blocks, each asking for
// dictionary size code and holding one stored byte 'x'.
func xzBlocks(n int, code byte) []byte {
	le := binary.LittleEndian
	b := append([]byte(nil), xzHeaderMagic...)
	b = append(b, 0, 0)
	b = le.AppendUint32(b, crc32.ChecksumIEEE([]byte{0, 0}))
	for range n {
		h := []byte{2, 0, 0x21, 1, code, 0, 0, 0}
		b = le.AppendUint32(append(b, h...), crc32.ChecksumIEEE(h))
		b = append(b, 1, 0, 0, 'x', 0, 0, 0, 0) // stored chunk, end, padding
	}
	idx := binary.AppendUvarint([]byte{0}, uint64(n))
	for range n {
		idx = append(idx, 17, 1) // unpadded size, uncompressed size
	}
	idx = append(idx, make([]byte, -len(idx)&3)...)
	idx = le.AppendUint32(idx, crc32.ChecksumIEEE(idx))
	foot := le.AppendUint32(nil, uint32(len(idx)/4-1))
	foot = append(foot, 0, 0)
	b = append(append(b, idx...), le.AppendUint32(nil, crc32.ChecksumIEEE(foot))...)
	return append(append(b, foot...), 'Y', 'Z')
}

// TestXZDictionaryTotal: many blocks each asking for a large dictionary
// cannot make the reader allocate one after the other without end: the
// dictionaries of one file total at most MaxModuleSize.
func TestXZDictionaryTotal(t *testing.T) {
	if got, err := xzDecode(xzBlocks(100, 16)); err != nil || string(got) != strings.Repeat("x", 100) {
		t.Fatalf("100 blocks of 1 MiB dictionaries: %q, %v", got, err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := xzDecode(xzBlocks(100, 28))
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "LZMA2 dictionaries") {
		t.Errorf("100 blocks of 64 MiB dictionaries: %v", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > MaxModuleSize+16<<20 {
		t.Errorf("100 blocks of 64 MiB dictionaries: allocated %d MiB", grew>>20)
	}
}

// FuzzXZReader: what xzReader decodes, ulikunitz/xz's reader decodes to
// the same bytes (run only then: it would allocate any dictionary asked
// for), so the container checks are no weaker than the library's.
func FuzzXZReader(f *testing.F) {
	f.Add(xzBlocks(3, 16))
	f.Add(xzLib(f, xz.WriterConfig{CheckSum: xz.CRC32, BlockSize: 16}, []byte("0123456789abcdefghijklmnopqrstuvwxyz")))
	f.Add(xzLib(f, xz.WriterConfig{CheckSum: xz.SHA256}, bytes.Repeat([]byte("ab"), 100)))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := xzDecode(b)
		if err != nil {
			if !errors.Is(err, errXZ) {
				t.Fatalf("error %v does not match errXZ", err)
			}
			return
		}
		r, err := xz.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("xzReader decoded %d bytes, ulikunitz/xz refuses the file: %v", len(got), err)
		}
		want, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("xzReader decoded %d bytes, ulikunitz/xz %d: %v", len(got), len(want), err)
		}
	})
}
