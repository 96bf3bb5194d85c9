// Package transport holds what every register-based virtio transport
// (virtio/transport/mmio, virtio/transport/pci) shares, so that neither
// carries a copy of it:
//
//   - Core: the device status state machine (ACKNOWLEDGE, DRIVER,
//     FEATURES_OK, DRIVER_OK, FAILED, DEVICE_NEEDS_RESET, reset by writing
//     0), feature negotiation through 32-bit select windows, the per-queue
//     programming registers (select, size, ring addresses, enable),
//     validation of each queue against guest memory when the driver
//     enables it, one kick eventfd per enabled queue, activation of the
//     device at DRIVER_OK and its reset. A transport translates its
//     register layout into calls on a Core and supplies the
//     transport-specific half through Hooks (how to interrupt the driver,
//     where a queue's notify register is).
//   - ISR: the interrupt status bits (bit 0 used buffer, bit 1
//     configuration change) set atomically by device goroutines and
//     cleared by the driver, driving either an edge interrupt
//     (devices.IRQTrigger, e.g. a KVM irqfd) or a level line.
//   - Notifier: the small interface the VMM implements to turn a guest's
//     notify-register write into an eventfd signal without a VM exit
//     (KVM ioeventfd). Without one, or for writes it does not catch, the
//     transport's register handler signals the eventfd itself, so tests
//     and VMMs without ioeventfds work unchanged.
//   - Snapshot: a device's state for debug dumps (status, each queue's
//     ring words and engine state, ISR and interrupt mode, MSI-X bits),
//     from Core.Snapshot plus each transport's own part.
//
// # Concurrency
//
// Register accesses (vCPU goroutines) are serialised by the Core's mutex,
// which is also held while the Core calls Device.AckFeatures, Activate,
// Reset, ReadConfig and WriteConfig. The virtio.Interrupt handed to the
// device never takes that mutex: ISR bits are atomic, DEVICE_NEEDS_RESET
// is set with compare-and-swap, and a transport's Hooks.SignalQueue and
// Hooks.SignalConfig must not take it either, or a device goroutine
// signalling while the driver resets the device would deadlock with
// Device.Reset waiting for that goroutine. Core.Snapshot reads the ring
// words under that mutex, so a queue cannot be reset (nor its memory
// unmapped) meanwhile, but waits for it at most SnapshotWait: a dump must
// not hang behind a stuck reset.
//
// # Imports
//
// transport imports virtio, virtio/queue, mem, devices and the standard
// library (plus x/sys/unix for eventfds). It must not import kvm, the vmm
// or any device package: interrupts leave through devices.IRQTrigger,
// devices.IRQLine or the transports' own small interfaces, notifications
// arrive through Notifier, and the VMM implements those.
package transport
