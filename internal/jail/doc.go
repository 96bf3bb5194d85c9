// Package jail runs Flint with least privilege once its host resources are
// open: new mount, pid and IPC namespaces, the jail directory as its root
// (pivot_root), an unprivileged uid and gid with no capabilities,
// no_new_privs, and RLIMIT_NOFILE/RLIMIT_FSIZE. It owns the whole
// mechanism; cmd/flint only maps its flags to a Spec and calls it.
//
// # The two processes and the handoff
//
// A Go program without cgo cannot enter a new pid (or, being multithreaded,
// mount) namespace itself: unshare(CLONE_NEWPID) only affects children, and
// unshare(CLONE_NEWNS) refuses a process whose threads share their
// filesystem state. So Launch, in the process the user started (the
// launcher), re-executes /proc/self/exe with the same arguments in new
// mount, pid and IPC namespaces (clone flags), and then only waits: it
// forwards SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGUSR1, restores the
// terminal's settings if the child died without doing it (a seccomp kill),
// and exits with the child's status (128+N for a signal N).
//
// What crosses the exec:
//
//   - stdin, stdout and stderr, as they are (the terminal, pipes): the
//     launcher never reads stdin, so the child's console owns it.
//   - The jail directory, opened by the launcher (O_DIRECTORY) after it
//     checked it, as fd 3 (exec.Cmd.ExtraFiles[0]), and named by the marker
//     FLINT_JAIL_FD=3 in the environment. The child takes the marker out of
//     its environment, refuses it unless it is pid 1 of a new pid namespace
//     (a user who sets it by hand gets an error, not a half jail), and
//     enters only the directory fd 3 is: the path from the flags must still
//     be that directory (same device and inode) when the child binds it and
//     changes into it, so a directory swapped in between is refused.
//   - Nothing else: every other fd of the launcher is close-on-exec (Go
//     opens everything O_CLOEXEC, and Launch marks the ones the launcher
//     inherited without it, from a shell or a supervisor, before the exec).
//
// The child then parses the same flags and opens every host resource
// itself, through Flint's ordinary code paths (/dev/kvm, TAPs, drive
// images, the kernel and initrd, sockets it listens on, console, log and
// metrics files): it is still root, in a mount namespace that is a copy of
// the host's, so every path resolves as it would without the jail. Only
// then, as the last step of setup (just before the seccomp filter), it
// calls Enter: from there no host path is reachable and no privilege is
// left, and the VM runs on the file descriptors it already holds. Opening
// in the child instead of passing one fd per resource keeps one code path
// for every resource (with internal/hostfile's checks) and no protocol per
// resource type; the child has exactly the launcher's privileges until
// Enter drops them.
//
// # Enter
//
// Enter moves every thread into a new, empty network namespace (the
// host's abstract unix sockets and loopback services are out of reach;
// the TAPs, listeners and pathname sockets flint uses work from any
// namespace), makes every mount private (nothing propagates back to the
// host), bind-mounts the jail directory onto itself (nosuid, nodev, and
// read-only or noexec if its mount was), pivots into it and detaches the
// old root; then drops the capability bounding and ambient sets, sets
// supplementary groups to none, the gid and the uid (setresgid, setresuid
// on every thread: a uid other than 0 loses every capability), arms the
// parent-death signal again (the new ids cleared Launch's), sets
// no_new_privs on every thread, and the resource limits. The jail
// directory needs nothing in it: /dev, /proc and the rest of the host are
// simply absent.
//
// It imports only the standard library and x/sys/unix.
package jail
