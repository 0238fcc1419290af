// The sandbox's children (see sandbox_child.h). Only async-signal-safe calls: the parent may have
// other threads, so nothing here allocates or takes a lock.
#include "eval/sandbox_child.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

namespace upg::sandbox_detail {

namespace {

constexpr int kNamespaces = CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS;

// Securebits of the program: uid 0 would gain no capabilities at exec, uid changes keep the
// (already empty) sets unchanged, ambient capabilities cannot be raised, KEEP_CAPS stays off; all
// locked so that nothing can change them back.
constexpr unsigned long kSecurebits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                                      SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
                                      SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;

// Steps of init that took effect (passed on to the program for require_complete).
enum InitDone : unsigned { kDoneReadonly = 1, kDoneTmpfs = 2, kDoneHide = 4 };

void report(int fd, int32_t kind, int32_t value) {
  Record r{kind, value};
  [[maybe_unused]] ssize_t n = write(fd, &r, sizeof r);
}

bool write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool write_proc_file(const char* path, const char* text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = write_all(fd, text, strlen(text));
  close(fd);
  return ok;
}

// Appends the decimal digits of v at p; returns the end.
char* put_uint(char* p, unsigned v) {
  char digits[16];
  int k = 0;
  do {
    digits[k++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v);
  while (k) *p++ = digits[--k];
  return p;
}

// "<inside> <outside> 1" for uid_map / gid_map.
void id_map_line(char* buf, unsigned inside, unsigned outside) {
  char* p = put_uint(buf, inside);
  *p++ = ' ';
  p = put_uint(p, outside);
  *p++ = ' ';
  *p++ = '1';
  *p = 0;
}

// The program's files, written into the work directory (the tmpfs once mounted).
bool write_files(const ChildPlan& p) {
  const int dir = open(p.workdir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return report(p.report_w, kFileErrno, errno), false;
  for (size_t i = 0; i < p.n_files; ++i) {
    const ChildFile& f = p.files[i];
    const int fd = openat(dir, f.name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0 || !write_all(fd, f.data, f.size) || fchmod(fd, 0644) != 0) {
      report(p.report_w, kFileErrno, errno);
      if (fd >= 0) close(fd);
      close(dir);
      return false;
    }
    close(fd);
  }
  close(dir);
  return true;
}

// Empties every capability set, locks the securebits and becomes uid/gid 65534. Returns whether
// the capabilities are verifiably gone (kCapsOk); kUidOk is reported separately.
bool drop_privileges(const ChildPlan& p, bool in_user_ns, bool* uid_ok) {
  bool ok = true;
  auto fail = [&](CapsStep step) {
    report(p.report_w, kCapsErrno, errno * 16 + step);
    ok = false;
  };
  for (int c = 0; c < 64; ++c) {
    if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) == 0) continue;
    if (errno != EINVAL) fail(kCapsBounding);  // EINVAL: past the kernel's last capability
    break;
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) fail(kCapsAmbient);
  if (prctl(PR_SET_SECUREBITS, kSecurebits, 0, 0, 0) != 0) fail(kCapsSecurebits);
  // In a user namespace setgroups is denied (its gid map requires that) and the ids are already
  // the mapped 65534.
  bool ids = in_user_ns || setgroups(0, nullptr) == 0;
  ids = ids && setresgid(kNobody, kNobody, kNobody) == 0 && setresuid(kNobody, kNobody, kNobody) == 0;
  if (!ids) report(p.report_w, kUidErrno, errno);
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capset, &hdr, data) != 0) fail(kCapsCapset);
  // Verification, independent of what the calls above claimed.
  uid_t r = 0, e = 0, s = 0;
  gid_t rg = 0, eg = 0, sg = 0;
  *uid_ok = getresuid(&r, &e, &s) == 0 && getresgid(&rg, &eg, &sg) == 0 && r == kNobody && e == kNobody &&
            s == kNobody && rg == kNobody && eg == kNobody && sg == kNobody &&
            (in_user_ns ? p.outer_uid != 0 : getgroups(0, nullptr) == 0);
  if (*uid_ok) report(p.report_w, kUidOk, 1);
  __user_cap_data_struct now[2] = {};
  hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  bool empty = syscall(SYS_capget, &hdr, now) == 0;
  for (const auto& d : now) empty = empty && d.effective == 0 && d.permitted == 0 && d.inheritable == 0;
  for (int c = 0; c < 64 && empty; ++c) {
    const int b = prctl(PR_CAPBSET_READ, c, 0, 0, 0);
    if (b < 0) break;  // past the last capability
    const int a = prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, c, 0, 0);
    empty = b == 0 && a <= 0;
  }
  empty = empty && prctl(PR_GET_SECUREBITS, 0, 0, 0, 0) == static_cast<int>(kSecurebits);
  if (!empty && ok) {
    errno = 0;
    fail(kCapsVerify);
  }
  if (empty && ok) report(p.report_w, kCapsOk, 1);
  return empty && ok;
}

