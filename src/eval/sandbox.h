// Running untrusted programs (model-written code under test, e.g. HumanEval) in a contained child
// process. Linux only. What it does, per run:
//  * fork -> supervisor (setsid: its own session and process group) which unshares new PID,
//    network, mount, IPC and UTS namespaces (as root; otherwise together with a user namespace
//    that maps only the program's uid/gid 65534 onto the caller's own), then forks the
//    namespace's init, which forks the program. When init ends, the kernel kills every process
//    left in the PID namespace, so fork bombs leave nothing behind;
//  * in the mount namespace: a fresh /proc; empty read-only tmpfs over /home, /root and
//    /run/user; a tmpfs of SandboxLimits::disk_bytes (mode 0700, owned by 65534) mounted on a
//    private, initially empty work directory (mkdtemp under $TMPDIR or /tmp), into which the
//    given files are written; then the whole file tree re-mounted read-only (recursively) except
//    that tmpfs: it is the program's only writable place, its cwd, HOME and TMPDIR;
//  * no network: the new network namespace has only a downed loopback device;
//  * the program runs as uid/gid 65534 ("nobody") with no supplementary groups and no
//    capabilities: bounding and ambient sets cleared, securebits NOROOT, NO_SETUID_FIXUP,
//    NO_CAP_AMBIENT_RAISE set and locked (KEEP_CAPS cleared and locked), then capset to empty
//    effective, permitted and inheritable sets; PR_SET_NO_NEW_PRIVS;
//  * rlimits: CPU seconds, address space, processes (RLIMIT_NPROC), file size, open files, no
//    core dumps; an empty environment except PATH, HOME, TMPDIR, LANG; stdin from /dev/null;
//    stdout and stderr captured (the last `output_bytes` are kept);
//  * last, right before execve, a seccomp-BPF filter (eval/sandbox_seccomp.h) that denies
//    mounts, namespaces, ptrace, bpf, keyrings, perf events, kernel modules, AF_UNIX sockets and
//    similar calls;
//  * a wall-clock deadline enforced by the parent: SIGKILL to the supervisor's process group.
// Each isolation step that the system does not permit is reported in SandboxResult::isolation
// (never silently). With SandboxLimits::require_complete the program is not started at all when
// any step is missing (setup_failed, saying which); otherwise it runs with what took effect.
//
// Thread-safety: run_sandboxed may be called from several threads at once (no global state apart
// from fork and the seccomp filter, built once before the first fork); the children use only
// async-signal-safe calls between fork and exec.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace upg {

struct SandboxLimits {
  double wall_seconds = 10;                  // the parent kills everything after this long
  int cpu_seconds = 10;                      // RLIMIT_CPU (SIGXCPU, then SIGKILL a second later)
  uint64_t address_space_bytes = 1ull << 30; // RLIMIT_AS: allocations beyond fail (MemoryError)
  int max_processes = 32;                    // RLIMIT_NPROC for the unprivileged uid
  uint64_t file_size_bytes = 16ull << 20;    // RLIMIT_FSIZE: larger writes get SIGXFSZ / EFBIG
  int open_files = 64;                       // RLIMIT_NOFILE
  size_t output_bytes = 16 << 10;            // tail of stdout+stderr kept in SandboxResult::output
  uint64_t disk_bytes = 64ull << 20;         // size of the work directory's tmpfs (ENOSPC beyond)
  bool require_complete = false;             // start the program only when every step took effect
  unsigned skip = 0;                         // SandboxSkip bits: steps left out on purpose (tests)
};

// Steps that SandboxLimits::skip leaves out, to test how callers handle an incomplete sandbox.
enum SandboxSkip : unsigned {
  kSandboxSkipSeccomp = 1,      // no seccomp filter
  kSandboxSkipPrivileges = 2,   // keep the uid and capabilities of the caller (or of namespace root)
  kSandboxSkipTmpfs = 4,        // the work directory is the host directory, not a tmpfs
};

// Which isolation steps took effect for this run; notes explains each one that did not.
struct SandboxIsolation {
  bool pid_namespace = false, network_namespace = false, mount_namespace = false;
  bool ipc_namespace = false, uts_namespace = false;
  bool user_namespace = false;   // used only when plain namespaces were not permitted (not root)
  bool readonly_root = false;    // everything but the work directory read-only
  bool tmpfs = false;            // the work directory is a size-limited tmpfs
  bool home_hidden = false;      // /home, /root and /run/user covered by empty read-only tmpfs
  bool unprivileged_uid = false; // the program ran as uid/gid 65534 (not root outside a user namespace)
  bool capabilities_dropped = false;  // all capability sets empty, securebits set and locked
  bool no_new_privs = false;     // PR_SET_NO_NEW_PRIVS
  bool seccomp = false;          // the seccomp filter was loaded
  std::vector<std::string> notes;  // one or more for each step that did not take effect
  bool complete() const {
    return pid_namespace && network_namespace && mount_namespace && ipc_namespace && uts_namespace &&
           readonly_root && tmpfs && home_hidden && unprivileged_uid && capabilities_dropped && no_new_privs &&
           seccomp;
  }
  // Names of the steps that did not take effect ("seccomp filter", "read-only file tree", ...).
  std::vector<std::string> missing() const;
};

struct SandboxResult {
  bool timed_out = false;  // killed by the parent at the wall-clock deadline
  int exit_code = -1;      // when the program exited normally, else -1
  int signal = 0;          // the signal that ended it (0 if none)
  bool setup_failed = false;  // the program could not be started (setup_error says why)
  std::string setup_error;
  double wall_seconds = 0;
  std::string output;  // last SandboxLimits::output_bytes of stdout and stderr (interleaved)
  SandboxIsolation isolation;

  bool passed() const { return !timed_out && !setup_failed && signal == 0 && exit_code == 0; }
  // "passed", "timed out after 3.0 s", "killed by signal 9 (SIGKILL)",
  // "exit code 1: AssertionError" (the last non-empty output line), "setup failed: ...".
  std::string describe() const;
};

// Runs argv (argv[0] an absolute path) in the sandbox with `files` (name -> contents; plain
// names, no '/') written into the work directory first. Throws Error only when the parent cannot
// set up (no temporary directory, fork or pipe failed); everything that goes wrong inside the
// sandbox is reported in the result.
SandboxResult run_sandboxed(const std::vector<std::string>& argv,
                            const std::vector<std::pair<std::string, std::string>>& files,
                            const SandboxLimits& limits);

// Runs `python -I -B program.py` (isolated mode: no user site packages, no PYTHON* variables,
// no bytecode files) with program.py holding `source`. python: Debian's /usr/bin/python3.
SandboxResult run_python_sandboxed(const std::string& source, const SandboxLimits& limits,
                                   const std::string& python = "/usr/bin/python3");

// Runs /bin/true in the sandbox (require_complete off, so the result tells what is missing rather
// than refusing): what the sandbox achieves on this system with these limits.
SandboxResult probe_sandbox(const SandboxLimits& limits);

}  // namespace upg
