package fs

// READDIR and READDIRPLUS: the host directory's getdents64 records turned
// into fuse_dirent (and, for PLUS, fuse_entry_out with a lookup of each
// entry). The directory is positioned at the guest's offset (a d_off the
// device answered before, or 0) on every call, so a handle keeps no
// cursor of its own.

import (
	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/virtio/queue"
)

// direntSize is a fuse_dirent's size for a name of n bytes, padded to 8.
func direntSize(n int) int { return (direntLen + n + 7) &^ 7 }

func (r *requests) readdir(c *queue.Chain, h *inHeader, body []byte) (int, unix.Errno) {
	hd, off, e := r.readIn(body, true)
	if e != 0 {
		return 0, e
	}
	plus := h.opcode == opReaddirplus
	dir := r.d.nodes.get(hd.node)
	dev := r.d.rootDev
	if dir != nil {
		dev = dir.key.dev
	}
	budget := int(min(uint64(le32(body, 16)), uint64(c.WriteLen-outHeaderLen), replyMax))
	if _, err := unix.Seek(hd.fd, int64(off), unix.SEEK_SET); err != nil {
		return 0, errno(err)
	}
	out := r.answer()[:budget]
	pos := 0
	for {
		k, err := unix.Getdents(hd.fd, r.dents[:min(len(r.dents), max(budget, 4096))])
		if err != nil {
			if pos > 0 {
				return pos, 0
			}
			return 0, errno(err)
		}
		if k == 0 {
			return pos, 0
		}
		for p := 0; p+19 < k; {
			rec := r.dents[p:k]
			reclen := int(le16(rec, 16))
			if reclen < 20 || reclen > len(rec) {
				return pos, 0 // cannot happen: the kernel's own records
			}
			ino, doff, typ := le64(rec, 0), le64(rec, 8), uint32(rec[18])
			name, _, _ := cstring(rec[19:reclen])
			p += reclen
			size := direntSize(len(name))
			if plus {
				size += entryOutLen
			}
			if pos+size > len(out) {
				return pos, 0
			}
			b := out[pos : pos+size]
			if plus {
				r.plusEntry(b, dir, name, ino, dev, typ)
				b = b[entryOutLen:]
			}
			put64(b, 0, r.d.nodes.inodeNumber(dev, ino))
			put64(b, 8, doff)
			put32(b, 16, uint32(len(name)))
			put32(b, 20, typ)
			clear(b[direntLen:])
			copy(b[direntLen:], name)
			pos += size
		}
	}
}

// plusEntry writes READDIRPLUS's fuse_entry_out for name: a full lookup
// (one more lookup counted), or nodeid 0 (the guest then looks it up
// itself if it needs to) for "." and "..", when the directory's node is
// gone, or when the lookup fails (a race, the descriptor limit).
func (r *requests) plusEntry(b []byte, dir *node, name []byte, ino, dev uint64, typ uint32) {
	if dir != nil && checkName(name) == 0 {
		if n, e := r.d.lookup(dir, string(name), &r.st); e == 0 {
			r.d.fillEntry(b, n, &r.st)
			return
		}
	}
	clear(b[:entryOutLen])
	put64(b, 40, r.d.nodes.inodeNumber(dev, ino))
	put32(b, 40+60, typ<<12)
}
