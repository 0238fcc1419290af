// The seccomp-BPF filter of the sandbox (eval/sandbox.h), built with libseccomp.
// Everything is allowed except:
//  * EPERM: system calls that change mounts, namespaces or the root (mount, umount2, pivot_root,
//    chroot, unshare, setns, the new mount API), look into or control other processes (ptrace,
//    process_vm_readv/writev, kcmp, pidfd_getfd), reach kernel facilities a test program has no
//    use for (bpf, keyrings, perf_event_open, userfaultfd, io_uring, fanotify, handles,
//    kernel modules, kexec, reboot, swap, accounting, quotas, iopl/ioperm, syslog, the clock,
//    host and domain names), mknod/mknodat of device nodes, personality() other than the query,
//    ioctl TIOCSTI/TIOCLINUX, socket(AF_UNIX) (host sockets are reachable through
//    read-only mounts and across network namespaces; socketpair stays allowed), and clone()
//    with any CLONE_NEW* flag;
//  * ENOSYS: clone3 (its flags lie in memory a filter cannot read; libc then falls back to clone);
//  * killing the process: a system call of another architecture (i386 or x32 numbers).
// The filter is built once per process, before any fork, and kept as a BPF program that a child
// loads with one prctl(PR_SET_SECCOMP) (no allocation between fork and exec).
#pragma once
#include <linux/filter.h>

#include <string>
#include <vector>

namespace upg {

struct SandboxSeccompFilter {
  std::vector<sock_filter> program;  // empty when building failed
  std::string error;                 // why building failed ("" when it worked)
  sock_fprog fprog() const {
    return {static_cast<unsigned short>(program.size()), const_cast<sock_filter*>(program.data())};
  }
};

// The filter above (built on the first call; thread-safe).
const SandboxSeccompFilter& sandbox_seccomp_filter();

// Names of the system calls the filter denies outright with EPERM (whatever their arguments).
const std::vector<const char*>& sandbox_denied_syscalls();

}  // namespace upg
