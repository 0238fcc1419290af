// Process tree of one run (see sandbox.h):
//   parent (upg) --fork--> supervisor: setsid, unshare(namespaces), waits for init
//     supervisor --fork--> init (pid 1 of the new PID namespace): mounts, waits for the program
//       init --fork--> program: rlimits, cwd, fds, drop to uid 65534, no_new_privs, execve
// Stages report to the parent through a pipe of fixed 8-byte records (atomic writes): what took
// effect, errno of what failed, and the program's raw wait status (from init). The program's
// stdout/stderr go to a second pipe that the parent drains while it waits (poll on it and on a
// pidfd of the supervisor), so a chatty program never blocks and the deadline is exact.
#include "eval/sandbox.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "base/error.h"

namespace upg {

namespace {

constexpr uid_t kNobody = 65534;

enum RecordKind : int32_t {
  kNsFlags = 1,      // value: CLONE_NEW* flags that took effect
  kNsErrno,          // unshare without a user namespace failed
  kUserNsErrno,      // unshare with a user namespace failed too
  kUidMapErrno,      // writing uid_map/gid_map failed
  kPrivateErrno,     // making / private in the mount namespace failed
  kProcErrno,        // mounting a fresh /proc failed
  kReadonlyErrno,    // the read-only remount failed
  kReadonlyOk,
  kRlimitErrno,      // value: errno * 16 + resource
  kChdirErrno,
  kUidErrno,         // dropping to uid 65534 failed
  kUidOk,
  kForkErrno,
  kExecErrno,
  kChildStatus,      // the program's raw wait status
};

struct Record {
  int32_t kind, value;
};

void report(int fd, int32_t kind, int32_t value) {
  Record r{kind, value};
  [[maybe_unused]] ssize_t n = write(fd, &r, sizeof r);
}

// Async-signal-safe helpers for the children.
bool write_proc_file(const char* path, const char* text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n = write(fd, text, strlen(text));
  close(fd);
  return n == static_cast<ssize_t>(strlen(text));
}

// "0 <id> 1" for uid_map / gid_map.
void id_map_line(char* buf, unsigned id) {
  char digits[16];
  int k = 0;
  do {
    digits[k++] = static_cast<char>('0' + id % 10);
    id /= 10;
  } while (id);
  char* p = buf;
  *p++ = '0';
  *p++ = ' ';
  while (k) *p++ = digits[--k];
  *p++ = ' ';
  *p++ = '1';
  *p = 0;
}

struct ChildPlan {
  const char* workdir;
  char* const* argv;
  char* const* envp;
  const SandboxLimits* limits;
  int out_w, report_w;
};

[[noreturn]] void run_program(const ChildPlan& p, int ns_flags) {
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
  if (geteuid() == 0 && !(ns_flags & CLONE_NEWUSER)) {
    if (setgroups(0, nullptr) == 0 && setgid(kNobody) == 0 && setuid(kNobody) == 0)
      report(p.report_w, kUidOk, 1);
    else
      report(p.report_w, kUidErrno, errno);
  }
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  execve(p.argv[0], p.argv, p.envp);
  report(p.report_w, kExecErrno, errno);
  _exit(127);
}

// pid 1 of the new PID namespace (or a plain process when that was not permitted).
[[noreturn]] void run_init(const ChildPlan& p, int ns_flags) {
  if (ns_flags & CLONE_NEWNS) {
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
      report(p.report_w, kPrivateErrno, errno);
    } else {
      if ((ns_flags & CLONE_NEWPID) &&
          mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
        report(p.report_w, kProcErrno, errno);
      // The work directory becomes its own mount so that it can stay writable under a read-only tree.
      struct mount_attr ro{};
      ro.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
      struct mount_attr rw{};
      rw.attr_clr = MOUNT_ATTR_RDONLY;
      if (mount(p.workdir, p.workdir, nullptr, MS_BIND, nullptr) != 0 ||
          syscall(SYS_mount_setattr, AT_FDCWD, "/", AT_RECURSIVE, &ro, sizeof ro) != 0 ||
          syscall(SYS_mount_setattr, AT_FDCWD, p.workdir, 0, &rw, sizeof rw) != 0)
        report(p.report_w, kReadonlyErrno, errno);
      else
        report(p.report_w, kReadonlyOk, 1);
    }
  }
  pid_t c = fork();
  if (c < 0) {
    report(p.report_w, kForkErrno, errno);
    _exit(127);
  }
  if (c == 0) run_program(p, ns_flags);
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

[[noreturn]] void run_supervisor(const ChildPlan& p, pid_t parent) {
  setsid();
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(127);
  const int ns = CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS;
  int got = 0;
  if (unshare(ns) == 0) {
    got = ns;
  } else {
    report(p.report_w, kNsErrno, errno);
    const uid_t uid = getuid();
    const gid_t gid = getgid();
    if (unshare(ns | CLONE_NEWUSER) == 0) {
      got = ns | CLONE_NEWUSER;
      char line[40];
      bool ok = write_proc_file("/proc/self/setgroups", "deny");
      id_map_line(line, uid);
      ok = write_proc_file("/proc/self/uid_map", line) && ok;
      id_map_line(line, gid);
      ok = write_proc_file("/proc/self/gid_map", line) && ok;
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

std::string errno_text(int e) { return str_cat(strerror(e), " (errno ", e, ")"); }

const char* signal_name(int sig) {
  switch (sig) {
    case SIGKILL: return "SIGKILL";
    case SIGXCPU: return "SIGXCPU, CPU time limit";
    case SIGXFSZ: return "SIGXFSZ, file size limit";
    case SIGSEGV: return "SIGSEGV";
    case SIGABRT: return "SIGABRT";
    case SIGTERM: return "SIGTERM";
    case SIGBUS: return "SIGBUS";
    default: return nullptr;
  }
}

void set_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Reads what is available (non-blocking fd) into tail, keeping at most keep bytes (the last ones).
void drain(int fd, std::string& tail, size_t keep) {
  char buf[8192];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
      tail.append(buf, static_cast<size_t>(n));
      if (tail.size() > 2 * keep + sizeof buf) tail.erase(0, tail.size() - keep);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return;  // EOF or EAGAIN
  }
}

struct Pipe {
  int r = -1, w = -1;
  Pipe() {
    int fds[2];
    UPG_CHECK(pipe2(fds, O_CLOEXEC) == 0, "sandbox: pipe failed: ", errno_text(errno));
    r = fds[0];
    w = fds[1];
  }
  ~Pipe() {
    if (r >= 0) close(r);
    if (w >= 0) close(w);
  }
  void close_w() {
    if (w >= 0) close(w);
    w = -1;
  }
};

void apply_records(const std::string& bytes, SandboxResult& res, bool& got_status, int& status) {
  SandboxIsolation& iso = res.isolation;
  for (size_t off = 0; off + sizeof(Record) <= bytes.size(); off += sizeof(Record)) {
    Record r;
    std::memcpy(&r, bytes.data() + off, sizeof r);
    switch (r.kind) {
      case kNsFlags:
        iso.pid_namespace = r.value & CLONE_NEWPID;
        iso.network_namespace = r.value & CLONE_NEWNET;
        iso.mount_namespace = r.value & CLONE_NEWNS;
        iso.user_namespace = r.value & CLONE_NEWUSER;
        if (!r.value) iso.notes.push_back("no namespaces: the program shares this machine's network and processes");
        break;
      case kNsErrno:
        iso.notes.push_back("unshare(PID|NET|NS|IPC|UTS) not permitted: " + errno_text(r.value) +
                            "; trying a user namespace");
        break;
      case kUserNsErrno: iso.notes.push_back("unshare with a user namespace not permitted: " + errno_text(r.value)); break;
      case kUidMapErrno: iso.notes.push_back("writing the user namespace id maps failed: " + errno_text(r.value)); break;
      case kPrivateErrno: iso.notes.push_back("mount namespace: making / private failed: " + errno_text(r.value)); break;
      case kProcErrno: iso.notes.push_back("mounting a private /proc failed: " + errno_text(r.value)); break;
      case kReadonlyErrno:
        iso.notes.push_back("read-only remount of the file tree failed: " + errno_text(r.value));
        break;
      case kReadonlyOk: iso.readonly_root = true; break;
      case kRlimitErrno:
        iso.notes.push_back(str_cat("setrlimit(resource ", r.value % 16, ") failed: ", errno_text(r.value / 16)));
        break;
      case kChdirErrno:
        res.setup_failed = true;
        res.setup_error = "chdir to the work directory failed: " + errno_text(r.value);
        break;
      case kUidErrno: iso.notes.push_back("dropping to uid 65534 failed: " + errno_text(r.value)); break;
      case kUidOk: iso.unprivileged_uid = true; break;
      case kForkErrno:
        res.setup_failed = true;
        res.setup_error = "fork failed: " + errno_text(r.value);
        break;
      case kExecErrno:
        res.setup_failed = true;
        res.setup_error = "cannot execute the program: " + errno_text(r.value);
        break;
      case kChildStatus:
        got_status = true;
        status = r.value;
        break;
      default: break;
    }
  }
  if (iso.user_namespace) iso.unprivileged_uid = true;  // mapped to our own (non-root) uid
  if (!iso.unprivileged_uid && geteuid() != 0) iso.unprivileged_uid = true;
}

}  // namespace

std::string SandboxResult::describe() const {
  if (setup_failed) return "setup failed: " + setup_error;
  char buf[64];
  if (timed_out) {
    std::snprintf(buf, sizeof buf, "timed out after %.1f s", wall_seconds);
    return buf;
  }
  if (signal) {
    const char* n = signal_name(signal);
    return str_cat("killed by signal ", signal, n ? str_cat(" (", n, ")") : "");
  }
  if (exit_code == 0) return "passed";
  // The last non-empty output line (Python's exception line, e.g. "AssertionError").
  std::string last;
  size_t end = output.size();
  while (end > 0) {
    size_t start = output.rfind('\n', end - 1);
    start = start == std::string::npos ? 0 : start + 1;
    std::string line = output.substr(start, end - start);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.empty()) {
      last = line;
      break;
    }
    if (start == 0) break;
    end = start - 1;
  }
  if (last.size() > 200) last = last.substr(0, 200) + "...";
  return str_cat("exit code ", exit_code, last.empty() ? "" : ": " + last);
}

SandboxResult run_sandboxed(const std::vector<std::string>& argv,
                            const std::vector<std::pair<std::string, std::string>>& files,
                            const SandboxLimits& limits) {
  UPG_CHECK(!argv.empty() && !argv[0].empty() && argv[0][0] == '/', "sandbox: argv[0] must be an absolute path");
  UPG_CHECK(limits.wall_seconds > 0 && limits.cpu_seconds > 0 && limits.max_processes > 0 && limits.open_files > 3,
            "sandbox: limits must be positive");
  // The private work directory.
  const char* tmp_env = std::getenv("TMPDIR");
  std::string templ = std::string(tmp_env && *tmp_env ? tmp_env : "/tmp") + "/upg-sandbox-XXXXXX";
  std::vector<char> tbuf(templ.begin(), templ.end());
  tbuf.push_back(0);
  UPG_CHECK(mkdtemp(tbuf.data()) != nullptr, "sandbox: cannot create a temporary directory '", templ,
            "': ", errno_text(errno));
  const std::string workdir = tbuf.data();
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } cleanup{workdir};
  for (const auto& [name, text] : files) {
    UPG_CHECK(!name.empty() && name.find('/') == std::string::npos && name != "." && name != "..",
              "sandbox: bad file name '", name, "'");
    std::ofstream f(workdir + "/" + name, std::ios::binary);
    f << text;
    UPG_CHECK(f.good(), "sandbox: cannot write '", workdir, "/", name, "'");
  }
  // Root: hand the directory (not the files) to the unprivileged uid, so the program can create
  // files there but cannot change the files it was given.
  if (geteuid() == 0) {
    for (const auto& [name, text] : files) chmod((workdir + "/" + name).c_str(), 0644);
    UPG_CHECK(chown(workdir.c_str(), kNobody, kNobody) == 0, "sandbox: chown '", workdir, "': ", errno_text(errno));
  }

  // Everything the children use is prepared here (no allocation after fork).
  std::vector<std::string> env_s = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + workdir, "TMPDIR=" + workdir,
                                    "LANG=C.UTF-8"};
  std::vector<char*> argv_p, envp_p;
  for (const auto& a : argv) argv_p.push_back(const_cast<char*>(a.c_str()));
  argv_p.push_back(nullptr);
  for (const auto& e : env_s) envp_p.push_back(const_cast<char*>(e.c_str()));
  envp_p.push_back(nullptr);

