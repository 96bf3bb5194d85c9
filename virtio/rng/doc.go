// Package rng is the virtio entropy device (virtio-rng, virtio 1.2 §5.4,
// device ID 4): one request queue whose device-writable buffers the
// device fills from the host's kernel random source (crypto/rand, that
// is getrandom(2)), so a guest never waits for entropy at boot. Each
// chain gets at most MaxChainBytes; a rate limiter (Firecracker's
// "entropy": {"rate_limiter": ...}, bandwidth in bytes and ops in
// requests) may hold requests back. It implements virtio.Device; the
// queue is served by a virtio.Engine.
//
// A chain with device-readable buffers is completed with used length 0
// and counted (BadChains); chains the queue rejects are counted
// (Malformed).
//
// rng imports virtio, virtio/queue, mem and ratelimit. It must not
// import kvm, vmm, devices or any transport. It has no unsafe code.
package rng
