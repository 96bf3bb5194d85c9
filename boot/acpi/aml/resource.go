package aml

// Resource data types (ACPI 6.x, section 6.4) for _CRS buffers.

// Resource is one resource descriptor inside a ResourceTemplate.
type Resource interface {
	// AppendResource appends the descriptor's encoding to b.
	AppendResource(b []byte) ([]byte, error)
}

// ResourceTemplate is a buffer of resource descriptors closed by an End Tag,
// as the ASL ResourceTemplate() macro builds it.
type ResourceTemplate []Resource

// Bytes returns the encoded descriptors including the End Tag (the contents
// of the buffer, without the Buffer opcode).
func (rt ResourceTemplate) Bytes() ([]byte, error) {
	var b []byte
	var err error
	for i, r := range rt {
		if r == nil {
			return nil, errorf("resource %d is nil", i)
		}
		if b, err = r.AppendResource(b); err != nil {
			return nil, err
		}
	}
	// End Tag: small item 0x0F, length 1; checksum 0 means "not checked".
	return append(b, 0x79, 0x00), nil
}

// AppendAML implements Term.
func (rt ResourceTemplate) AppendAML(b []byte) ([]byte, error) {
	body, err := rt.Bytes()
	if err != nil {
		return nil, err
	}
	return Buffer(body).AppendAML(b)
}

// IO is a 16-bit-decoded I/O port descriptor: Length ports somewhere in
// [Min, Max] at Align alignment; Min == Max for a fixed range.
type IO struct {
	Min, Max uint16 // lowest and highest possible first port
	Align    uint8  // alignment of the first port
	Length   uint8  // number of ports
}

// AppendResource implements Resource.
func (r IO) AppendResource(b []byte) ([]byte, error) {
	if r.Max < r.Min {
		return nil, errorf("IO descriptor: max %#x below min %#x", r.Max, r.Min)
	}
	b = append(b, 0x47, 0x01) // small item 0x08, length 7; decodes 16 bits
	b = appendU16(appendU16(b, r.Min), r.Max)
	return append(b, r.Align, r.Length), nil
}

// Memory32Fixed is a fixed 32-bit memory range consumed by a device.
type Memory32Fixed struct {
	Base, Length uint32 // the range [Base, Base+Length)
	ReadOnly     bool   // read-only (else read-write)
}

// AppendResource implements Resource.
func (r Memory32Fixed) AppendResource(b []byte) ([]byte, error) {
	if r.Length == 0 || uint64(r.Base)+uint64(r.Length) > 1<<32 {
		return nil, errorf("Memory32Fixed [%#x, +%#x) is empty or crosses 4 GiB", r.Base, r.Length)
	}
	var info byte = 1 // read-write
	if r.ReadOnly {
		info = 0
	}
	b = append(b, 0x86, 9, 0, info)
	return appendU32(appendU32(b, r.Base), r.Length), nil
}

// Interrupt is an Extended Interrupt descriptor (ASL Interrupt()) listing
// global system interrupts a device consumes. The zero value is level
// triggered, active high and exclusive.
type Interrupt struct {
	Edge      bool     // edge triggered (else level)
	ActiveLow bool     // active low (else active high)
	Shared    bool     // shared (else exclusive)
	GSIs      []uint32 // global system interrupts, 1 to 255 of them
}

// AppendResource implements Resource.
func (r Interrupt) AppendResource(b []byte) ([]byte, error) {
	if len(r.GSIs) == 0 || len(r.GSIs) > 255 {
		return nil, errorf("Interrupt descriptor lists %d interrupts, want 1 to 255", len(r.GSIs))
	}
	flags := byte(1) // resource consumer
	if r.Edge {
		flags |= 1 << 1
	}
	if r.ActiveLow {
		flags |= 1 << 2
	}
	if r.Shared {
		flags |= 1 << 3
	}
	n := 2 + 4*len(r.GSIs)
	b = append(b, 0x89, byte(n), byte(n>>8), flags, byte(len(r.GSIs)))
	for _, g := range r.GSIs {
		b = appendU32(b, g)
	}
	return b, nil
}

