// The child side of the sandbox (eval/sandbox.h): the processes between fork and the program's
// execve, and the records they send to the parent. Internal to sandbox.cpp.
//
// Process tree of one run:
//   parent (upg) --fork--> supervisor: setsid, unshare(namespaces [+ user]), uid/gid maps
//     supervisor --fork--> init (pid 1 of the new PID namespace): mounts, work files, waits
//       init --fork--> program: rlimits, cwd, fds, capabilities and uid dropped, no_new_privs,
//                      seccomp, execve
// Stages report to the parent through a pipe of fixed 8-byte records (atomic writes): what took
// effect, errno of what failed, and the program's raw wait status (from init). Everything the
// children use is prepared by the parent before fork (ChildPlan); they only make system calls.
#pragma once
#include <linux/filter.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>

#include "eval/sandbox.h"

namespace upg::sandbox_detail {

constexpr uid_t kNobody = 65534;

enum RecordKind : int32_t {
  kNsFlags = 1,     // value: CLONE_NEW* flags that took effect
  kNsErrno,         // unshare without a user namespace failed
  kUserNsErrno,     // unshare with a user namespace failed too
  kUidMapErrno,     // writing uid_map/gid_map failed
  kPrivateErrno,    // making / private in the mount namespace failed
  kProcErrno,       // mounting a fresh /proc failed
  kHideErrno,       // value: errno * 16 + index of the directory in ChildPlan::hide
  kHideOk,          // every directory of ChildPlan::hide is covered
  kTmpfsErrno,      // mounting the work tmpfs failed
  kTmpfsOk,
  kFileErrno,       // writing a work file failed (value: errno)
  kReadonlyErrno,   // the read-only remount failed
  kReadonlyOk,
  kRlimitErrno,     // value: errno * 16 + resource
  kChdirErrno,
  kCapsErrno,       // value: errno * 16 + CapsStep
  kCapsOk,          // every capability set empty, securebits locked
  kUidErrno,        // dropping to uid 65534 failed
  kUidOk,
  kNnpErrno,
  kNnpOk,
  kSeccompErrno,    // loading the filter failed
  kSeccompOk,
  kIncomplete,      // require_complete and a step was missing: the program was not started
  kForkErrno,
  kExecErrno,
  kChildStatus,     // the program's raw wait status
};

// Which part of dropping the capabilities failed (kCapsErrno).
enum CapsStep : int32_t { kCapsBounding = 1, kCapsAmbient, kCapsSecurebits, kCapsCapset, kCapsVerify };

struct Record {
  int32_t kind, value;
};

struct ChildFile {
  const char* name;
  const char* data;
  size_t size;
};

struct ChildPlan {
  const char* workdir;
  char* const* argv;
  char* const* envp;
  const SandboxLimits* limits;
  const ChildFile* files;
  size_t n_files;
  const char* tmpfs_options;   // "size=...,nr_inodes=...,mode=0700,uid=65534,gid=65534"
  const char* const* hide;     // existing directories to cover with an empty read-only tmpfs
  size_t n_hide;
  bool hide_complete;          // false when a directory to hide holds the work directory
  const sock_fprog* seccomp;   // null when the filter could not be built
  uid_t outer_uid;             // the caller's euid/egid (for the user namespace's maps)
  gid_t outer_gid;
  int out_w, report_w;
};

// The supervisor: runs in the forked child, never returns.
[[noreturn]] void run_supervisor(const ChildPlan& p, pid_t parent);

}  // namespace upg::sandbox_detail
