package initramfs

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"

	"github.com/ulikunitz/xz/lzma"
)

// An xz block header names its LZMA2 dictionary size, up to 4 GiB, and
// github.com/ulikunitz/xz's reader allocates that dictionary whole before
// it decodes a byte: a 76-byte .ko.xz asking for 1.5 GiB made Flint
// allocate 1.5 GiB. xzReader reads the xz container itself (the .xz file
// format 1.0.4: streams of blocks, an index, a footer, stream padding) and
// decodes each block's LZMA2 data with lzma.Reader2, whose dictionary it
// allocates only once the header's size is checked against maxXZDict. It
// verifies the header CRC32s, each block's check (none, CRC32, CRC64 or
// SHA-256, the ones ulikunitz/xz supports), the sizes a block header
// states and the index against the blocks read.

// maxXZDict bounds an xz block's LZMA2 dictionary: 64 MiB is xz -9's, the
// largest preset (the kernel's own module compression uses 1 MiB). Each
// block has a dictionary of its own, so the dictionaries of one file are
// bounded too, by maxXZDictTotal: a file of many tiny blocks each asking
// for 64 MiB would otherwise allocate 64 MiB per 24 bytes it holds. xz
// -T's blocks are three dictionaries long, so a module of at most
// MaxModuleSize bytes never needs more.
const (
	maxXZDict      = 64 << 20
	maxXZDictTotal = MaxModuleSize
)

var (
	xzHeaderMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0}
	xzFooterMagic = []byte{'Y', 'Z'}
	crc64Table    = crc64.MakeTable(crc64.ECMA)
)

// xzReader decodes the xz file read from r (one or more streams).
type xzReader struct {
	r   *xzCounter
	err error
	// The current stream: its check type, and the count and a CRC32 of
	// the (unpadded size, uncompressed size) of each block read, which
	// its index must match.
	check   byte
	blocks  uint64
	records hash.Hash32
	// dicts is the size of the dictionaries allocated so far.
	dicts int64
	// The current block (lz nil between blocks): where its header
	// started, its header's stated sizes (-1: not given), the
	// uncompressed bytes so far and their check.
	lz                   *lzma.Reader2
	start, dataStart     int64
	wantComp, wantUncomp int64
	uncomp               int64
	sum                  hash.Hash
}

// xzCounter counts the bytes read through it. It is an io.ByteReader, so
// lzma.Reader2 reads it without a buffer of its own that could read past
// a block's data.
type xzCounter struct {
	r *bufio.Reader
	n int64
}

func (c *xzCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *xzCounter) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}

var errXZ = errors.New("xz")

func xzErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errXZ}, args...)...)
}

// newXZReader reads the first stream header from r.
func newXZReader(r *bufio.Reader) (*xzReader, error) {
	x := &xzReader{r: &xzCounter{r: r}}
	if err := x.streamHeader(); err != nil {
		return nil, err
	}
	return x, nil
}

func (x *xzReader) full(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(x.r, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, xzErr("%v", err)
	}
	return b, nil
}

func (x *xzReader) streamHeader() error {
	h, err := x.full(12)
	if err != nil {
		return err
	}
	if !bytes.Equal(h[:6], xzHeaderMagic) {
		return xzErr("no stream header magic")
	}
	if crc32.ChecksumIEEE(h[6:8]) != binary.LittleEndian.Uint32(h[8:]) {
		return xzErr("stream header CRC32 mismatch")
	}
	if h[6] != 0 || newCheck(h[7]) == nil {
		return xzErr("stream flags %#02x %#02x: unsupported check", h[6], h[7])
	}
	x.check, x.blocks, x.records = h[7], 0, crc32.NewIEEE()
	return nil
}

func newCheck(flags byte) hash.Hash {
	switch flags {
	case 0x00:
		return noCheck{}
	case 0x01:
		return crc32.NewIEEE()
	case 0x04:
		return crc64.New(crc64Table)
	case 0x0a:
		return sha256.New()
	}
	return nil
}

