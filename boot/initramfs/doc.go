// Package initramfs builds the early userspace Flint generates for a guest in
// command mode: a newc ("070701") cpio archive holding Flint's guest agent as
// /init, the kernel modules the guest needs and any extra files.
//
// It owns the cpio writer (Writer), which streams into any io.Writer or a
// caller's fixed buffer (BufferWriter), validates every name and never
// panics on bad input, and the NUL padding that lets the archive follow a
// user's initrd (WriteUserInitrd).
//
// It imports nothing from this module.
package initramfs
