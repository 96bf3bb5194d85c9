package vmlinux

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// lz4LegacyMagic starts an LZ4 stream in the legacy frame format (what
// `lz4 -l` writes and the kernel's build uses): after it, blocks of a
// little-endian 32-bit compressed size and an LZ4 block, each block
// decompressing to at most lz4LegacyBlockMax bytes.
const (
	lz4LegacyMagic    = 0x184C2102
	lz4LegacyBlockMax = 8 << 20
	lz4MinMatch       = 4
)

// decodeLZ4Legacy decodes a legacy-frame LZ4 stream into exactly want
// bytes (the size the kernel's build appends after the stream). A block
// size of the magic again starts a concatenated stream, as the kernel's
// decompressor allows. Input after the stream (fewer than 4 bytes, or a
// "block" that would run past the end) is rejected unless want bytes have
// been produced by then: that trailer is what makes `lz4 -dc` exit 1.
func decodeLZ4Legacy(in []byte, want int) ([]byte, error) {
	if len(in) < 4 || binary.LittleEndian.Uint32(in) != lz4LegacyMagic {
		return nil, errors.New("lz4: no legacy frame magic 0x184c2102")
	}
	// At most 255 output bytes per input byte: no allocation a short
	// input could make huge.
	out := make([]byte, 0, min(want, 255*len(in)))
	p := 4
	for len(out) < want {
		if len(in)-p < 4 {
			return nil, fmt.Errorf("lz4: stream ends after %d of %d bytes", len(out), want)
		}
		n := binary.LittleEndian.Uint32(in[p:])
		p += 4
		if n == lz4LegacyMagic {
			continue
		}
		if uint64(n) > uint64(len(in)-p) {
			return nil, fmt.Errorf("lz4: block of %d bytes at offset %d runs past the end of the stream (%d bytes)", n, p-4, len(in))
		}
		limit := min(want, len(out)+lz4LegacyBlockMax)
		var err error
		if out, err = decodeLZ4Block(in[p:p+int(n)], out, limit); err != nil {
			return nil, fmt.Errorf("lz4: block at offset %d: %w", p-4, err)
		}
		p += int(n)
	}
	return out, nil
}

// decodeLZ4Block appends the decompression of one LZ4 block to out, never
// growing out past limit. Matches may reach back into earlier output (the
// previous blocks), which is a superset of what independent blocks need.
func decodeLZ4Block(src, out []byte, limit int) ([]byte, error) {
	i := 0
	for i < len(src) {
		token := src[i]
		i++
		lit, err := lz4Length(src, &i, int(token>>4))
		if err != nil {
			return out, err
		}
		if lit > len(src)-i {
			return out, fmt.Errorf("%d literals at %d run past the block (%d bytes)", lit, i, len(src))
		}
		if lit > limit-len(out) {
			return out, errors.New("output longer than the stream's declared size")
		}
		out = append(out, src[i:i+lit]...)
		i += lit
		if i == len(src) {
			return out, nil // the last sequence has literals only
		}
		if len(src)-i < 2 {
			return out, fmt.Errorf("truncated match offset at %d", i)
		}
		off := int(binary.LittleEndian.Uint16(src[i:]))
		i += 2
		if off == 0 || off > len(out) {
			return out, fmt.Errorf("match offset %d with %d bytes of output", off, len(out))
		}
		ml, err := lz4Length(src, &i, int(token&15))
		if err != nil {
			return out, err
		}
		ml += lz4MinMatch
		if ml > limit-len(out) {
			return out, errors.New("output longer than the stream's declared size")
		}
		// Byte by byte: a match may overlap the bytes it produces.
		from := len(out) - off
		for k := 0; k < ml; k++ {
			out = append(out, out[from+k])
		}
	}
	return out, errors.New("block ends with a match (the last sequence must be literals)")
}

// lz4Length reads a literal or match length: the token's 4 bits, then,
// when they are 15, bytes added while they are 255.
func lz4Length(src []byte, i *int, n int) (int, error) {
	if n != 15 {
		return n, nil
	}
	for {
		if *i >= len(src) {
			return 0, errors.New("truncated length")
		}
		b := src[*i]
		*i++
		n += int(b)
		if n > 1<<30 {
			return 0, errors.New("length over 1 GiB")
		}
		if b != 255 {
			return n, nil
		}
	}
}
