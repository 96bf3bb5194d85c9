// Package hostfile opens the host files and creates the unix sockets a
// user names to Flint (kernel, initrd, drive images, config file; console
// file, log_path, metrics_path; the API and vhost-user sockets), so that
// no path can hang Flint, redirect its writes, or expose what it writes.
//
// # What it owns
//
//   - Inputs (OpenInput, ReadInput, ReadInputAt): opened with O_NONBLOCK, then fstat'ed
//     and required to be a regular file (or a block device where the
//     caller allows one, for drives) before anything is read; a FIFO,
//     socket or character device is an error at once instead of an open
//     or read that never returns. Symbolic links ARE followed: kernels
//     and images are commonly links (/boot/vmlinuz), and reading through
//     one gives a user nothing they could not read by naming the target.
//   - Outputs (OpenOutput): opened append-only with O_NOFOLLOW (a link
//     planted at the path cannot redirect Flint's writes into another
//     file), O_NONBLOCK (a FIFO with no reader is ENXIO at once) and
//     O_CLOEXEC, created with mode 0600 (the guest's console and Flint's
//     logs are not for every local user; an existing file keeps its
//     mode). A regular file, or a FIFO that has a reader (a log
//     collector), is accepted; anything else is refused.
//   - Capped writers (Cap): stop writing after a byte budget and report
//     it once, so a guest cannot fill the host's disk through its console.
//   - Unix sockets (Listen): created with their final permissions at
//     bind time (the umask is narrowed around bind(2), so there is no
//     window in which the socket has the process umask's permissions and
//     no chmod that could follow a symbolic link), a stale socket of a
//     dead process replaced, a live one or any other file an error.
//
// # Imports
//
// The standard library and golang.org/x/sys/unix only.
package hostfile
