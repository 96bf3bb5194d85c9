// Package virtio is the device-side core that every Flint virtio device
// and transport shares: the device status bits and the driver's
// initialization sequence (status.go), the common feature bits and device
// IDs (features.go), and the two interfaces that separate devices from
// transports (device.go):
//
//   - Device is what a device (virtio/netdev, virtio/blk) implements and a
//     transport (virtio/transport/mmio, .../pci, .../vhostuser) drives:
//     identity, offered features, feature acknowledgement, queue count and
//     sizes, configuration space, Activate and Reset.
//   - Interrupt is what a transport implements and hands to the device at
//     activation: the device's only way to notify the driver (used
//     buffers, configuration change, "needs reset").
//
// Every device queue is served by one Engine (loop.go): the loop that
// waits for the driver's kicks, pops chains, publishes used entries in
// batches, decides on interrupts, pauses for rate limiters, marks the
// queue broken on a driver error and stops at the device's reset. A
// device supplies only its per-chain work, a Handler (virtio/netdev's RX, TX
// and control queues, virtio/blk's request queue).
//
// For debug dumps (engine.go), an Engine records what it does (running,
// waiting for a kick or the backend, throttled, broken, stopped) with
// the queue's indices in an EngineStatus, one atomic store per wait
// transition, and the device reports them through EngineReporter;
// transports add them to their snapshots.
//
// The transport owns the device status state machine (NextStatus helps
// it), the feature-select windows, the queues' programming registers and
// the interrupt mechanics (ISR bits, MSI-X vectors, call fds). A device
// never learns which transport it sits behind: it sees negotiated
// features, validated queues (virtio/queue), a kick file per queue and an
// Interrupt. The same device therefore runs behind virtio-mmio,
// virtio-pci, vhost-user and in tests (see virtio/virtiotest).
//
// # Lifecycle, as the transport drives it
//
//  1. Driver writes 0 to status (or the device is new): the transport
//     calls Device.Reset and resets its queues.
//  2. ACKNOWLEDGE, DRIVER: nothing for the device.
//  3. Driver reads Features (through the transport's 32-bit windows, see
//     FeatureWord) and writes its own; at FEATURES_OK the transport checks
//     them with Negotiate and calls Device.AckFeatures. On error it leaves
//     FEATURES_OK clear, which tells the driver the set was refused.
//  4. Driver programs each queue (size, addresses, enable); the transport
//     applies them to its queue.Queue and calls SetFeatures and Validate.
//  5. DRIVER_OK: the transport calls Device.Activate with the memory, one
//     Queue per device queue and its Interrupt. On error, or whenever the
//     device calls Interrupt.NeedsReset, the transport sets
//     DEVICE_NEEDS_RESET and sends a configuration-change notification.
//  6. Reset (step 1) stops the device; Activate may follow again.
//
// vhost-user has no status register: its transport activates the device
// when the rings it needs have their kick fds, and resets it on
// GET_VRING_BASE or disconnect; the device sees the same calls.
//
// # Imports
//
// virtio imports mem, virtio/queue and the standard library. It must not
// import kvm, devices, any transport or any device package: interrupts and
// notifications cross this boundary only as the interfaces and files
// defined here.
package virtio
