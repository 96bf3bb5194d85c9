package mem

import "encoding/binary"

// ReadU8 reads a byte at guest address addr.
func (m *Memory) ReadU8(addr uint64) (uint8, error) {
	b, err := m.Slice(addr, 1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

// ReadU16 reads a little-endian uint16 at guest address addr.
func (m *Memory) ReadU16(addr uint64) (uint16, error) {
	b, err := m.Slice(addr, 2)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(b), nil
}

// ReadU32 reads a little-endian uint32 at guest address addr.
func (m *Memory) ReadU32(addr uint64) (uint32, error) {
	b, err := m.Slice(addr, 4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

// ReadU64 reads a little-endian uint64 at guest address addr.
func (m *Memory) ReadU64(addr uint64) (uint64, error) {
	b, err := m.Slice(addr, 8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

// WriteU8 writes a byte at guest address addr.
func (m *Memory) WriteU8(addr uint64, v uint8) error {
	b, err := m.Slice(addr, 1)
	if err != nil {
		return err
	}
	b[0] = v
	return nil
}

// WriteU16 writes v little-endian at guest address addr.
func (m *Memory) WriteU16(addr uint64, v uint16) error {
	b, err := m.Slice(addr, 2)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint16(b, v)
	return nil
}

// WriteU32 writes v little-endian at guest address addr.
func (m *Memory) WriteU32(addr uint64, v uint32) error {
	b, err := m.Slice(addr, 4)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(b, v)
	return nil
}

// WriteU64 writes v little-endian at guest address addr.
func (m *Memory) WriteU64(addr uint64, v uint64) error {
	b, err := m.Slice(addr, 8)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint64(b, v)
	return nil
}