// noCheck is the "None" check: no bytes.
type noCheck struct{}

func (noCheck) Write(p []byte) (int, error) { return len(p), nil }
func (noCheck) Sum(b []byte) []byte         { return b }
func (noCheck) Reset()                      {}
func (noCheck) Size() int                   { return 0 }
func (noCheck) BlockSize() int              { return 1 }

// Read returns decoded bytes.
func (x *xzReader) Read(p []byte) (int, error) {
	for x.err == nil {
		if x.lz == nil {
			x.err = x.next()
			continue
		}
		n, err := x.lz.Read(p)
		x.uncomp += int64(n)
		x.sum.Write(p[:n])
		if err == io.EOF {
			x.err = x.endBlock()
		} else if err != nil {
			x.err = xzErr("LZMA2: %v", err)
		}
		if n > 0 || len(p) == 0 {
			return n, nil
		}
	}
	return 0, x.err
}

// next reads what follows a stream header or a block: a block header
// (starting the block), or the index, footer, stream padding and the next
// stream header, or the end of the file (io.EOF).
func (x *xzReader) next() error {
	x.start = x.r.n
	b, err := x.full(1)
	if err != nil {
		return err
	}
	if b[0] == 0 {
		if err := x.index(); err != nil {
			return err
		}
		return x.padding()
	}
	rest, err := x.full(int(b[0])*4 + 3)
	if err != nil {
		return err
	}
	h := append(b, rest...)
	if crc32.ChecksumIEEE(h[:len(h)-4]) != binary.LittleEndian.Uint32(h[len(h)-4:]) {
		return xzErr("block header CRC32 mismatch")
	}
	dict, err := x.blockHeader(h[1 : len(h)-4])
	if err != nil {
		return err
	}
	dict = max(dict, lzma.MinDictCap)
	if dict > maxXZDict {
		return xzErr("a block asks for a %d MiB LZMA2 dictionary, at most %d MiB", dict>>20, maxXZDict>>20)
	}
	if x.dicts += dict; x.dicts > maxXZDictTotal {
		return xzErr("the blocks ask for more than %d MiB of LZMA2 dictionaries in all", maxXZDictTotal>>20)
	}
	x.dataStart, x.uncomp, x.sum = x.r.n, 0, newCheck(x.check)
	if x.lz, err = (lzma.Reader2Config{DictCap: int(dict)}).NewReader2(x.r); err != nil {
		return xzErr("LZMA2: %v", err)
	}
	return nil
}

// blockHeader parses a block header's flags, sizes and filters (h without
// its size byte and CRC32) and returns the LZMA2 dictionary size.
func (x *xzReader) blockHeader(h []byte) (int64, error) {
	flags := h[0]
	h = h[1:]
	if flags&0x3c != 0 {
		return 0, xzErr("block flags %#02x: reserved bits set", flags)
	}
	x.wantComp, x.wantUncomp = -1, -1
	for _, f := range []struct {
		bit  byte
		size *int64
	}{{0x40, &x.wantComp}, {0x80, &x.wantUncomp}} {
		if flags&f.bit != 0 {
			v, n := binary.Uvarint(h)
			if n <= 0 || v >= 1<<62 {
				return 0, xzErr("block header size field")
			}
			*f.size, h = int64(v), h[n:]
		}
	}
	// ulikunitz/xz decodes LZMA2 alone, with no other filter before it.
	id, n := binary.Uvarint(h)
	if flags&3 != 0 || n <= 0 || id != 0x21 {
		return 0, xzErr("block filters: only LZMA2 alone is supported")
	}
	h = h[n:]
	if len(h) < 2 || h[0] != 1 || h[1] > 40 {
		return 0, xzErr("LZMA2 filter properties")
	}
	for _, c := range h[2:] {
		if c != 0 {
			return 0, xzErr("block header padding is not zero")
		}
	}
	d := h[1]
	if d == 40 {
		return 1<<32 - 1, nil
	}
	return int64(2|d&1) << (d/2 + 11), nil
}

