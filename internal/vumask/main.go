// Command vumask is a vhost-user proxy that hides feature bits from the
// frontend. It listens on a unix socket, connects each frontend that
// arrives to the backend's socket, and relays every message both ways
// with its file descriptors, clearing the masked bits in the backend's
// GET_FEATURES reply (and nothing else). Backend-initiated requests travel
// on the channel whose fd SET_BACKEND_REQ_FD passes through, untouched.
//
//	vumask -listen FRONT.sock -backend BACK.sock [-clear 17,18,19,20,21,22,23,34]
//
// scripts/bench-net.sh puts it between user-mode Linux (virtio_uml) and
// DPDK's vhost backend (dpdk-testpmd net_vhost): DPDK 22.11 offers
// VIRTIO_F_RING_PACKED, which UML sets up wrongly (SET_VRING_BASE 0 drops
// the wrap counter), and VIRTIO_NET_F_CTRL_VQ with MQ and the CTRL_* bits,
// whose queue nobody serves when the frontend is UML rather than QEMU, so
// the guest driver's first control command spins forever. The default
// -clear list removes exactly those.
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

const (
	hdrLen         = 12  // request, flags, size: little-endian u32 each
	reqGetFeatures = 1   // VHOST_USER_GET_FEATURES
	flagReply      = 0x4 // the message is a reply
	maxPayload     = 4096
	maxFDs         = 8 // VHOST_MEMORY_BASELINE_NREGIONS
)

func main() {
	listen := flag.String("listen", "", "unix socket the frontend connects to")
	backend := flag.String("backend", "", "the backend's unix socket")
	clearBits := flag.String("clear", "17,18,19,20,21,22,23,34", "feature bits to hide from the frontend")
	flag.Parse()
	if *listen == "" || *backend == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: vumask -listen FRONT.sock -backend BACK.sock [-clear BITS]")
		os.Exit(2)
	}
	var mask uint64
	for _, s := range strings.Split(*clearBits, ",") {
		b, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || b < 0 || b > 63 {
			log.Fatalf("vumask: -clear %q: bad bit %q", *clearBits, s)
		}
		mask |= 1 << b
	}
	_ = os.Remove(*listen)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: *listen, Net: "unix"})
	if err != nil {
		log.Fatalf("vumask: %v", err)
	}
	log.Printf("vumask: %s -> %s, hiding features %#x", *listen, *backend, mask)
	for {
		front, err := l.AcceptUnix()
		if err != nil {
			log.Fatalf("vumask: accept: %v", err)
		}
		back, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: *backend, Net: "unix"})
		if err != nil {
			log.Printf("vumask: backend: %v", err)
			front.Close()
			continue
		}
		serve(front, back, mask)
	}
}

// serve relays one frontend's session; it returns when either side closes.
func serve(front, back *net.UnixConn, mask uint64) {
	var wg sync.WaitGroup
	wg.Add(2)
	done := func(dir string, err error) {
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			log.Printf("vumask: %s: %v", dir, err)
		}
		front.Close()
		back.Close()
		wg.Done()
	}
	go func() { done("frontend->backend", relay(front, back, 0)) }()
	go func() { done("backend->frontend", relay(back, front, mask)) }()
	wg.Wait()
	log.Printf("vumask: session ended")
}

// relay copies messages from src to dst, with the fds that came with
// each. In GET_FEATURES replies it clears the bits of mask.
func relay(src, dst *net.UnixConn, mask uint64) error {
	msg := make([]byte, hdrLen+maxPayload)
	oob := make([]byte, unix.CmsgSpace(maxFDs*4))
	for {
		// The fds arrive with the header's first byte.
		n, oobn, _, _, err := src.ReadMsgUnix(msg[:hdrLen], oob)
		if err != nil {
			return err
		}
		if n == 0 {
			return io.EOF
		}
		var fds []int
		if oobn > 0 {
			if fds, err = parseFDs(oob[:oobn]); err != nil {
				return err
			}
		}
		err = relayOne(src, dst, msg, n, fds, mask)
		for _, fd := range fds {
			unix.Close(fd)
		}
		if err != nil {
			return err
		}
	}
}

// relayOne completes the message whose first n header bytes are in msg
// and forwards it with fds.
func relayOne(src, dst *net.UnixConn, msg []byte, n int, fds []int, mask uint64) error {
	if _, err := io.ReadFull(src, msg[n:hdrLen]); err != nil {
		return err
	}
	req := binary.LittleEndian.Uint32(msg[0:])
	flags := binary.LittleEndian.Uint32(msg[4:])
	size := int(binary.LittleEndian.Uint32(msg[8:]))
	if size > maxPayload {
		return fmt.Errorf("request %d: payload of %d bytes", req, size)
	}
	body := msg[hdrLen : hdrLen+size]
	if _, err := io.ReadFull(src, body); err != nil {
		return err
	}
	if mask != 0 && req == reqGetFeatures && flags&flagReply != 0 && size == 8 {
		f := binary.LittleEndian.Uint64(body)
		binary.LittleEndian.PutUint64(body, f&^mask)
		log.Printf("vumask: GET_FEATURES %#x -> %#x", f, f&^mask)
	}
	var rights []byte
	if len(fds) > 0 {
		rights = unix.UnixRights(fds...)
	}
	_, _, err := dst.WriteMsgUnix(msg[:hdrLen+size], rights, nil)
	return err
}

func parseFDs(oob []byte) ([]int, error) {
	cms, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, cm := range cms {
		f, err := unix.ParseUnixRights(&cm)
		if err != nil {
			return nil, err
		}
		fds = append(fds, f...)
	}
	return fds, nil
}