[[noreturn]] void run_program(const ChildPlan& p, int ns_flags, unsigned done) {
  const SandboxLimits& l = *p.limits;
  auto limit = [&](int res, rlim_t v) {
    struct rlimit r{v, v};
    if (setrlimit(res, &r) != 0) report(p.report_w, kRlimitErrno, errno * 16 + res);
  };
  limit(RLIMIT_CORE, 0);
  // Soft CPU limit sends SIGXCPU; the hard limit one second later SIGKILL.
  {
    struct rlimit r{static_cast<rlim_t>(l.cpu_seconds), static_cast<rlim_t>(l.cpu_seconds) + 1};
    if (setrlimit(RLIMIT_CPU, &r) != 0) report(p.report_w, kRlimitErrno, errno * 16 + RLIMIT_CPU);
  }
  limit(RLIMIT_AS, l.address_space_bytes);
  limit(RLIMIT_NPROC, static_cast<rlim_t>(l.max_processes));
  limit(RLIMIT_FSIZE, l.file_size_bytes);
  limit(RLIMIT_NOFILE, static_cast<rlim_t>(l.open_files));
  if (chdir(p.workdir) != 0) {
    report(p.report_w, kChdirErrno, errno);
    _exit(127);
  }
  int devnull = open("/dev/null", O_RDONLY);
  if (devnull >= 0) dup2(devnull, 0);
  dup2(p.out_w, 1);
  dup2(p.out_w, 2);
  // Everything else closes at exec (the report pipe stays usable until then).
  close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);

  bool caps_ok = false, uid_ok = false;
  if (!(l.skip & kSandboxSkipPrivileges)) caps_ok = drop_privileges(p, ns_flags & CLONE_NEWUSER, &uid_ok);
  const bool nnp_ok = prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 && prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1;
  report(p.report_w, nnp_ok ? kNnpOk : kNnpErrno, nnp_ok ? 1 : errno);
  const bool want_seccomp = p.seccomp && !(l.skip & kSandboxSkipSeccomp);
  const bool complete_so_far = (ns_flags & kNamespaces) == kNamespaces &&
                               done == (kDoneReadonly | kDoneTmpfs | kDoneHide) && caps_ok && uid_ok && nnp_ok &&
                               want_seccomp;
  if (l.require_complete && !complete_so_far) {
    report(p.report_w, kIncomplete, 1);
    _exit(126);
  }
  // Last before execve, so that the filter covers everything the program does.
  if (want_seccomp) {
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, p.seccomp, 0, 0) == 0) {
      report(p.report_w, kSeccompOk, 1);
    } else {
      report(p.report_w, kSeccompErrno, errno);
      if (l.require_complete) {
        report(p.report_w, kIncomplete, 1);
        _exit(126);
      }
    }
  }
  execve(p.argv[0], p.argv, p.envp);
  report(p.report_w, kExecErrno, errno);
  _exit(127);
}

