package boot

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
)

// A kernel developer's vmlinux carries its debug information (DWARF, symbol
// tables) in sections no program header covers: 300 MiB to over 1 GiB of
// file around 30-60 MiB of loadable bytes. Booting needs only the ELF
// header, the program headers and the PT_LOAD and PT_NOTE segments' bytes,
// so ReadKernel reads those alone and assembles them into a compact ELF
// image that ParseELF, Load and ELFKernelRelease read as they read the
// original file.
//
// The compact image is laid out as
//
//	[0, 64)              the ELF header: e_phoff = 64, no section headers
//	                     (e_shoff, e_shentsize, e_shnum, e_shstrndx = 0)
//	[64, 64+56*phnum)    every program header, in the file's order (so an
//	                     error's "program header N" is the file's N), with
//	                     p_offset rewritten; a header of any other type,
//	                     or with no file bytes, gets p_offset = p_filesz = 0
//	then                 the union of the PT_LOAD and PT_NOTE file ranges,
//	                     in file order, each run of overlapping or adjacent
//	                     ranges once (a vmlinux's PT_NOTE lies inside its
//	                     first PT_LOAD's bytes)
//
// Nothing else in Flint reads a kernel's sections: the PVH entry comes
// from PT_NOTE, the banner from the PT_LOAD bytes. ParseELF's messages
// about a malformed note give the note's offset in the compact image, not
// in the file; the program header index is the file's.

// ReadKernel reads the kernel file of size bytes from r as Flint boots it:
// an ELF vmlinux (by its magic) as CompactELF, anything else (a bzImage)
// whole. limit bounds the bytes returned, so a bzImage larger than limit is
// refused, while an ELF file may be any size as long as its loadable bytes
// fit. Errors are one line and do not name the file (the caller does).
func ReadKernel(r io.ReaderAt, size, limit int64) ([]byte, error) {
	if size < 0 {
		return nil, fmt.Errorf("negative file size %d", size)
	}
	magic := make([]byte, min(size, int64(len(elfMagic))))
	if err := readFull(r, magic, 0); err != nil {
		return nil, err
	}
	if IsELF(magic) {
		return CompactELF(r, size, limit)
	}
	if size > limit {
		return nil, fmt.Errorf("%d MiB is too large (limit %d MiB)", size>>20, limit>>20)
	}
	b := make([]byte, size)
	if err := readFull(r, b, 0); err != nil {
		return nil, err
	}
	return b, nil
}

// extent is a run of file bytes the compact image holds: [Off, End) of
// the file at At in the image.
type extent struct{ Off, End, At uint64 }

// CompactELF reads the ELF vmlinux of size bytes from r and returns the
// compact image described above, at most limit bytes. It reads the
// header, the program headers (1 to maxELFPhdrs of elfPhdrSize bytes,
// inside the file) and the bytes of every PT_LOAD and PT_NOTE (each range
// inside the file), nothing else, and allocates only after those checks,
// never more than the checked header, program headers and the union of
// the segments' ranges. The image is checked with ParseELF before it is
// returned, so every error a boot would meet later (bad notes, entry
// outside the segments, overlapping segments) comes now. Every error
// matches ErrInvalidKernel except I/O errors and the limit's.
func CompactELF(r io.ReaderAt, size, limit int64) ([]byte, error) {
	if size < 0 {
		return nil, fmt.Errorf("negative file size %d", size)
	}
	fsize := uint64(size)
	hdr := make([]byte, min(fsize, elfHeaderSize))
	if err := readFull(r, hdr, 0); err != nil {
		return nil, err
	}
	table, err := readPhdrs(r, hdr, fsize)
	if err != nil {
		return nil, err
	}
	exts, err := loadExtents(table, fsize)
	if err != nil {
		return nil, err
	}
	total := elfHeaderSize + uint64(len(table)) // <= 64 + 64*56
	for _, e := range exts {
		total += e.End - e.Off // the union lies in the file: no overflow
	}
	if limit < 0 || total > uint64(limit) {
		return nil, fmt.Errorf("ELF kernel's loadable segments and notes are %d MiB, more than the %d MiB limit", total>>20, max(limit, 0)>>20)
	}
	img := make([]byte, total)
	copy(img, hdr)
	le.PutUint64(img[32:], elfHeaderSize) // e_phoff
	le.PutUint64(img[40:], 0)             // e_shoff
	le.PutUint16(img[58:], 0)             // e_shentsize
	le.PutUint16(img[60:], 0)             // e_shnum
	le.PutUint16(img[62:], 0)             // e_shstrndx
	at := uint64(elfHeaderSize + len(table))
	for i := range exts {
		exts[i].At = at
		n := exts[i].End - exts[i].Off
		if err := readFull(r, img[at:at+n], exts[i].Off); err != nil {
			return nil, err
		}
		at += n
	}
	phdrs := img[elfHeaderSize : elfHeaderSize+len(table)]
	copy(phdrs, table)
	for o := 0; o < len(phdrs); o += elfPhdrSize {
		rewriteOffset(phdrs[o:o+elfPhdrSize], exts)
	}
	if _, err := ParseELF(img); err != nil {
		return nil, err
	}
	return img, nil
}

