// Builds the sandbox's seccomp filter with libseccomp and exports it as raw BPF through a memfd
// (libseccomp 2.5 exports only to a file descriptor).
#include "eval/sandbox_seccomp.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/error.h"

namespace upg {

const std::vector<const char*>& sandbox_denied_syscalls() {
  static const std::vector<const char*> names = {
      // mounts, namespaces, the root directory
      "mount", "umount", "umount2", "pivot_root", "chroot", "unshare", "setns", "open_tree", "move_mount", "fsopen",
      "fsconfig", "fsmount", "fspick", "mount_setattr",
      // other processes
      "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
      // kernel facilities
      "bpf", "keyctl", "add_key", "request_key", "perf_event_open", "userfaultfd", "io_uring_setup",
      "io_uring_enter", "io_uring_register", "fanotify_init", "open_by_handle_at", "name_to_handle_at",
      "lookup_dcookie", "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
      "create_module", "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "iopl", "ioperm",
      "syslog", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "sethostname", "setdomainname",
      "nfsservctl", "uselib", "_sysctl", "vhangup", "lsm_set_self_attr"};
  return names;
}

namespace {

struct Ctx {
  scmp_filter_ctx ctx = nullptr;
  ~Ctx() {
    if (ctx) seccomp_release(ctx);
  }
};

// libseccomp returns -errno.
void check(int rc, const char* what) { UPG_CHECK(rc == 0, "libseccomp: ", what, ": ", strerror(-rc)); }

SandboxSeccompFilter build() {
  SandboxSeccompFilter out;
  try {
    Ctx c;
    c.ctx = seccomp_init(SCMP_ACT_ALLOW);
    UPG_CHECK(c.ctx != nullptr, "libseccomp: seccomp_init failed");
    // Only the native architecture's numbers are filtered; anything else kills the process.
    check(seccomp_attr_set(c.ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS), "bad-arch action");
    // The caller sets no_new_privs itself (before the filter, as the kernel requires).
    check(seccomp_attr_set(c.ctx, SCMP_FLTATR_CTL_NNP, 0), "no_new_privs attribute");
    const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
    for (const char* name : sandbox_denied_syscalls()) {
      const int nr = seccomp_syscall_resolve_name(name);
      if (nr < 0) continue;  // not a system call of this architecture (error or a pseudo-number)
      check(seccomp_rule_add(c.ctx, eperm, nr, 0), name);
    }
    // clone(flags, ...) with a namespace flag (x86-64: flags are the first argument).
    for (const int flag : {CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWUTS,
                           CLONE_NEWCGROUP})
      check(seccomp_rule_add(c.ctx, eperm, SCMP_SYS(clone), 1, SCMP_A0(SCMP_CMP_MASKED_EQ, static_cast<uint64_t>(flag), static_cast<uint64_t>(flag))),
            "clone");
    check(seccomp_rule_add(c.ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0), "clone3");
    // Device nodes (FIFOs and sockets stay possible).
    for (const uint64_t type : {static_cast<uint64_t>(S_IFCHR), static_cast<uint64_t>(S_IFBLK)}) {
      check(seccomp_rule_add(c.ctx, eperm, SCMP_SYS(mknod), 1, SCMP_A1(SCMP_CMP_MASKED_EQ, S_IFMT, type)), "mknod");
      check(seccomp_rule_add(c.ctx, eperm, SCMP_SYS(mknodat), 1, SCMP_A2(SCMP_CMP_MASKED_EQ, S_IFMT, type)),
            "mknodat");
    }
    // personality(): only the query 0xffffffff. The kernel reads the low 32 bits only (callers may
    // leave garbage above them), and a rule holds one comparison per argument: denied when any
    // of the 32 bits is clear.
    for (uint64_t bit = 1; bit <= 0x80000000u; bit <<= 1)
      check(seccomp_rule_add(c.ctx, eperm, SCMP_SYS(personality), 1, SCMP_A0(SCMP_CMP_MASKED_EQ, bit, 0)),
            "personality");
    // AF_UNIX sockets: a filesystem socket of the host (a session bus, an agent) is reachable
    // through a read-only mount and from another network namespace. socketpair() stays allowed.
    check(seccomp_rule_add(c.ctx, eperm, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_EQ, AF_UNIX)), "socket");
    // Pushing characters into a terminal's input.
    for (const uint64_t req : {static_cast<uint64_t>(TIOCSTI), static_cast<uint64_t>(TIOCLINUX)})
      check(seccomp_rule_add(c.ctx, eperm, SCMP_SYS(ioctl), 1, SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, req)),
            "ioctl");

    const int fd = memfd_create("upg-seccomp", MFD_CLOEXEC);
    UPG_CHECK(fd >= 0, "memfd_create failed: ", strerror(errno));
    struct Fd {
      int fd;
      ~Fd() { close(fd); }
    } guard{fd};
    check(seccomp_export_bpf(c.ctx, fd), "export");
    struct stat st{};
    UPG_CHECK(fstat(fd, &st) == 0 && st.st_size > 0 && st.st_size % sizeof(sock_filter) == 0,
              "libseccomp exported no whole BPF program (", st.st_size, " bytes)");
    std::vector<sock_filter> prog(static_cast<size_t>(st.st_size) / sizeof(sock_filter));
    UPG_CHECK(prog.size() <= BPF_MAXINSNS, "the BPF program has ", prog.size(), " instructions, the kernel takes ",
              BPF_MAXINSNS);
    UPG_CHECK(pread(fd, prog.data(), static_cast<size_t>(st.st_size), 0) == st.st_size,
              "reading the exported BPF program back failed");
    out.program = std::move(prog);
  } catch (const Error& e) {
    out.program.clear();
    out.error = e.what();
  }
  return out;
}

}  // namespace

const SandboxSeccompFilter& sandbox_seccomp_filter() {
  static const SandboxSeccompFilter filter = build();
  return filter;
}

}  // namespace upg
