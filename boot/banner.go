package boot

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/flintvm/flint/internal/hostfile"
)

// The kernel's banner (init/version.c's linux_banner, in .rodata): "Linux
// version RELEASE (BUILDER@HOST) (COMPILER) #N ...". An ELF vmlinux has no
// setup header, so its release comes from there.
var bannerPrefix = []byte("Linux version ")

// maxBannerCandidates bounds how many "Linux version " occurrences
// ELFKernelRelease checks before it gives up (a real vmlinux has one or
// two; a file full of them is not a kernel).
const maxBannerCandidates = 64

// ELFKernelRelease returns the release ("uname -r") of an ELF vmlinux from
// its banner: the first "Linux version RELEASE (" in the file bytes of its
// PT_LOAD segments (where .rodata lies; debug sections are never searched),
// in file order, whose RELEASE starts with a digit and names a
// /lib/modules directory (the check KernelRelease makes). File bytes that
// several segments share are searched once. Every error matches
// ErrInvalidKernel: ErrBadELF and the others of ParseELF, or
// ErrNoKernelVersion.
func ELFKernelRelease(image []byte) (string, error) {
	k, err := ParseELF(image)
	if err != nil {
		return "", err
	}
	var exts []extent
	for _, s := range k.Segments {
		exts = append(exts, extent{Off: s.Offset, End: s.Offset + s.Filesz})
	}
	seen := 0
	for _, e := range mergeExtents(exts) {
		// ParseELF checked every segment's file range lies in the file.
		b := image[e.Off:e.End]
		for {
			i := bytes.Index(b, bannerPrefix)
			if i < 0 {
				break
			}
			b = b[i+len(bannerPrefix):]
			if seen++; seen > maxBannerCandidates {
				return "", kernelErr(ErrNoKernelVersion, "more than %d \"Linux version \" strings in the ELF's loadable segments and none is a kernel banner", maxBannerCandidates)
			}
			if r, ok := bannerRelease(b); ok {
				return r, nil
			}
		}
	}
	return "", kernelErr(ErrNoKernelVersion, `no kernel banner ("Linux version RELEASE (...") in the ELF's loadable segments`)
}

// bannerRelease returns the release at the start of b, the text after
// "Linux version ": a word of at most maxRelease bytes that starts with a
// digit, passes checkRelease and is followed by " (".
func bannerRelease(b []byte) (string, bool) {
	b = b[:min(len(b), maxRelease+2)]
	end := bytes.IndexByte(b, ' ')
	if end <= 0 || !bytes.HasPrefix(b[end:], []byte(" (")) || b[0] < '0' || b[0] > '9' {
		return "", false
	}
	r := string(b[:end])
	if checkRelease(r) != nil {
		return "", false
	}
	return r, true
}

// ImageRelease returns the release of a kernel image of either format:
// KernelRelease for a bzImage, ELFKernelRelease for an ELF vmlinux.
func ImageRelease(image []byte) (string, error) {
	if IsELF(image) {
		return ELFKernelRelease(image)
	}
	return KernelRelease(image)
}

// maxReleaseFile bounds the read of a kernel.release file.
const maxReleaseFile = 256

// ReadReleaseFile reads a kernel build tree's include/config/kernel.release
// (one line: the release of the kernel built there) and checks the release
// as KernelRelease does. An error names the file.
func ReadReleaseFile(path string) (string, error) {
	f, err := hostfile.OpenInput(path, os.O_RDONLY, hostfile.Regular)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxReleaseFile+1))
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	if len(b) > maxReleaseFile {
		return "", fmt.Errorf("%s: %w: more than %d bytes, not a kernel.release file", path, ErrNoKernelVersion, maxReleaseFile)
	}
	r := strings.TrimSpace(string(b))
	if err := checkRelease(r); err != nil {
		return "", fmt.Errorf("%s: %w: %v", path, ErrNoKernelVersion, err)
	}
	return r, nil
}