// endBlock reads the block padding and check once its LZMA2 data ended.
func (x *xzReader) endBlock() error {
	x.lz = nil
	comp := x.r.n - x.dataStart
	if x.wantComp >= 0 && comp != x.wantComp || x.wantUncomp >= 0 && x.uncomp != x.wantUncomp {
		return xzErr("block sizes differ from its header's")
	}
	unpadded := x.r.n - x.start + int64(x.sum.Size()) // header, data, check
	pad, err := x.full(int(-(x.r.n - x.start) & 3))
	if err != nil {
		return err
	}
	if !bytes.Equal(pad, make([]byte, len(pad))) {
		return xzErr("block padding is not zero")
	}
	sum, err := x.full(x.sum.Size())
	if err != nil {
		return err
	}
	want := x.sum.Sum(nil)
	if x.check != 0x0a { // CRC32 and CRC64 are stored little-endian
		for i, j := 0, len(want)-1; i < j; i, j = i+1, j-1 {
			want[i], want[j] = want[j], want[i]
		}
	}
	if !bytes.Equal(sum, want) {
		return xzErr("block check mismatch")
	}
	x.blocks++
	binary.Write(x.records, binary.LittleEndian, [2]int64{unpadded, x.uncomp})
	return nil
}

// index reads the index (its indicator byte already read) and the stream
// footer, and checks them against the blocks read.
func (x *xzReader) index() error {
	crc := crc32.NewIEEE()
	crc.Write([]byte{0})
	size := int64(1)
	uvarint := func() (uint64, error) {
		v, err := binary.ReadUvarint(x.r)
		if err != nil {
			return 0, xzErr("index: %v", err)
		}
		var b [binary.MaxVarintLen64]byte
		n := binary.PutUvarint(b[:], v)
		crc.Write(b[:n])
		size += int64(n)
		return v, nil
	}
	count, err := uvarint()
	if err != nil {
		return err
	}
	if count != x.blocks {
		return xzErr("index lists %d blocks, the stream has %d", count, x.blocks)
	}
	records := crc32.NewIEEE()
	for i := uint64(0); i < count; i++ {
		var r [2]int64
		for j := range r {
			v, err := uvarint()
			if err != nil {
				return err
			}
			r[j] = int64(v)
		}
		binary.Write(records, binary.LittleEndian, r)
	}
	if records.Sum32() != x.records.Sum32() {
		return xzErr("index records differ from the blocks")
	}
	tail, err := x.full(int(-size&3) + 4)
	if err != nil {
		return err
	}
	crc.Write(tail[:len(tail)-4])
	size += int64(len(tail))
	if !bytes.Equal(tail[:len(tail)-4], make([]byte, len(tail)-4)) || crc.Sum32() != binary.LittleEndian.Uint32(tail[len(tail)-4:]) {
		return xzErr("index padding or CRC32")
	}
	f, err := x.full(12)
	if err != nil {
		return err
	}
	if crc32.ChecksumIEEE(f[4:10]) != binary.LittleEndian.Uint32(f) || !bytes.Equal(f[10:], xzFooterMagic) ||
		(int64(binary.LittleEndian.Uint32(f[4:]))+1)*4 != size || f[8] != 0 || f[9] != x.check {
		return xzErr("stream footer does not match the stream")
	}
	return nil
}

// padding reads stream padding (4-byte groups of zeros) up to the end of
// the file or the next stream's header.
func (x *xzReader) padding() error {
	for {
		b, err := x.r.r.Peek(4)
		if len(b) == 0 && err == io.EOF {
			return io.EOF
		}
		if len(b) < 4 {
			return xzErr("stream padding: %d bytes at the end", len(b))
		}
		if !bytes.Equal(b, []byte{0, 0, 0, 0}) {
			return x.streamHeader()
		}
		x.full(4)
	}
}
