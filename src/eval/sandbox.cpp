// The parent side of the sandbox (see sandbox.h): prepares everything the children need
// (sandbox_child.h), forks the supervisor, drains the program's output and the children's reports
// while it waits (poll on the pipes and on a pidfd of the supervisor, so a chatty program never
// blocks and the deadline is exact), and turns the reports into a SandboxResult.
#include "eval/sandbox.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
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

#include "base/error.h"
#include "eval/sandbox_child.h"
#include "eval/sandbox_seccomp.h"

namespace upg {

namespace {

using namespace sandbox_detail;

// Directories of the host that the program must not read (covered by an empty tmpfs).
constexpr const char* kHiddenDirs[] = {"/home", "/root", "/run/user"};

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

// What the parent knows before the run: steps it could not prepare.
struct ParentNotes {
  std::string seccomp_error;  // building the filter failed
  std::string hide_error;     // a directory to hide holds the work directory
  const std::vector<std::string>* hide = nullptr;
  unsigned skip = 0;
};

std::string join_missing(const SandboxIsolation& iso) {
  std::string out;
  for (const std::string& m : iso.missing()) out += (out.empty() ? "" : ", ") + m;
  return out;
}

const char* caps_step_name(int32_t step) {
  switch (step) {
    case kCapsBounding: return "dropping the bounding set (PR_CAPBSET_DROP)";
    case kCapsAmbient: return "clearing the ambient set";
    case kCapsSecurebits: return "locking the securebits (PR_SET_SECUREBITS)";
    case kCapsCapset: return "capset to empty sets";
    default: return "verifying that every capability set is empty";
  }
}

void apply_records(const std::string& bytes, const ParentNotes& pn, SandboxResult& res, bool& got_status,
                   int& status, bool& incomplete) {
  SandboxIsolation& iso = res.isolation;
  auto note = [&](std::string text) { iso.notes.push_back(std::move(text)); };
  for (size_t off = 0; off + sizeof(Record) <= bytes.size(); off += sizeof(Record)) {
    Record r;
    std::memcpy(&r, bytes.data() + off, sizeof r);
    switch (r.kind) {
      case kNsFlags:
        iso.pid_namespace = r.value & CLONE_NEWPID;
        iso.network_namespace = r.value & CLONE_NEWNET;
        iso.mount_namespace = r.value & CLONE_NEWNS;
        iso.ipc_namespace = r.value & CLONE_NEWIPC;
        iso.uts_namespace = r.value & CLONE_NEWUTS;
        iso.user_namespace = r.value & CLONE_NEWUSER;
        if (!r.value) note("no namespaces: the program shares this machine's network, processes and file tree");
        break;
      case kNsErrno:
        if (geteuid() == 0)  // without root this is expected: the user namespace follows
          note("unshare(PID|NET|NS|IPC|UTS) not permitted: " + errno_text(r.value) + "; trying a user namespace");
        break;
      case kUserNsErrno: note("unshare with a user namespace not permitted: " + errno_text(r.value)); break;
      case kUidMapErrno: note("writing the user namespace id maps failed: " + errno_text(r.value)); break;
      case kPrivateErrno: note("mount namespace: making / private failed: " + errno_text(r.value)); break;
      case kProcErrno: note("mounting a private /proc failed: " + errno_text(r.value)); break;
      case kHideErrno: {
        const size_t i = static_cast<size_t>(r.value % 16);
        const std::string dir = pn.hide && i < pn.hide->size() ? (*pn.hide)[i] : "?";
        note("covering " + dir + " with an empty tmpfs failed: " + errno_text(r.value / 16));
        break;
      }
      case kHideOk: iso.home_hidden = true; break;
      case kTmpfsErrno: note("mounting the work directory's tmpfs failed: " + errno_text(r.value)); break;
      case kTmpfsOk: iso.tmpfs = true; break;
      case kFileErrno:
        res.setup_failed = true;
        res.setup_error = "writing the program's files into the work directory failed: " + errno_text(r.value);
        break;
      case kReadonlyErrno: note("read-only remount of the file tree failed: " + errno_text(r.value)); break;
      case kReadonlyOk: iso.readonly_root = true; break;
      case kRlimitErrno:
        note(str_cat("setrlimit(resource ", r.value % 16, ") failed: ", errno_text(r.value / 16)));
        break;
      case kChdirErrno:
        res.setup_failed = true;
        res.setup_error = "chdir to the work directory failed: " + errno_text(r.value);
        break;
      case kCapsErrno:
        note(str_cat("capabilities: ", caps_step_name(r.value % 16), " failed",
                     r.value / 16 ? ": " + errno_text(r.value / 16) : std::string()));
        break;
      case kCapsOk: iso.capabilities_dropped = true; break;
      case kUidErrno: note("dropping to uid/gid 65534 failed: " + errno_text(r.value)); break;
      case kUidOk: iso.unprivileged_uid = true; break;
      case kNnpErrno: note("PR_SET_NO_NEW_PRIVS failed: " + errno_text(r.value)); break;
      case kNnpOk: iso.no_new_privs = true; break;
      case kSeccompErrno: note("loading the seccomp filter failed: " + errno_text(r.value)); break;
      case kSeccompOk: iso.seccomp = true; break;
      case kIncomplete: incomplete = true; break;
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
  // What the parent knew, and a note for each missing step that nothing above explained.
  if (!iso.seccomp && !pn.seccomp_error.empty()) note("no seccomp filter: " + pn.seccomp_error);
  if (!iso.home_hidden && !pn.hide_error.empty()) note(pn.hide_error);
  if (pn.skip & kSandboxSkipSeccomp) note("seccomp filter left out (SandboxLimits::skip)");
  if (pn.skip & kSandboxSkipPrivileges) note("uid and capabilities left as they were (SandboxLimits::skip)");
  if (pn.skip & kSandboxSkipTmpfs) note("work directory on the host's file system, no tmpfs (SandboxLimits::skip)");
  if (iso.user_namespace && !iso.unprivileged_uid && geteuid() == 0)
    note("the user namespace maps the program's uid onto root outside it");
  if (!iso.complete()) note("missing: " + join_missing(iso));
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

std::vector<std::string> SandboxIsolation::missing() const {
  std::vector<std::string> m;
  auto add = [&](bool ok, const char* name) {
    if (!ok) m.push_back(name);
  };
  add(pid_namespace, "PID namespace");
  add(network_namespace, "network namespace");
  add(mount_namespace, "mount namespace");
  add(ipc_namespace, "IPC namespace");
  add(uts_namespace, "UTS namespace");
  add(readonly_root, "read-only file tree");
  add(tmpfs, "size-limited tmpfs work directory");
  add(home_hidden, "hidden /home, /root and /run/user");
  add(unprivileged_uid, "unprivileged uid/gid 65534");
  add(capabilities_dropped, "all capabilities dropped");
  add(no_new_privs, "no_new_privs");
  add(seccomp, "seccomp filter");
  return m;
}

SandboxResult run_sandboxed(const std::vector<std::string>& argv,
                            const std::vector<std::pair<std::string, std::string>>& files,
                            const SandboxLimits& limits) {
  namespace fs = std::filesystem;
  UPG_CHECK(!argv.empty() && !argv[0].empty() && argv[0][0] == '/', "sandbox: argv[0] must be an absolute path");
  UPG_CHECK(limits.wall_seconds > 0 && limits.cpu_seconds > 0 && limits.max_processes > 0 && limits.open_files > 3,
            "sandbox: limits must be positive");
  UPG_CHECK(limits.disk_bytes >= 4096, "sandbox: disk_bytes must be at least 4096, got ", limits.disk_bytes);
  for (const auto& [name, text] : files)
    UPG_CHECK(!name.empty() && name.find('/') == std::string::npos && name != "." && name != "..",
              "sandbox: bad file name '", name, "'");
  // The work directory: the mount point of the tmpfs (and the fallback when there is none).
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
      fs::remove_all(dir, ec);
    }
  } cleanup{workdir};
  // Root: hand the directory to the unprivileged uid (it matters only without the tmpfs: the
  // program can then create files there but cannot change the files it was given).
  if (geteuid() == 0)
    UPG_CHECK(chown(workdir.c_str(), kNobody, kNobody) == 0, "sandbox: chown '", workdir, "': ", errno_text(errno));

  ParentNotes pn;
  pn.skip = limits.skip;
  const SandboxSeccompFilter& filter = sandbox_seccomp_filter();  // built before any fork
  const sock_fprog fprog = filter.fprog();
  pn.seccomp_error = filter.error;
  std::vector<std::string> hide;
  bool hide_complete = true;
  {
    std::error_code ec;
    const fs::path work = fs::weakly_canonical(workdir, ec);
    for (const char* d : kHiddenDirs) {
      if (!fs::is_directory(d, ec)) continue;
      const fs::path dir = fs::canonical(d, ec);
      const std::string rel = ec ? std::string() : work.lexically_relative(dir).string();
      if (!rel.empty() && rel.rfind("..", 0) != 0) {
        hide_complete = false;
        pn.hide_error = str_cat("the work directory ", workdir, " lies under ", d,
                                ", which therefore stays visible (set TMPDIR to a directory outside it)");
        continue;
      }
      hide.push_back(d);
    }
  }
  pn.hide = &hide;
  const std::string tmpfs_options = str_cat("size=", limits.disk_bytes, ",nr_inodes=",
                                            std::max<uint64_t>(64, limits.disk_bytes / 4096),
                                            ",mode=0700,uid=", kNobody, ",gid=", kNobody);

  // Everything the children use is prepared here (no allocation after fork).
  std::vector<std::string> env_s = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + workdir, "TMPDIR=" + workdir,
                                    "LANG=C.UTF-8"};
  std::vector<char*> argv_p, envp_p;
  for (const auto& a : argv) argv_p.push_back(const_cast<char*>(a.c_str()));
  argv_p.push_back(nullptr);
  for (const auto& e : env_s) envp_p.push_back(const_cast<char*>(e.c_str()));
  envp_p.push_back(nullptr);
  std::vector<ChildFile> child_files;
  for (const auto& [name, text] : files) child_files.push_back({name.c_str(), text.data(), text.size()});
  std::vector<const char*> hide_p;
  for (const auto& d : hide) hide_p.push_back(d.c_str());

  Pipe out, rep;
  ChildPlan plan{};
  plan.workdir = workdir.c_str();
  plan.argv = argv_p.data();
  plan.envp = envp_p.data();
  plan.limits = &limits;
  plan.files = child_files.data();
  plan.n_files = child_files.size();
  plan.tmpfs_options = tmpfs_options.c_str();
  plan.hide = hide_p.data();
  plan.n_hide = hide_p.size();
  plan.hide_complete = hide_complete;
  plan.seccomp = filter.program.empty() ? nullptr : &fprog;
  plan.outer_uid = geteuid();
  plan.outer_gid = getegid();
  plan.out_w = out.w;
  plan.report_w = rep.w;
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

  bool got_status = false, incomplete = false;
  int status = 0;
  apply_records(reports, pn, res, got_status, status, incomplete);
  if (incomplete && !res.setup_failed) {
    res.setup_failed = true;
    res.setup_error =
        "the sandbox is incomplete (missing: " + join_missing(res.isolation) + "), the program was not started";
  }
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

SandboxResult probe_sandbox(const SandboxLimits& limits) {
  SandboxLimits l = limits;
  l.require_complete = false;
  return run_sandboxed({access("/bin/true", X_OK) == 0 ? "/bin/true" : "/usr/bin/true"}, {}, l);
}

}  // namespace upg
