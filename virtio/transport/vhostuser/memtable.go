package vhostuser

// The frontend's memory table: its regions mapped MAP_SHARED from the fds
// of SET_MEM_TABLE, guest memory (mem.Memory over guest-physical
// addresses) for descriptors and buffers, and the user-address
// translation for ring addresses.

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/mem"
)

// region is one mapped region of the table.
type region struct {
	memRegionDesc
	mapping []byte // what mmap returned (page-aligned); unmapped by close
}

// memTable is one SET_MEM_TABLE, mapped.
type memTable struct {
	regions []region
	m       *mem.Memory
}

// mapMemTable maps each region from its fd. The fds stay owned by the
// caller (a mapping outlives its fd). Each fd must be a regular file
// (memfd, tmpfs, hugetlbfs) at least mmap_offset+size long: mapping past
// the end of a file would turn the device's first access into SIGBUS. A
// file on FUSE or a network file system is refused (see waitingFS).
func mapMemTable(descs []memRegionDesc, fds []int) (*memTable, error) {
	t := &memTable{}
	hosts := make([]mem.Region, 0, len(descs))
	page := uint64(os.Getpagesize())
	for i, d := range descs {
		var st unix.Stat_t
		if err := unix.Fstat(fds[i], &st); err != nil {
			t.close()
			return nil, fmt.Errorf("SET_MEM_TABLE: region %d: fstat: %w", i, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			t.close()
			return nil, fmt.Errorf("SET_MEM_TABLE: region %d: fd is not a regular file or memfd (mode %#o)", i, st.Mode)
		}
		var fs unix.Statfs_t
		if err := unix.Fstatfs(fds[i], &fs); err != nil {
			t.close()
			return nil, fmt.Errorf("SET_MEM_TABLE: region %d: fstatfs: %w", i, err)
		}
		if name := waitingFS(fs.Type); name != "" {
			t.close()
			return nil, fmt.Errorf("SET_MEM_TABLE: region %d: the file is on %s, where a page fault waits for a server: use a memfd, tmpfs or hugetlbfs", i, name)
		}
		if st.Size < 0 || uint64(st.Size) < d.MmapOffset+d.Size {
			t.close()
			return nil, fmt.Errorf("SET_MEM_TABLE: region %d: [%#x, +%#x) reaches past the end of its %d-byte file",
				i, d.MmapOffset, d.Size, st.Size)
		}
		// mmap wants a page-aligned offset: map from the page below and
		// slice the region out.
		delta := d.MmapOffset % page
		length := d.Size + delta
		if length < d.Size || length > uint64(int(^uint(0)>>1)) {
			t.close()
			return nil, fmt.Errorf("SET_MEM_TABLE: region %d: size %#x too large", i, d.Size)
		}
		b, err := unix.Mmap(fds[i], int64(d.MmapOffset-delta), int(length),
			unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_NORESERVE)
		if err != nil {
			t.close()
			return nil, fmt.Errorf("SET_MEM_TABLE: region %d: mmap %#x bytes at offset %#x: %w", i, length, d.MmapOffset-delta, err)
		}
		t.regions = append(t.regions, region{memRegionDesc: d, mapping: b})
		hosts = append(hosts, mem.NewRegion(d.GuestAddr, b[delta:delta+d.Size:delta+d.Size]))
	}
	m, err := mem.FromRegions(hosts...)
	if err != nil {
		t.close()
		return nil, fmt.Errorf("SET_MEM_TABLE: %w", err)
	}
	t.m = m
	return t, nil
}

// waitingFS names the file systems whose page faults wait for another
// process or another machine: FUSE (whose server may be the frontend
// itself, which then never answers: the device goroutine that touched
// the page would hang holding the process's mmap lock, and with it every
// goroutine that maps memory) and the network file systems. "" for any
// other (tmpfs, which holds memfds, hugetlbfs, local disks).
//
// The fstat and fstatfs that lead here ask a FUSE server too (fstatfs
// always; fstat once the cached attributes expire), and once the server
// has read the request no signal but a fatal one ends the wait. One that
// never answers stalls the session goroutine: it maps the table before
// it takes the session's lock (session.handle), so debug dumps
// (Snapshot) and device faults go on, and the backend serves one
// frontend at a time either way. But the session cannot end while it
// waits: closing the connection does not wake it, so Serve's return
// (net-backend's shutdown on SIGTERM) waits until the server answers or
// its connection to the kernel is aborted (the server process exits).
func waitingFS(magic int64) string {
	switch uint32(magic) {
	case unix.FUSE_SUPER_MAGIC:
		return "FUSE"
	case unix.NFS_SUPER_MAGIC:
		return "NFS"
	case unix.CIFS_SUPER_MAGIC, unix.SMB2_SUPER_MAGIC, unix.SMB_SUPER_MAGIC:
		return "SMB"
	case unix.V9FS_MAGIC:
		return "9p"
	case unix.CEPH_SUPER_MAGIC:
		return "Ceph"
	case unix.AFS_FS_MAGIC, unix.AFS_SUPER_MAGIC:
		return "AFS"
	case unix.CODA_SUPER_MAGIC:
		return "Coda"
	}
	return ""
}

// close unmaps every region. Nothing may use the table afterwards: the
// device must have been reset and the queues reset first.
func (t *memTable) close() {
	if t == nil {
		return
	}
	for _, r := range t.regions {
		unix.Munmap(r.mapping)
	}
	t.regions, t.m = nil, nil
}

// userToGuest translates frontend user address ua to a guest-physical
// address; [ua, ua+n) must lie inside one region.
func (t *memTable) userToGuest(ua, n uint64) (uint64, bool) {
	for _, r := range t.regions {
		if ua >= r.UserAddr && ua-r.UserAddr <= r.Size && n <= r.Size-(ua-r.UserAddr) {
			return r.GuestAddr + (ua - r.UserAddr), true
		}
	}
	return 0, false
}

// size is the total bytes mapped, for logs.
func (t *memTable) size() uint64 {
	var n uint64
	for _, r := range t.regions {
		n += r.Size
	}
	return n
}
