// Package vmlinux makes the uncompressed ELF kernel (vmlinux) out of an x86
// bzImage, for tests: Flint boots ELF kernels as Firecracker does, and
// Debian ships only bzImages. It owns the setup header's payload fields
// (payload_offset, payload_length), the decompressors for the payload
// formats (LZ4 in the legacy frame, Debian 12's cloud kernel; gzip; XZ
// with LZMA2 alone: the x86 BCJ filter of Debian's generic kernel is not
// decoded) and
// the "size appended" trailer the kernel's build writes after them, and
// DisablePVH, which hides a vmlinux's PVH entry note so that a loader
// takes the 64-bit Linux entry instead.
package vmlinux

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ulikunitz/xz"
)

// Setup header fields (Documentation/arch/x86/boot.rst).
const (
	offSetupSects    = 0x1f1
	offHeaderMagic   = 0x202
	offVersion       = 0x206
	offPayloadOffset = 0x248
	offPayloadLength = 0x24c
	headerMagic      = 0x53726448 // "HdrS"
	minVersion       = 0x0208     // payload_offset/payload_length
	sectorSize       = 512

	// maxKernel bounds the decompressed size a payload may declare.
	maxKernel = 1 << 30
)

var le = binary.LittleEndian

// FromBzImage returns the vmlinux ELF file compressed inside the bzImage
// bz. The payload is located through the setup header and decompressed by
// its magic: LZ4 legacy frame (Debian 12's cloud kernel), gzip, or XZ
// without filters before LZMA2 (Debian 12's generic kernel has the x86 BCJ
// filter there: refused). The result is checked to start with the ELF
// magic; nothing else about it is validated (boot does that).
func FromBzImage(bz []byte) ([]byte, error) {
	payload, err := Payload(bz)
	if err != nil {
		return nil, err
	}
	var out []byte
	switch {
	case bytes.HasPrefix(payload, []byte{0x02, 0x21, 0x4c, 0x18}):
		want, body, err := sizeTrailer(payload)
		if err != nil {
			return nil, err
		}
		if out, err = decodeLZ4Legacy(body, want); err != nil {
			return nil, err
		}
	case bytes.HasPrefix(payload, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		want, body, err := sizeTrailer(payload)
		if err != nil {
			return nil, err
		}
		if out, err = decodeXZ(body, want); err != nil {
			return nil, err
		}
	case bytes.HasPrefix(payload, []byte{0x1f, 0x8b}):
		// gzip carries its own size: the build appends none.
		r, err := gzip.NewReader(bytes.NewReader(payload))
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		r.Multistream(false)
		if out, err = io.ReadAll(io.LimitReader(r, maxKernel+1)); err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		if len(out) > maxKernel {
			return nil, fmt.Errorf("gzip: more than %d bytes", maxKernel)
		}
	default:
		n := min(len(payload), 6)
		return nil, fmt.Errorf("payload compression not supported (starts % x): want LZ4 legacy, XZ or gzip", payload[:n])
	}
	if !bytes.HasPrefix(out, []byte(elf.ELFMAG)) {
		return nil, errors.New("decompressed payload is not an ELF file")
	}
	return out, nil
}

// Payload returns the compressed kernel inside bz: payload_length bytes at
// payload_offset from the start of the protected-mode code (boot protocol
// 2.08 and later).
func Payload(bz []byte) ([]byte, error) {
	if len(bz) < 0x250 {
		return nil, fmt.Errorf("bzImage truncated: %d bytes, the setup header alone needs %d", len(bz), 0x250)
	}
	if le.Uint32(bz[offHeaderMagic:]) != headerMagic {
		return nil, errors.New(`not a bzImage: no "HdrS" magic at 0x202`)
	}
	if v := le.Uint16(bz[offVersion:]); v < minVersion {
		return nil, fmt.Errorf("boot protocol %d.%02d has no payload_offset (need 2.08)", v>>8, v&0xff)
	}
	sects := int(bz[offSetupSects])
	if sects == 0 {
		sects = 4
	}
	start := uint64(sects+1)*sectorSize + uint64(le.Uint32(bz[offPayloadOffset:]))
	n := uint64(le.Uint32(bz[offPayloadLength:]))
	if n == 0 || start+n > uint64(len(bz)) {
		return nil, fmt.Errorf("payload [%#x, %#x) is empty or outside the %d-byte file", start, start+n, len(bz))
	}
	return bz[start : start+n], nil
}

// sizeTrailer splits off the little-endian 32-bit decompressed size that
// the kernel's build appends after an LZ4, XZ, LZMA, LZO, bzip2 or zstd
// payload.
func sizeTrailer(payload []byte) (int, []byte, error) {
	if len(payload) < 8 {
		return 0, nil, fmt.Errorf("payload of %d bytes has no room for its size trailer", len(payload))
	}
	body := payload[:len(payload)-4]
	want := le.Uint32(payload[len(body):])
	if want == 0 || want > maxKernel {
		return 0, nil, fmt.Errorf("payload's size trailer says %d bytes (want 1..%d)", want, maxKernel)
	}
	return int(want), body, nil
}

// decodeXZ decodes one XZ stream of want bytes. Debian's generic kernel
// has the x86 BCJ filter before LZMA2, which ulikunitz/xz does not decode:
// the error says so.
func decodeXZ(body []byte, want int) ([]byte, error) {
	r, err := xz.ReaderConfig{SingleStream: true}.NewReader(bytes.NewReader(body))
	var out []byte
	if err == nil {
		out, err = readExactly(r, want)
	}
	if err != nil && strings.Contains(err.Error(), "filter") {
		return nil, fmt.Errorf("xz: %w (only LZMA2 alone is decoded, not the x86 BCJ filter)", err)
	} else if err != nil {
		return nil, fmt.Errorf("xz: %w", err)
	}
	return out, nil
}

// readExactly reads r to its end and checks it produced want bytes.
func readExactly(r io.Reader, want int) ([]byte, error) {
	out, err := io.ReadAll(io.LimitReader(r, int64(want)+1))
	if err != nil {
		return nil, err
	}
	if len(out) != want {
		return nil, fmt.Errorf("decompressed %d bytes, the size trailer says %d", len(out), want)
	}
	return out, nil
}

// XenNotePhys32Entry is XEN_ELFNOTE_PHYS32_ENTRY, the note type of the PVH
// entry point.
const XenNotePhys32Entry = 18

// DisablePVH returns a copy of the vmlinux ELF file image in which the PVH
// entry note (owner "Xen", type XEN_ELFNOTE_PHYS32_ENTRY) has type 0
// instead: the kernel is unchanged, but a loader no longer finds a PVH
// entry point and enters through the 64-bit Linux boot protocol, as it
// would a kernel built without CONFIG_PVH. It fails if there is no such
// note.
func DisablePVH(image []byte) ([]byte, error) {
	f, err := elf.NewFile(bytes.NewReader(image))
	if err != nil {
		return nil, err
	}
	out := append([]byte(nil), image...)
	found := false
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE || p.Off > uint64(len(image)) || p.Filesz > uint64(len(image))-p.Off {
			continue
		}
		align := uint64(4)
		if p.Align == 8 {
			align = 8
		}
		notes := image[p.Off : p.Off+p.Filesz]
		for o := uint64(0); o+12 <= uint64(len(notes)); {
			namesz, descsz, typ := uint64(le.Uint32(notes[o:])), uint64(le.Uint32(notes[o+4:])), le.Uint32(notes[o+8:])
			// The name at 12, the descriptor and the next note at the
			// segment's alignment from this note's start.
			desc := (12 + namesz + align - 1) &^ (align - 1)
			next := o + (desc+descsz+align-1)&^(align-1)
			if o+desc+descsz > uint64(len(notes)) {
				break
			}
			if typ == XenNotePhys32Entry && bytes.Equal(notes[o+12:o+12+namesz], []byte("Xen\x00")) {
				le.PutUint32(out[p.Off+o+8:], 0)
				found = true
			}
			o = next
		}
	}
	if !found {
		return nil, errors.New("no PVH entry note (Xen, XEN_ELFNOTE_PHYS32_ENTRY) in the ELF file")
	}
	return out, nil
}
