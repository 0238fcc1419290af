// Running untrusted programs (model-written code under test, e.g. HumanEval) in a contained child
// process. Linux only. What it does, per run:
//  * a private work directory (mkdtemp under $TMPDIR or /tmp) holding the given files; it is the
//    child's cwd and HOME and is removed afterwards;
//  * fork -> supervisor (setsid: its own session and process group) which unshares new PID,
//    network, mount, IPC and UTS namespaces (adding a user namespace when that is needed and
//    allowed), then forks the namespace's init, which forks the program. When init ends, the
//    kernel kills every process left in the PID namespace, so fork bombs leave nothing behind;
//  * in the mount namespace: a fresh /proc, the whole file tree re-mounted read-only (recursively)
//    except the work directory;
//  * no network: the new network namespace has only a downed loopback device;
//  * rlimits: CPU seconds, address space, processes (RLIMIT_NPROC, enforced because the program
//    runs as the unprivileged uid/gid 65534 "nobody" when we are root), file size, open files,
//    no core dumps; PR_SET_NO_NEW_PRIVS; an empty environment except PATH, HOME, LANG; stdin from
//    /dev/null; stdout and stderr captured (the last `output_bytes` are kept);
//  * a wall-clock deadline enforced by the parent: SIGKILL to the supervisor's process group.
// Each isolation step that the system does not permit is skipped and reported in
// SandboxResult::isolation (never silently): callers can print or refuse a weak sandbox.
//
// Thread-safety: run_sandboxed may be called from several threads at once (no global state apart
// from fork); the child uses only async-signal-safe calls between fork and exec.
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
};

// Which isolation steps took effect for this run; notes explains each one that did not.
struct SandboxIsolation {
  bool pid_namespace = false, network_namespace = false, mount_namespace = false;
  bool user_namespace = false;   // used only when plain namespaces were not permitted (not root)
  bool readonly_root = false;    // everything but the work directory read-only
  bool unprivileged_uid = false; // the program ran as uid/gid 65534
  std::vector<std::string> notes;
  bool complete() const { return pid_namespace && network_namespace && readonly_root && unprivileged_uid; }
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

}  // namespace upg
