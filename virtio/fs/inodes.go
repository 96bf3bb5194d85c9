package fs

// The node table: the guest's nodeids for host inodes. Each node holds an
// O_PATH file descriptor of its host inode (never a path), so a node
// stays the same file whatever is renamed around it, and every operation
// starts from a node's descriptor and at most one path component.

import (
	"golang.org/x/sys/unix"
)

// devIno identifies a host inode.
type devIno struct{ dev, ino uint64 }

// node is one host inode the guest knows by nodeid.
type node struct {
	id     uint64
	fd     int    // O_PATH|O_NOFOLLOW descriptor of the inode
	key    devIno // host identity
	mode   uint32 // S_IFMT bits when looked up (a node never changes type)
	lookup uint64 // the kernel's lookup count (FORGET takes it back)
}

// nodeTable maps nodeids to nodes and host inodes to nodeids. Nodeids are
// never reused within one activation: the next one only grows. The table
// is guarded by fs.mu.
type nodeTable struct {
	byID   map[uint64]*node
	byKey  map[devIno]*node
	nextID uint64
	devs   map[uint64]uint64 // host st_dev -> small index mixed into inode numbers
}

func (t *nodeTable) init(root *node) {
	t.byID = map[uint64]*node{rootID: root}
	t.byKey = map[devIno]*node{root.key: root}
	t.nextID = rootID + 1
	t.devs = map[uint64]uint64{root.key.dev: 0}
}

// get returns the node for id, or nil.
func (t *nodeTable) get(id uint64) *node { return t.byID[id] }

// count is the number of nodes besides the root.
func (t *nodeTable) count() int { return len(t.byID) - 1 }

// find returns the node already holding key, or nil.
func (t *nodeTable) find(key devIno) *node { return t.byKey[key] }

// add records a new node for fd (whose identity and type st gives) with
// one lookup.
func (t *nodeTable) add(fd int, st *unix.Stat_t) *node {
	n := &node{id: t.nextID, fd: fd, key: devIno{st.Dev, st.Ino}, mode: st.Mode & unix.S_IFMT, lookup: 1}
	t.nextID++
	t.byID[n.id] = n
	t.byKey[n.key] = n
	return n
}

// forget takes back k lookups of id and closes the node's descriptor when
// none is left. The root and unknown ids are ignored.
func (t *nodeTable) forget(id, k uint64) {
	n := t.byID[id]
	if n == nil || id == rootID {
		return
	}
	if k >= n.lookup {
		t.drop(n)
		return
	}
	n.lookup -= k
}

func (t *nodeTable) drop(n *node) {
	delete(t.byID, n.id)
	if t.byKey[n.key] == n {
		delete(t.byKey, n.key)
	}
	unix.Close(n.fd)
}

// clear drops every node but the root (the device's reset: the guest's
// nodeids are gone with its driver).
func (t *nodeTable) clear() {
	for id, n := range t.byID {
		if id != rootID {
			t.drop(n)
		}
	}
	t.nextID = rootID + 1
}

// inodeNumber is the number the guest sees for a host inode: the host's
// own on Root's file system, and mixed with a small per-device index on
// others (a share of "/" spans several), so that two files never show
// the same number. At most 255 other devices get their own index.
func (t *nodeTable) inodeNumber(dev, ino uint64) uint64 {
	i, ok := t.devs[dev]
	if !ok {
		i = uint64(len(t.devs)) % 256
		t.devs[dev] = i
	}
	return ino ^ i<<56
}
