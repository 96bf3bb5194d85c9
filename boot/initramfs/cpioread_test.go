package initramfs

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"strconv"
)

// testEntry is one entry as a strict newc reader sees it.
type testEntry struct {
	Name         string
	Mode         uint32
	Ino          uint32
	Nlink        uint32
	RMajor       uint32
	RMinor       uint32
	Body         []byte
	HeaderOffset int
}

// readNewc parses one newc archive at the start of b, strictly: the magic,
// hex fields, a NUL-terminated name whose size matches, zero padding to 4
// bytes after the name and the body, and the trailer. It returns the entries
// (without the trailer) and the offset one past the trailer's padding.
func readNewc(b []byte) ([]testEntry, int, error) {
	var out []testEntry
	off := 0
	for {
		if off%4 != 0 {
			return nil, off, fmt.Errorf("header at %d is not 4-byte aligned", off)
		}
		if len(b)-off < headerLen {
			return nil, off, fmt.Errorf("truncated header at %d", off)
		}
		h := b[off : off+headerLen]
		if string(h[:6]) != newcMagic {
			return nil, off, fmt.Errorf("bad magic %q at %d", h[:6], off)
		}
		var f [13]uint32
		for i := range f {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				return nil, off, fmt.Errorf("field %d at %d: %v", i, off, err)
			}
			f[i] = uint32(v)
		}
		e := testEntry{Ino: f[0], Mode: f[1], Nlink: f[4], RMajor: f[9], RMinor: f[10], HeaderOffset: off}
		size, nameSize := int(f[6]), int(f[11])
		if nameSize < 1 || headerLen+nameSize > len(b)-off {
			return nil, off, fmt.Errorf("name size %d at %d", nameSize, off)
		}
		name := b[off+headerLen : off+headerLen+nameSize]
		if name[nameSize-1] != 0 || bytes.IndexByte(name[:nameSize-1], 0) >= 0 {
			return nil, off, fmt.Errorf("name at %d is not one NUL-terminated string", off)
		}
		e.Name = string(name[:nameSize-1])
		body := off + align4(headerLen+nameSize)
		if body > len(b) || !allZero(b[off+headerLen+nameSize:body]) {
			return nil, off, fmt.Errorf("bad name padding at %d", off)
		}
		end := body + align4(size)
		if size > len(b)-body || end > len(b) || !allZero(b[body+size:end]) {
			return nil, off, fmt.Errorf("bad body or padding of %q at %d", e.Name, off)
		}
		e.Body = b[body : body+size]
		off = end
		if e.Name == trailerName {
			return out, off, nil
		}
		out = append(out, e)
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// kernelSplit walks an initrd the way init/initramfs.c's unpack_to_rootfs
// does: an uncompressed archive where a '0' stands at a 4-byte aligned
// offset, NUL bytes skipped, anything else a compressed stream (gzip only
// here). It returns the entries of every archive in order, or the error the
// kernel would stop at ("broken padding", "invalid magic").
func kernelSplit(b []byte) ([]testEntry, error) {
	var all []testEntry
	for off := 0; off < len(b); {
		switch {
		case b[off] == '0' && off%4 == 0:
			es, n, err := readNewc(b[off:])
			if err != nil {
				return nil, fmt.Errorf("archive at %d: %v", off, err)
			}
			all = append(all, es...)
			off += n
		case b[off] == 0:
			off++
		case b[off] == '0':
			return nil, fmt.Errorf("broken padding: archive magic at unaligned offset %d", off)
		default:
			r := bytes.NewReader(b[off:])
			zr, err := gzip.NewReader(r)
			if err != nil {
				return nil, fmt.Errorf("invalid magic at start of compressed archive (%d): %v", off, err)
			}
			zr.Multistream(false)
			var plain bytes.Buffer
			if _, err := plain.ReadFrom(zr); err != nil {
				return nil, fmt.Errorf("gzip at %d: %v", off, err)
			}
			es, _, err := readNewc(plain.Bytes())
			if err != nil {
				return nil, fmt.Errorf("compressed archive at %d: %v", off, err)
			}
			all = append(all, es...)
			off = len(b) - r.Len()
		}
	}
	return all, nil
}
