// Package blk is the virtio-blk device (virtio 1.2 §5.2) over a raw image
// file: one request queue, read-only drives, flush, GET_ID (the drive's
// serial), a per-drive rate limiter and counters for metrics. It
// implements virtio.Device, so the same device runs behind virtio-mmio,
// virtio-pci and vhost-user (virtio/transport/...) and in tests.
//
// # Requests
//
// A request is one descriptor chain: a 16-byte device-readable header
// (type le32, reserved le32, sector le64), the data (device-readable for
// OUT, device-writable for IN and GET_ID) and a final device-writable
// status byte. The header may span buffers, and data may share a buffer
// with the header or the status; the device works on byte offsets within
// the chain's readable and writable parts, not on descriptor boundaries.
//
//   - IN (read) and OUT (write): the data length must be a multiple of 512
//     and [sector, sector+len/512) must lie inside the capacity, else the
//     answer is IOERR and no I/O happens. OUT on a read-only drive is
//     IOERR. Data moves with preadv/pwritev straight between the image
//     and guest memory: no staging copy, no allocation per request. A
//     transfer moves at most 4 MiB per system call and is abandoned
//     between two, answered IOERR, once a reset or Close begins or
//     ReplaceImage waits for it: a request of 4 GiB (descriptors naming
//     the same guest memory over and over) does not hold them for
//     seconds.
//   - FLUSH: with Options.Writeback the device offers VIRTIO_BLK_F_FLUSH
//     and a flush is fdatasync(2) on the image; a driver that does not
//     negotiate FLUSH was told of no write cache, so each of its writes
//     is synced before it completes (virtio 1.2 §5.2.6.2). Once a sync
//     failed, every later flush (and synced write) is IOERR until
//     ReplaceImage: the host may have dropped the pages that failed to
//     reach the disk, and a new fdatasync would not report it.
//     ReplaceImage syncs the image before it swaps it, with requests
//     held off, and fails without a swap if that sync fails; a loss the
//     guest was not yet answered IOERR for is reported by the first
//     flush on the new image. Without Writeback ("Unsafe",
//     Firecracker's default cache type) FLUSH is not offered, writes sit
//     in the host page cache until the host writes them back, and a
//     flush request a driver sends anyway is answered OK without
//     syncing: data the guest considers durable can be lost if the host
//     crashes.
//   - GET_ID: the drive's ID (at most 20 bytes, zero-padded) into the
//     data buffer.
//   - Anything else: UNSUPP.
//
// A chain without a writable last byte has nowhere to put a status: it is
// returned with used length 0 and counted (BadChains). A chain with a
// status byte but less than a full header is answered IOERR. Chains the
// queue rejects (bad descriptors, addresses outside guest memory) are
// returned with used length 0 by the queue and counted (Malformed). A
// driver that breaks the ring makes the device ask for
// DEVICE_NEEDS_RESET. Nothing a guest writes makes the device panic or
// touch memory or file offsets outside what it was given.
//
// # Rate limiting
//
// With Options.Limiter each request takes one op and, for IN and OUT, its
// data length in bandwidth tokens. When the limiter refuses, the device
// gives the chain back to the ring, publishes what it has completed, and
// its queue's virtio.Engine sleeps on one timer for as long as the limiter
// said, then resumes: no polling, no dropped requests.
//
// # Imports
//
// blk imports virtio, virtio/queue, mem, ratelimit and the standard
// library (plus x/sys/unix). It must not import kvm, vmm, devices or any
// transport. Its only unsafe code (io_unsafe.go) passes iovec arrays to
// preadv/pwritev.
package blk
