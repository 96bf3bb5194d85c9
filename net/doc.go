// Package net is the home of Flint's host-side network backends: the code
// that moves Ethernet frames between a virtio-net device and the host
// kernel. It holds no code itself; each backend is a sub-package:
//
//   - net/tap: Linux TAP interfaces opened through /dev/net/tun with
//     IFF_TAP|IFF_NO_PI|IFF_VNET_HDR (the 12-byte virtio-net header travels
//     with every frame, so checksum and segmentation offloads pass straight
//     through), TUNSETOFFLOAD driven by the features the guest acked,
//     optional IFF_MULTI_QUEUE, and an allocation-free readv/writev data
//     path that parks in the Go netpoller.
//
// What the backends own: opening, configuring and closing host interfaces,
// the vnet-header ABI the kernel speaks, and moving bytes between caller
// supplied buffers (usually slices of guest memory) and the kernel. What
// they do not own: virtqueues, descriptor chains, feature negotiation or
// interrupts; those belong to virtio/netdev, which declares the small Backend
// interface it needs, and vmm plugs a backend in.
//
// Import rules: nothing under net imports kvm, virtio, devices or vmm. A
// backend depends on the standard library and golang.org/x/sys/unix only
// (no cgo), so it can be tested, benchmarked and reused without a VM.
package net