// Address space resource types and flags.
const (
	addrMemory  = 0
	addrIO      = 1
	addrBus     = 2
	genProducer = 0 // bit 0 clear: the bridge produces the range
	genMinFixed = 1 << 2
	genMaxFixed = 1 << 3
	memRW       = 1 << 0
	memNonCache = 0 << 1
	memPrefetch = 3 << 1
	ioEntireRng = 3
)

// WordBusNumber is the bus-number range a PCI host bridge decodes.
type WordBusNumber struct {
	Min, Max uint16 // inclusive bus range
}

// AppendResource implements Resource.
func (r WordBusNumber) AppendResource(b []byte) ([]byte, error) {
	return appendWord(b, "WordBusNumber", addrBus, 0, r.Min, r.Max)
}

// WordIO is an I/O port window a bridge forwards to its children
// (producer, fixed min and max, positive decode, entire range).
type WordIO struct {
	Min, Max uint16 // inclusive port range
}

// AppendResource implements Resource.
func (r WordIO) AppendResource(b []byte) ([]byte, error) {
	return appendWord(b, "WordIO", addrIO, ioEntireRng, r.Min, r.Max)
}

func appendWord(b []byte, what string, typ, tflags byte, lo, hi uint16) ([]byte, error) {
	if hi < lo {
		return nil, errorf("%s: max %#x below min %#x", what, hi, lo)
	}
	b = append(b, 0x88, 13, 0, typ, genProducer|genMinFixed|genMaxFixed, tflags)
	for _, v := range []uint16{0, lo, hi, 0, hi - lo + 1} {
		b = appendU16(b, v)
	}
	return b, nil
}

// DWordMemory is a 32-bit memory window a bridge forwards to its children
// (producer, fixed min and max, positive decode, read-write).
type DWordMemory struct {
	Min, Max     uint32 // inclusive address range
	Prefetchable bool   // else non-cacheable
}

// AppendResource implements Resource.
func (r DWordMemory) AppendResource(b []byte) ([]byte, error) {
	if r.Max < r.Min || (r.Min == 0 && r.Max == 0xffffffff) {
		return nil, errorf("DWordMemory: bad range [%#x, %#x]", r.Min, r.Max)
	}
	b = append(b, 0x87, 23, 0, addrMemory, genProducer|genMinFixed|genMaxFixed, memFlags(r.Prefetchable))
	for _, v := range []uint32{0, r.Min, r.Max, 0, r.Max - r.Min + 1} {
		b = appendU32(b, v)
	}
	return b, nil
}

// QWordMemory is a 64-bit memory window a bridge forwards to its children,
// or (Consumer) a range a device consumes, e.g. MMIO above 4 GiB.
type QWordMemory struct {
	Min, Max     uint64 // inclusive address range
	Prefetchable bool   // prefetchable (else non-cacheable)
	Consumer     bool   // a device consumes the range (else a bridge produces it)
}

// AppendResource implements Resource.
func (r QWordMemory) AppendResource(b []byte) ([]byte, error) {
	if r.Max < r.Min || (r.Min == 0 && r.Max == ^uint64(0)) {
		return nil, errorf("QWordMemory: bad range [%#x, %#x]", r.Min, r.Max)
	}
	gen := byte(genProducer | genMinFixed | genMaxFixed)
	if r.Consumer {
		gen |= 1
	}
	b = append(b, 0x8A, 43, 0, addrMemory, gen, memFlags(r.Prefetchable))
	for _, v := range []uint64{0, r.Min, r.Max, 0, r.Max - r.Min + 1} {
		b = appendU64(b, v)
	}
	return b, nil
}

func memFlags(prefetch bool) byte {
	if prefetch {
		return memRW | memPrefetch
	}
	return memRW | memNonCache
}
