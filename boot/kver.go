package boot

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/flintvm/flint/internal/hostfile"
)

// Setup header fields for the kernel version string (Linux x86 boot
// protocol, Documentation/arch/x86/boot.rst): kernel_version, at 0x20e
// since protocol 2.00, holds the string's file offset less 0x200; the
// string is NUL-terminated, lies inside the setup sectors, and begins with
// the release ("6.1.0-57-cloud-amd64 (debian-kernel@...) #1 SMP ...").
const (
	offKernelVersion = 0x20e
	minVersionProto  = 0x0200
	// MaxSetupSize is the largest real-mode setup a bzImage can have: the
	// boot sector plus 255 setup sectors. The version string lies in it.
	MaxSetupSize = (255 + 1) * sectorSize
	// maxRelease bounds the release string (utsname's field is 65 bytes).
	maxRelease = 64
)

// ErrNoKernelVersion: the bzImage carries no usable version string (a zero
// kernel_version pointer, one outside the setup sectors, no NUL, or a
// release that cannot name a /lib/modules directory).
var ErrNoKernelVersion = errors.New("no kernel version string")

// KernelRelease returns the kernel release ("uname -r", e.g.
// "6.1.0-57-cloud-amd64") recorded in the setup header of a bzImage: the
// first word of the string kernel_version points to. image needs to hold
// only the start of the file (MaxSetupSize bytes are always enough). The
// release names the kernel's /lib/modules directory, so it is checked to be
// one plain path element of printable ASCII. Every error matches
// ErrInvalidKernel and one of ErrKernelTruncated, ErrNotBzImage,
// ErrUnsupportedKernel or ErrNoKernelVersion.
func KernelRelease(image []byte) (string, error) {
	n := len(image)
	if n < offKernelVersion+2 {
		return "", kernelErr(ErrKernelTruncated, "truncated: %d bytes, the kernel version pointer is at %#x", n, offKernelVersion)
	}
	if f := le.Uint16(image[offBootFlag:]); f != BootFlag {
		return "", kernelErr(ErrNotBzImage, "not a bzImage (boot flag at 0x1fe is %#04x, want 0xaa55)", f)
	}
	if le.Uint32(image[offHeaderMagic:]) != HeaderMagic {
		return "", kernelErr(ErrNotBzImage, `not a bzImage (no "HdrS" magic at 0x202)`)
	}
	if v := le.Uint16(image[offVersion:]); v < minVersionProto {
		return "", kernelErr(ErrUnsupportedKernel, "boot protocol %d.%02d has no kernel_version field (2.00 and later have)", v>>8, v&0xff)
	}
	ptr := int(le.Uint16(image[offKernelVersion:]))
	if ptr == 0 {
		return "", kernelErr(ErrNoKernelVersion, "no kernel version string (kernel_version at 0x20e is 0)")
	}
	setupSects := int(image[offSetupSects])
	if setupSects == 0 {
		setupSects = 4
	}
	// The string must start inside the setup sectors (the protocol: the
	// pointer is less than 0x200*setup_sects) and end there too.
	start, end := ptr+0x200, (setupSects+1)*sectorSize
	if start >= end {
		return "", kernelErr(ErrNoKernelVersion, "kernel_version %#x points past the %d setup sectors", ptr, setupSects)
	}
	if n < end {
		// Accept a short image as long as the whole string is in it.
		end = n
	}
	if start >= end {
		return "", kernelErr(ErrKernelTruncated, "truncated: %d bytes, the version string starts at %#x", n, start)
	}
	s := image[start:end]
	nul := -1
	for i, c := range s {
		if c == 0 {
			nul = i
			break
		}
	}
	if nul < 0 {
		if end < (setupSects+1)*sectorSize {
			return "", kernelErr(ErrKernelTruncated, "truncated: %d bytes, the version string at %#x does not end before them", n, start)
		}
		return "", kernelErr(ErrNoKernelVersion, "the version string at %#x has no NUL inside the setup sectors", start)
	}
	full := string(s[:nul])
	release, _, _ := strings.Cut(full, " ")
	if err := checkRelease(release); err != nil {
		return "", kernelErr(ErrNoKernelVersion, "version string %.80q at %#x: %v", full, start, err)
	}
	return release, nil
}

// checkRelease accepts a release that can be used as a directory name under
// /lib/modules: non-empty, short, printable ASCII, no "/", not "." or "..".
func checkRelease(r string) error {
	switch {
	case r == "":
		return errors.New("empty release")
	case len(r) > maxRelease:
		return fmt.Errorf("release of %d bytes, at most %d", len(r), maxRelease)
	case r == "." || r == "..":
		return fmt.Errorf("release %q is not a directory name", r)
	}
	for _, c := range []byte(r) {
		if c <= ' ' || c >= 0x7f || c == '/' {
			return fmt.Errorf("release contains byte %#02x", c)
		}
	}
	return nil
}

// ReadKernelRelease reads the start of the bzImage at path and returns its
// KernelRelease. path must be a regular file: a FIFO, device or directory
// is an error at once (a FIFO is never waited on).
func ReadKernelRelease(path string) (string, error) {
	f, err := hostfile.OpenInput(path, os.O_RDONLY, hostfile.Regular)
	if err != nil {
		return "", err
	}
	defer f.Close()
	buf := make([]byte, MaxSetupSize)
	n, err := io.ReadFull(f, buf)
	if err != nil && err != io.ErrUnexpectedEOF {
		if err == io.EOF {
			return "", kernelErr(ErrKernelTruncated, "%s is empty", path)
		}
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	rel, err := KernelRelease(buf[:n])
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return rel, nil
}
