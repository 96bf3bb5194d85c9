// Package initramfs builds the early userspace Flint generates for a guest in
// command mode: a newc ("070701") cpio archive holding Flint's guest agent as
// /init, the kernel modules the guest needs and any extra files.
//
// It owns:
//   - the cpio writer (Writer), which streams into any io.Writer or a
//     caller's fixed buffer (BufferWriter), validates every name and never
//     panics on bad input, and the NUL padding that lets the archive follow
//     a user's initrd (WriteUserInitrd);
//   - module resolution (FindTree, Resolve): which .ko files, in which
//     order, a /lib/modules/VERSION tree needs for a list of module names,
//     from modules.dep or, where the tree has none (one unpacked from a
//     distribution package), from each module's own .modinfo "depends=";
//     kernel build trees (FindBuildTree, IsBuildTree: a developer's
//     uninstalled build, its modules.order, modules.builtin and .config) and
//     kernel configuration files (Kconfig: which drivers are built in);
//   - module decompression (ReadModule): .ko.gz, .ko.xz and .ko.zst, since
//     Debian 12's kernels cannot decompress modules themselves; .ko.xz
//     through its own xz container reader (xzReader), which bounds the
//     LZMA2 dictionaries a file's headers ask for before allocating them;
//   - the builder (Build) and the layout the guest agent reads: /init, the
//     modules under ModuleDir, their load order in ModuleOrderPath, extra
//     files, all after a user's initrd when there is one.
//
// It imports nothing from this module: the kernel release that names the
// module tree comes from boot.KernelRelease, and the caller joins the two.
package initramfs