  Pipe out, rep;
  ChildPlan plan{workdir.c_str(), argv_p.data(), envp_p.data(), &limits, out.w, rep.w};
  const pid_t parent = getpid();
  const auto t0 = std::chrono::steady_clock::now();
  pid_t sup = fork();
  UPG_CHECK(sup >= 0, "sandbox: fork failed: ", errno_text(errno));
  if (sup == 0) {
    close(out.r);
    close(rep.r);
    run_supervisor(plan, parent);
  }
  out.close_w();
  rep.close_w();
  set_nonblocking(out.r);
  set_nonblocking(rep.r);
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, sup, 0));

  SandboxResult res;
  std::string reports;
  const auto deadline = t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                 std::chrono::duration<double>(limits.wall_seconds));
  bool out_open = true;
  for (;;) {
    int st = 0;
    if (waitpid(sup, &st, WNOHANG) == sup) break;
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      kill(-sup, SIGKILL);  // supervisor, init (whose end kills the namespace) and the program
      while (waitpid(sup, &st, 0) < 0 && errno == EINTR) {
      }
      res.timed_out = true;
      break;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1;
    struct pollfd pf[3];
    int n = 0;
    if (out_open) pf[n++] = {out.r, POLLIN, 0};
    pf[n++] = {rep.r, POLLIN, 0};
    if (pidfd >= 0) pf[n++] = {pidfd, POLLIN, 0};
    int timeout = static_cast<int>(std::min<long long>(left, pidfd >= 0 ? left : 20));
    if (poll(pf, static_cast<nfds_t>(n), timeout) > 0 && out_open && (pf[0].revents & POLLHUP) &&
        !(pf[0].revents & POLLIN))
      out_open = false;  // all writers gone; keep waiting on the pidfd only
    drain(out.r, res.output, limits.output_bytes);
    drain(rep.r, reports, 1 << 20);
  }
  res.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  kill(-sup, SIGKILL);  // stragglers of the process group when no PID namespace was available
  if (pidfd >= 0) close(pidfd);
  drain(out.r, res.output, limits.output_bytes);
  drain(rep.r, reports, 1 << 20);
  if (res.output.size() > limits.output_bytes) res.output.erase(0, res.output.size() - limits.output_bytes);

  bool got_status = false;
  int status = 0;
  apply_records(reports, res, got_status, status);
  if (!res.timed_out && !res.setup_failed) {
    if (!got_status) {
      res.setup_failed = true;
      res.setup_error = "the sandbox ended without reporting the program's status";
    } else if (WIFEXITED(status)) {
      res.exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
      res.signal = WTERMSIG(status);
    }
  }
  return res;
}

SandboxResult run_python_sandboxed(const std::string& source, const SandboxLimits& limits, const std::string& python) {
  return run_sandboxed({python, "-I", "-B", "program.py"}, {{"program.py", source}}, limits);
}

}  // namespace upg