// readPhdrs reads the program header table of a file of size bytes
// whose first bytes are hdr. The header must be a 64-bit little-endian
// ELF header of 1 to maxELFPhdrs entries of elfPhdrSize bytes, else
// ParseELF says what is wrong with it (it checks those fields before it
// looks for the program headers); the table must lie in the file. The
// header's other fields are left to ParseELF on the compact image.
func readPhdrs(r io.ReaderAt, hdr []byte, size uint64) ([]byte, error) {
	if len(hdr) < elfHeaderSize || !IsELF(hdr) || hdr[4] != elfClass64 || hdr[5] != elfDataLSB ||
		le.Uint16(hdr[54:]) != elfPhdrSize || le.Uint16(hdr[56:]) == 0 || le.Uint16(hdr[56:]) > maxELFPhdrs {
		if _, err := ParseELF(hdr); err != nil {
			return nil, err
		}
		return nil, kernelErr(ErrBadELF, "ELF header refused") // not reached
	}
	phoff, phnum := le.Uint64(hdr[32:]), le.Uint16(hdr[56:])
	n := uint64(phnum) * elfPhdrSize
	if phoff > size || n > size-phoff {
		return nil, kernelErr(ErrKernelTruncated, "ELF program headers [%#x, +%d*%d) are outside the %d-byte file", phoff, phnum, elfPhdrSize, size)
	}
	table := make([]byte, n)
	if err := readFull(r, table, phoff); err != nil {
		return nil, err
	}
	return table, nil
}

// loadExtents checks that every PT_LOAD's and PT_NOTE's file range lies in
// a file of size bytes and returns the union of the non-empty ones, sorted
// and merged (At not yet set).
func loadExtents(table []byte, size uint64) ([]extent, error) {
	var exts []extent
	for o := 0; o < len(table); o += elfPhdrSize {
		ph := table[o : o+elfPhdrSize]
		if typ := le.Uint32(ph); typ != elfPTLoad && typ != elfPTNote {
			continue
		}
		// Checked even when empty, as ParseELF checks the original.
		off, filesz := le.Uint64(ph[8:]), le.Uint64(ph[32:])
		if off > size || filesz > size-off {
			return nil, kernelErr(ErrKernelTruncated, "ELF program header %d: file range [%#x, +%#x) is outside the %d-byte file", o/elfPhdrSize, off, filesz, size)
		}
		if filesz != 0 {
			exts = append(exts, extent{Off: off, End: off + filesz})
		}
	}
	return mergeExtents(exts), nil
}

// mergeExtents sorts exts by offset and merges overlapping or adjacent
// ones, so that every file byte is in at most one.
func mergeExtents(exts []extent) []extent {
	slices.SortFunc(exts, func(a, b extent) int { return cmp.Compare(a.Off, b.Off) })
	var merged []extent
	for _, e := range exts {
		if n := len(merged); n > 0 && e.Off <= merged[n-1].End {
			merged[n-1].End = max(merged[n-1].End, e.End)
			continue
		}
		merged = append(merged, e)
	}
	return merged
}

// hasFileBytes reports whether program header ph is a PT_LOAD or PT_NOTE
// with a non-empty file range: one whose bytes the compact image holds.
func hasFileBytes(ph []byte) bool {
	typ := le.Uint32(ph)
	return (typ == elfPTLoad || typ == elfPTNote) && le.Uint64(ph[32:]) != 0
}

// rewriteOffset points program header ph at its bytes in the compact
// image (the extent holding them), or at nothing (p_offset = p_filesz =
// 0) when the image holds none of its bytes.
func rewriteOffset(ph []byte, exts []extent) {
	if !hasFileBytes(ph) {
		le.PutUint64(ph[8:], 0)
		le.PutUint64(ph[32:], 0)
		return
	}
	off := le.Uint64(ph[8:])
	for _, e := range exts {
		if off >= e.Off && off < e.End {
			le.PutUint64(ph[8:], e.At+(off-e.Off))
			return
		}
	}
}

// readFull fills b from r at offset off; a file shorter than its size
// said (it shrank while being read) is an error.
func readFull(r io.ReaderAt, b []byte, off uint64) error {
	if len(b) == 0 {
		return nil
	}
	n, err := r.ReadAt(b, int64(off))
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return fmt.Errorf("read %d of %d bytes at %#x: the file shrank while being read?", n, len(b), off)
	}
	return fmt.Errorf("reading %d bytes at %#x: %w", len(b), off, err)
}
