package fs

import "golang.org/x/sys/unix"

// handle is an open host file or directory (OPEN, CREATE, OPENDIR).
type handle struct {
	fd   int // -1: free
	gen  uint32
	dir  bool
	node uint64 // the nodeid opened (READDIRPLUS looks up below it)
}

// handleTable hands out file handles: fh is the slot index plus one in
// the low 32 bits and the slot's generation in the high 32, so a stale or
// guessed fh finds nothing. Lookups allocate nothing. It is guarded by
// fs.mu.
type handleTable struct {
	slots []handle
	free  []uint32
	open  int
}

// add stores fd, opened from node, and returns its fh.
func (t *handleTable) add(fd int, dir bool, node uint64) uint64 {
	var i uint32
	if n := len(t.free); n > 0 {
		i = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		t.slots = append(t.slots, handle{fd: -1})
		i = uint32(len(t.slots) - 1)
	}
	h := &t.slots[i]
	h.fd, h.dir, h.node = fd, dir, node
	h.gen++
	t.open++
	return uint64(h.gen)<<32 | uint64(i+1)
}

// get returns the handle fh names, or nil (unknown, released, or of the
// wrong kind).
func (t *handleTable) get(fh uint64, dir bool) *handle {
	i := uint32(fh) - 1
	if uint64(i) >= uint64(len(t.slots)) {
		return nil
	}
	h := &t.slots[i]
	if h.fd < 0 || h.gen != uint32(fh>>32) || h.dir != dir {
		return nil
	}
	return h
}

// release closes fh's descriptor; it reports whether fh was open.
func (t *handleTable) release(fh uint64, dir bool) bool {
	h := t.get(fh, dir)
	if h == nil {
		return false
	}
	unix.Close(h.fd)
	h.fd = -1
	t.free = append(t.free, uint32(fh)-1)
	t.open--
	return true
}

// clear closes every handle.
func (t *handleTable) clear() {
	for i := range t.slots {
		if h := &t.slots[i]; h.fd >= 0 {
			unix.Close(h.fd)
			h.fd = -1
			t.free = append(t.free, uint32(i))
		}
	}
	t.open = 0
}