// The mount namespace's file tree: private, fresh /proc, hidden homes, the work tmpfs with the
// files, everything else read-only. Returns the InitDone bits that took effect.
unsigned prepare_mounts(const ChildPlan& p, int ns_flags) {
  unsigned done = 0;
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    report(p.report_w, kPrivateErrno, errno);
    return write_files(p) ? 0 : ~0u;
  }
  if ((ns_flags & CLONE_NEWPID) && mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
    report(p.report_w, kProcErrno, errno);
  bool hidden = p.hide_complete;
  for (size_t i = 0; i < p.n_hide; ++i) {
    if (mount("upg-sandbox-empty", p.hide[i], "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "size=4k,nr_inodes=1,mode=0555") != 0) {
      report(p.report_w, kHideErrno, errno * 16 + static_cast<int32_t>(i));
      hidden = false;
    }
  }
  if (hidden) {
    report(p.report_w, kHideOk, 1);
    done |= kDoneHide;
  }
  bool tmpfs = false;
  if (!(p.limits->skip & kSandboxSkipTmpfs)) {
    tmpfs = mount("upg-sandbox", p.workdir, "tmpfs", MS_NOSUID | MS_NODEV, p.tmpfs_options) == 0;
    report(p.report_w, tmpfs ? kTmpfsOk : kTmpfsErrno, tmpfs ? 1 : errno);
    if (tmpfs) done |= kDoneTmpfs;
  }
  // Without the tmpfs the work directory becomes its own mount, so that it can stay writable
  // under the read-only tree.
  const bool own_mount = tmpfs || mount(p.workdir, p.workdir, nullptr, MS_BIND, nullptr) == 0;
  if (!write_files(p)) return ~0u;
  struct mount_attr ro{};
  ro.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
  struct mount_attr rw{};
  rw.attr_clr = MOUNT_ATTR_RDONLY;
  if (!own_mount || syscall(SYS_mount_setattr, AT_FDCWD, "/", AT_RECURSIVE, &ro, sizeof ro) != 0 ||
      syscall(SYS_mount_setattr, AT_FDCWD, p.workdir, 0, &rw, sizeof rw) != 0) {
    report(p.report_w, kReadonlyErrno, errno);
  } else {
    report(p.report_w, kReadonlyOk, 1);
    done |= kDoneReadonly;
  }
  return done;
}

// pid 1 of the new PID namespace (or a plain process when that was not permitted).
[[noreturn]] void run_init(const ChildPlan& p, int ns_flags) {
  umask(022);
  unsigned done = 0;
  if (ns_flags & CLONE_NEWNS)
    done = prepare_mounts(p, ns_flags);
  else if (!write_files(p))
    done = ~0u;
  if (done == ~0u) _exit(127);  // the files could not be written (kFileErrno says why)
  pid_t c = fork();
  if (c < 0) {
    report(p.report_w, kForkErrno, errno);
    _exit(127);
  }
  if (c == 0) run_program(p, ns_flags, done);
  close(p.out_w);
  int status = 0;
  for (;;) {  // as init, also reap orphans until the program itself is collected
    pid_t w = waitpid(-1, &status, 0);
    if (w == c) break;
    if (w < 0 && errno != EINTR) break;
  }
  report(p.report_w, kChildStatus, status);
  _exit(0);  // in a PID namespace this kills every process left in it
}

}  // namespace

void run_supervisor(const ChildPlan& p, pid_t parent) {
  setsid();
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(127);
  int got = 0;
  if (unshare(kNamespaces) == 0) {
    got = kNamespaces;
  } else {
    report(p.report_w, kNsErrno, errno);
    if (unshare(kNamespaces | CLONE_NEWUSER) == 0) {
      got = kNamespaces | CLONE_NEWUSER;
      // Only one id is mapped: the caller's own, seen inside as 65534. Namespace root does not
      // exist, so nothing in it can act as root; the capabilities that unshare gave this process
      // serve the mounts of init and are dropped by the program.
      char line[48];
      bool ok = write_proc_file("/proc/self/setgroups", "deny");
      id_map_line(line, kNobody, p.outer_uid);
      ok = ok && write_proc_file("/proc/self/uid_map", line);
      id_map_line(line, kNobody, p.outer_gid);
      ok = ok && write_proc_file("/proc/self/gid_map", line);
      if (!ok) report(p.report_w, kUidMapErrno, errno);
    } else {
      report(p.report_w, kUserNsErrno, errno);
    }
  }
  report(p.report_w, kNsFlags, got);
  pid_t b = fork();
  if (b < 0) {
    report(p.report_w, kForkErrno, errno);
    _exit(127);
  }
  if (b == 0) run_init(p, got);
  close(p.out_w);
  int status = 0;
  while (waitpid(b, &status, 0) < 0 && errno == EINTR) {
  }
  _exit(0);
}

}  // namespace upg::sandbox_detail
