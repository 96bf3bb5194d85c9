package initramfs

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/flintvm/flint/internal/hostfile"
)

// Module file suffixes, in the order a tree is searched for a module.
var moduleSuffixes = []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"}

// MaxModuleSize bounds a module's decompressed size (the largest in-tree
// modules are tens of MiB), so a corrupt or hostile file cannot exhaust
// memory.
const MaxModuleSize = 256 << 20

// ErrBadModule: a module file that cannot be read as one (bad compression,
// a suffix that does not match its contents, too large, not ELF).
var ErrBadModule = errors.New("bad kernel module file")

// Compression formats, recognised by their magic numbers.
var (
	magicGzip = []byte{0x1f, 0x8b}
	magicXZ   = []byte{0xfd, '7', 'z', 'X', 'Z', 0}
	magicZstd = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicELF  = []byte{0x7f, 'E', 'L', 'F'}
)

// compression returns the compression a module's file name promises:
// "" (plain .ko), "xz", "zst" or "gz".
func compression(path string) string {
	switch {
	case strings.HasSuffix(path, ".ko.xz"):
		return "xz"
	case strings.HasSuffix(path, ".ko.zst"):
		return "zst"
	case strings.HasSuffix(path, ".ko.gz"):
		return "gz"
	}
	return ""
}

// ReadModule returns the contents of the module file at path as the kernel
// loads it: a .ko as it is, a .ko.gz, .ko.xz or .ko.zst decompressed (Debian
// 12's kernels have no in-kernel module decompression). The contents must
// match the suffix and be an ELF file of at most MaxModuleSize bytes.
func ReadModule(path string) ([]byte, error) {
	var d moduleDecoder
	defer d.close()
	return d.read(path)
}

// moduleDecoder decodes module files one after the other, reusing its
// buffers and its zstd decoder (costly to set up: megabytes of tables).
type moduleDecoder struct {
	buf bytes.Buffer // the decoded module
	br  *bufio.Reader
	zst *zstd.Decoder
}

func (d *moduleDecoder) close() {
	if d.zst != nil {
		d.zst.Close()
	}
}

// read returns the decoded contents of the module file at path, valid
// until the next call.
func (d *moduleDecoder) read(path string) ([]byte, error) {
	f, err := hostfile.OpenInput(path, os.O_RDONLY, hostfile.Regular)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return d.decode(path, f)
}

// decode reads a module from r (the file at path), decompressing it as its
// name says.
func (d *moduleDecoder) decode(path string, r io.Reader) ([]byte, error) {
	d.buf.Reset()
	kind := compression(path)
	var head [6]byte
	n, err := io.ReadFull(r, head[:])
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, fmt.Errorf("reading module %s: %w", path, err)
	}
	want := map[string][]byte{"": magicELF, "xz": magicXZ, "zst": magicZstd, "gz": magicGzip}[kind]
	if !bytes.HasPrefix(head[:n], want) {
		what := "an ELF file"
		if kind != "" {
			what = kind + "-compressed data"
		}
		return nil, fmt.Errorf("%w %s: its name says %s, its first bytes are % x", ErrBadModule, path, what, head[:n])
	}
	// The decoders read byte by byte: buffer the file, or that is a
	// system call per byte.
	src := io.MultiReader(bytes.NewReader(head[:n]), r)
	if d.br == nil {
		d.br = bufio.NewReaderSize(src, 64<<10)
	} else {
		d.br.Reset(src)
	}
	var dec io.Reader
	switch kind {
	case "":
		dec = d.br
	case "gz":
		zr, err := gzip.NewReader(d.br)
		if err != nil {
			return nil, fmt.Errorf("%w %s: gzip: %v", ErrBadModule, path, err)
		}
		dec = zr
	case "xz":
		xr, err := newXZReader(d.br)
		if err != nil {
			return nil, fmt.Errorf("%w %s: xz: %v", ErrBadModule, path, err)
		}
		dec = xr
	case "zst":
		if d.zst == nil {
			d.zst, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(MaxModuleSize))
		}
		if err == nil {
			err = d.zst.Reset(d.br)
		}
		if err != nil {
			return nil, fmt.Errorf("%w %s: zstd: %v", ErrBadModule, path, err)
		}
		dec = d.zst
	}
	m, err := d.buf.ReadFrom(io.LimitReader(dec, MaxModuleSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w %s: %s: %v", ErrBadModule, path, orPlain(kind), err)
	}
	if m > MaxModuleSize {
		return nil, fmt.Errorf("%w %s: larger than %d MiB", ErrBadModule, path, MaxModuleSize>>20)
	}
	out := d.buf.Bytes()
	if !bytes.HasPrefix(out, magicELF) {
		return nil, fmt.Errorf("%w %s: the decompressed module is not an ELF file", ErrBadModule, path)
	}
	return out, nil
}

func orPlain(kind string) string {
	if kind == "" {
		return "read"
	}
	return "decompressing " + kind
}
