// The sandbox (eval/sandbox.h) against escape attempts, on both of its paths: as root (plain
// namespaces, the program dropped to uid 65534) and as an ordinary user (a user namespace mapping
// only 65534). Every attempt is a program run inside the sandbox that must fail in the expected
// way; a step this machine cannot set up fails the test (only a system without user namespaces
// skips the non-root path, saying so).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "eval/humaneval.h"
#include "eval/sandbox.h"
#include "eval/sandbox_seccomp.h"
#include "test_util.h"

namespace upg {
namespace {

namespace fs = std::filesystem;

constexpr uid_t kTestUser = 4242;  // the ordinary user of the non-root path (needs no passwd entry)

enum class Path { kRoot, kUser };

std::string path_name(Path p) { return p == Path::kRoot ? "root" : "user"; }

// A result carried across the fork of the non-root path.
nlohmann::json result_json(const SandboxResult& r) {
  return {{"timed_out", r.timed_out}, {"exit_code", r.exit_code},     {"signal", r.signal},
          {"setup_failed", r.setup_failed}, {"setup_error", r.setup_error}, {"wall_seconds", r.wall_seconds},
          {"output", r.output},       {"isolation", to_json(r.isolation)}};
}

SandboxResult result_from_json(const nlohmann::json& j) {
  SandboxResult r;
  r.timed_out = j["timed_out"];
  r.exit_code = j["exit_code"];
  r.signal = j["signal"];
  r.setup_failed = j["setup_failed"];
  r.setup_error = j["setup_error"];
  r.wall_seconds = j["wall_seconds"];
  r.output = j["output"];
  const auto& i = j["isolation"];
  SandboxIsolation& s = r.isolation;
  s.pid_namespace = i["pid_namespace"];
  s.network_namespace = i["network_namespace"];
  s.mount_namespace = i["mount_namespace"];
  s.ipc_namespace = i["ipc_namespace"];
  s.uts_namespace = i["uts_namespace"];
  s.user_namespace = i["user_namespace"];
  s.readonly_root = i["readonly_root"];
  s.tmpfs = i["tmpfs"];
  s.home_hidden = i["home_hidden"];
  s.unprivileged_uid = i["unprivileged_uid"];
  s.capabilities_dropped = i["capabilities_dropped"];
  s.no_new_privs = i["no_new_privs"];
  s.seccomp = i["seccomp"];
  s.notes = i["notes"].get<std::vector<std::string>>();
  return r;
}

// Runs the sandbox as an ordinary user: a forked child of this test drops to kTestUser (with its
// own TMPDIR) and sends the result back as JSON.
SandboxResult run_as_user(const std::vector<std::string>& argv,
                          const std::vector<std::pair<std::string, std::string>>& files, const SandboxLimits& limits) {
  const fs::path tmp = fs::temp_directory_path() / ("upg_sandbox_user_" + std::to_string(getpid()));
  fs::create_directories(tmp);
  EXPECT_EQ(chown(tmp.c_str(), kTestUser, kTestUser), 0);
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  const pid_t c = fork();
  if (c == 0) {
    close(fds[0]);
    std::string text;
    if (setgroups(0, nullptr) != 0 || setresgid(kTestUser, kTestUser, kTestUser) != 0 ||
        setresuid(kTestUser, kTestUser, kTestUser) != 0) {
      text = "{\"error\": \"cannot become uid 4242\"}";
    } else {
      // Changing the uid made this process non-dumpable, which an ordinary user's process is not
      // (its /proc/self files, uid_map among them, would belong to root).
      prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
      setenv("TMPDIR", tmp.c_str(), 1);
      try {
        text = result_json(run_sandboxed(argv, files, limits)).dump();
      } catch (const std::exception& e) {
        text = nlohmann::json{{"error", e.what()}}.dump();
      }
    }
    for (size_t off = 0; off < text.size();) {
      const ssize_t n = write(fds[1], text.data() + off, text.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    _exit(0);
  }
  close(fds[1]);
  std::string text;
  char buf[65536];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) text.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(c, &status, 0);
  std::error_code ec;
  fs::remove_all(tmp, ec);
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || j.contains("error")) {
    ADD_FAILURE() << "the non-root child failed: " << text;
    SandboxResult r;
    r.setup_failed = true;
    r.setup_error = text;
    return r;
  }
  return result_from_json(j);
}

bool user_namespaces_available(std::string* why) {
  std::ifstream f("/proc/sys/user/max_user_namespaces");
  long n = -1;
  if (f >> n && n == 0) {
    *why = "user namespaces are disabled on this system (/proc/sys/user/max_user_namespaces = 0)";
    return false;
  }
  std::ifstream d("/proc/sys/kernel/unprivileged_userns_clone");  // Debian's switch, absent upstream
  int on = 1;
  if (d >> on && on == 0) {
    *why = "unprivileged user namespaces are disabled (/proc/sys/kernel/unprivileged_userns_clone = 0)";
    return false;
  }
  return true;
}

class SandboxPaths : public ::testing::TestWithParam<Path> {
 protected:
  void SetUp() override {
    if (GetParam() == Path::kRoot && geteuid() != 0)
      GTEST_SKIP() << "the root path needs root; this test runs as uid " << geteuid();
    std::string why;
    if (GetParam() == Path::kUser && !user_namespaces_available(&why))
      GTEST_SKIP() << "the non-root path needs user namespaces: " << why;
  }

  SandboxResult run(const std::vector<std::string>& argv,
                    const std::vector<std::pair<std::string, std::string>>& files, const SandboxLimits& limits) {
    if (GetParam() == Path::kUser && geteuid() == 0) return run_as_user(argv, files, limits);
    return run_sandboxed(argv, files, limits);
  }
  SandboxResult python(const std::string& source, const SandboxLimits& limits,
                       const std::vector<std::string>& args = {}) {
    std::vector<std::string> argv = {"/usr/bin/python3", "-I", "-B", "program.py"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv, {{"program.py", source}}, limits);
  }
};

SandboxLimits limits(double wall = 10) {
  SandboxLimits l;
  l.wall_seconds = wall;
  l.cpu_seconds = static_cast<int>(wall) + 1;
  return l;
}

std::string notes(const SandboxResult& r) {
  std::string s = r.describe() + "\n--- output:\n" + r.output + "--- isolation notes:";
  for (const auto& n : r.isolation.notes) s += "\n  " + n;
  return s;
}

// The escape attempts: each prints "OK <name>" when it failed the way it must, else
// "FAIL <name>: <what happened>". The last line is "DONE".
constexpr const char* kEscapes = R"PY(
import ctypes, errno, os, socket, stat, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
failed = 0
def result(name, ok, detail=''):
    global failed
    print(('OK ' if ok else 'FAIL ') + name + ('' if ok else ': ' + str(detail)), flush=True)
    failed += not ok
def denied(name, rc, want=errno.EPERM):
    e = ctypes.get_errno()
    result(name, rc == -1 and e == want, 'returned %d, errno %d (%s)' % (rc, e, os.strerror(e)))
def oserror(name, fn, want):
    try:
        fn()
        result(name, False, 'no error')
    except OSError as e:
        result(name, e.errno in want, repr(e))

status = dict(l.split(':', 1) for l in open('/proc/self/status').read().splitlines() if ':' in l)
for k in ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb'):
    result('status ' + k, status[k].strip() == '0000000000000000', status[k].strip())
result('status NoNewPrivs', status['NoNewPrivs'].strip() == '1', status['NoNewPrivs'])
result('status Seccomp', status['Seccomp'].strip() == '2', status['Seccomp'])
result('uid', (os.getuid(), os.geteuid(), os.getgid(), os.getegid()) == (65534,) * 4,
       (os.getuid(), os.geteuid(), os.getgid(), os.getegid()))

MS_REMOUNT, MS_BIND = 32, 4096
denied('mount tmpfs', libc.mount(b'none', b'/tmp', b'tmpfs', 0, None))
denied('remount / read-write', libc.mount(None, b'/', None, MS_REMOUNT, None))
denied('remount cwd read-write', libc.mount(None, os.getcwd().encode(), None, MS_REMOUNT | MS_BIND, None))
denied('umount the work tmpfs', libc.umount2(os.getcwd().encode(), 2))
denied('chroot', libc.chroot(b'/tmp'))
denied('pivot_root', libc.syscall(155, b'/', b'/'))
denied('unshare user', libc.unshare(0x10000000))
denied('unshare net+mount', libc.unshare(0x40000000 | 0x00020000))
denied('setns', libc.setns(-1, 0))
rc = libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0)  # clone(CLONE_NEWUSER | SIGCHLD)
if rc == 0:
    os._exit(0)
denied('clone CLONE_NEWUSER', rc)
denied('clone3', libc.syscall(435, None, 0), errno.ENOSYS)
denied('ptrace attach init', libc.ptrace(16, 1, None, None))
denied('ptrace traceme', libc.ptrace(0, 0, None, None))
denied('process_vm_readv', libc.syscall(310, 1, None, 0, None, 0, 0))
denied('bpf', libc.syscall(321, 0, None, 0))
denied('keyctl', libc.syscall(250, 0, 0, 0, 0, 0))
denied('perf_event_open', libc.syscall(298, None, 0, -1, -1, 0))
denied('userfaultfd', libc.syscall(323, 0))
denied('personality ADDR_NO_RANDOMIZE', libc.personality(0x0040000))
result('personality query', libc.personality(0xffffffff) != -1)
oserror('mknod char device', lambda: os.mknod('null', 0o600 | stat.S_IFCHR, os.makedev(1, 3)), (errno.EPERM,))

for target in ['/tmp/upg_escape', '/var/tmp/upg_escape', '/dev/shm/upg_escape', '/etc/upg_escape',
               sys.argv[1] + '/upg_escape']:
    oserror('write ' + target, lambda: open(target, 'w').write('escaped'), (errno.EROFS, errno.EACCES, errno.ENOENT))
with open('own.txt', 'w') as f:
    f.write('ok')
result('write the work directory', open('own.txt').read() == 'ok')
def fill():
    with open('fill', 'wb') as f:
        for i in range(int(sys.argv[2]) // 65536 + 64):
            f.write(b'x' * 65536)
            f.flush()
oserror('fill the disk', fill, (errno.ENOSPC,))
os.remove('fill')

for d in ('/home', '/root', '/run/user'):
    if os.path.isdir(d):
        result('hidden ' + d, os.listdir(d) == [], os.listdir(d))
oserror('read the host home', lambda: open(sys.argv[3]).read(), (errno.ENOENT, errno.EACCES))
result('own PID namespace', sorted(int(p) for p in os.listdir('/proc') if p.isdigit())[0] == 1 and
       len([p for p in os.listdir('/proc') if p.isdigit()]) < 5, os.listdir('/proc'))

oserror('tcp to 127.0.0.1', lambda: socket.create_connection(('127.0.0.1', 22), timeout=1),
        (errno.ENETUNREACH, errno.ECONNREFUSED, errno.EADDRNOTAVAIL))
oserror('udp to 1.1.1.1', lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).connect(('1.1.1.1', 53)),
        (errno.ENETUNREACH,))
oserror('unix socket', lambda: socket.socket(socket.AF_UNIX), (errno.EPERM,))
a, b = socket.socketpair()
result('socketpair', a.send(b'x') == 1 and b.recv(1) == b'x')

children = 0
try:
    while children < 1000:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        children += 1
    result('fork limit', False, 'forked 1000 times')
except OSError as e:
    result('fork limit', e.errno == errno.EAGAIN and children < int(sys.argv[4]), (children, repr(e)))
print('DONE', flush=True)
sys.exit(1 if failed else 0)
)PY";

TEST_P(SandboxPaths, EveryEscapeAttemptFails) {
  // A world-readable secret in the host's /home (in /root where there is no /home). Not root, this
  // test cannot write there: the attempt then reads a missing file, and the listings of the
  // hidden directories (which must be empty inside) still show what the program can see.
  const fs::path home = fs::is_directory("/home") ? "/home" : "/root";
  const fs::path secret = home / ("upg_sandbox_secret_" + std::to_string(getpid()));
  {
    std::ofstream(secret) << "secret";
    chmod(secret.c_str(), 0644);
  }
  if (!fs::exists(secret)) std::printf("note: cannot write %s as uid %u\n", secret.c_str(), geteuid());
  SandboxLimits l = limits(20);
  l.disk_bytes = 2 << 20;
  l.file_size_bytes = 64 << 20;  // the tmpfs fills up first
  const SandboxResult r = python(kEscapes, l,
                                 {test::source_dir(), std::to_string(l.disk_bytes), secret.string(),
                                  std::to_string(l.max_processes)});
  std::error_code ec;
  fs::remove(secret, ec);
  for (const std::string& name : std::vector<std::string>{"/tmp/upg_escape", "/var/tmp/upg_escape", "/dev/shm/upg_escape",
                                  "/etc/upg_escape", test::source_dir() + "/upg_escape"})
    EXPECT_FALSE(fs::exists(name)) << name << " was written by the sandboxed program";
  EXPECT_TRUE(r.isolation.complete()) << notes(r);
  EXPECT_EQ(r.isolation.user_namespace, GetParam() == Path::kUser) << notes(r);
  EXPECT_TRUE(r.passed()) << notes(r);
  EXPECT_NE(r.output.find("\nDONE"), std::string::npos) << notes(r);
  EXPECT_EQ(r.output.find("FAIL"), std::string::npos) << notes(r);
  // Every attempt ran (a crash half-way would skip the rest).
  for (const char* name : {"OK status CapEff", "OK status CapBnd", "OK status NoNewPrivs", "OK status Seccomp",
                           "OK uid", "OK mount tmpfs", "OK remount / read-write", "OK unshare user",
                           "OK clone CLONE_NEWUSER", "OK clone3", "OK ptrace attach init", "OK bpf",
                           "OK write /tmp/upg_escape", "OK write the work directory", "OK fill the disk",
                           "OK read the host home", "OK tcp to 127.0.0.1", "OK unix socket", "OK fork limit"})
    EXPECT_NE(r.output.find(name), std::string::npos) << name << "\n" << notes(r);
}

TEST_P(SandboxPaths, ProcStatusShowsNoPrivileges) {
  const SandboxResult r = run({"/bin/cat", "/proc/self/status"}, {}, limits());
  ASSERT_TRUE(r.passed()) << notes(r);
  for (const char* line : {"CapInh:\t0000000000000000", "CapPrm:\t0000000000000000", "CapEff:\t0000000000000000",
                           "CapBnd:\t0000000000000000", "CapAmb:\t0000000000000000", "NoNewPrivs:\t1",
                           "Seccomp:\t2", "Uid:\t65534\t65534\t65534\t65534", "Gid:\t65534\t65534\t65534\t65534"})
    EXPECT_NE(r.output.find(line), std::string::npos) << line << "\n" << r.output;
  // No supplementary groups (the non-root path's caller has none either).
  const size_t g = r.output.find("Groups:");
  ASSERT_NE(g, std::string::npos) << r.output;
  const std::string groups = r.output.substr(g + 7, r.output.find('\n', g) - g - 7);
  EXPECT_EQ(groups.find_first_not_of(" \t"), std::string::npos) << "Groups:" << groups;
  EXPECT_TRUE(r.isolation.complete()) << notes(r);
  EXPECT_TRUE(r.isolation.notes.empty()) << notes(r);
}

TEST_P(SandboxPaths, ShellCannotMountOrUnshare) {
  const SandboxResult r = run({"/bin/sh", "-c",
                               "mount -t tmpfs none /tmp 2>&1; echo mount=$?; "
                               "mount -o remount,rw / 2>&1; echo remount=$?; "
                               "unshare -U true 2>&1; echo unshare=$?; "
                               "echo x > /tmp/upg_sh_escape 2>&1; echo write=$?; id -u"},
                              {}, limits());
  ASSERT_FALSE(r.setup_failed) << notes(r);
  for (const char* bad : {"mount=0", "remount=0", "unshare=0", "write=0"})
    EXPECT_EQ(r.output.find(bad), std::string::npos) << bad << "\n" << r.output;
  EXPECT_NE(r.output.find("mount=32"), std::string::npos) << r.output;  // mount(8): "must be superuser"
  EXPECT_NE(r.output.find("Operation not permitted"), std::string::npos) << r.output;  // unshare(1)
  EXPECT_NE(r.output.find("\n65534\n"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists("/tmp/upg_sh_escape"));
}

TEST_P(SandboxPaths, WallClockKillsTheWholeGroup) {
  const auto t0 = std::chrono::steady_clock::now();
  const SandboxResult r = run({"/bin/sh", "-c", "sleep 100 & sleep 100; echo survived"}, {}, limits(1));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_TRUE(r.timed_out) << notes(r);
  EXPECT_LT(s, 4.0);
  EXPECT_EQ(r.output.find("survived"), std::string::npos);
}

TEST_P(SandboxPaths, ShellForkBombIsContained) {
  const auto t0 = std::chrono::steady_clock::now();
  const SandboxResult r = run({"/bin/sh", "-c", "b() { b | b & }; b; sleep 1; echo bombed"}, {}, limits(5));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(s, 7.0) << notes(r);
  EXPECT_FALSE(r.setup_failed) << notes(r);
  // The machine stays usable: a new sandbox starts and runs normally right after.
  const SandboxResult after = run({"/bin/true"}, {}, limits());
  EXPECT_TRUE(after.passed()) << notes(after);
}

INSTANTIATE_TEST_SUITE_P(Both, SandboxPaths, ::testing::Values(Path::kRoot, Path::kUser),
                         [](const auto& info) { return path_name(info.param); });

// Each layer alone stops a mount: seccomp even for a program that kept root's capabilities, the
// dropped capabilities even without seccomp.
TEST(Sandbox, SeccompAloneStopsRootFromMounting) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (a program that keeps its capabilities)";
  SandboxLimits l = limits();
  l.skip = kSandboxSkipPrivileges;
  const SandboxResult r = run_sandboxed(
      {"/usr/bin/python3", "-I", "-c",
       "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
       "print('uid', os.getuid(), 'mount', libc.mount(b'none', b'/tmp', b'tmpfs', 0, None), ctypes.get_errno())"},
      {}, l);
  EXPECT_NE(r.output.find("uid 0 mount -1 1\n"), std::string::npos) << notes(r);
  EXPECT_FALSE(r.isolation.complete());
  EXPECT_FALSE(r.isolation.capabilities_dropped);
  EXPECT_TRUE(r.isolation.seccomp);
}

TEST(Sandbox, DroppedCapabilitiesAloneStopMounting) {
  SandboxLimits l = limits();
  l.skip = kSandboxSkipSeccomp;
  const SandboxResult r = run_sandboxed(
      {"/usr/bin/python3", "-I", "-c",
       "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
       "print('mount', libc.mount(b'none', b'/tmp', b'tmpfs', 0, None), ctypes.get_errno())\n"
       "print(open('/proc/self/status').read())"},
      {}, l);
  EXPECT_NE(r.output.find("mount -1 1\n"), std::string::npos) << notes(r);
  EXPECT_NE(r.output.find("Seccomp:\t0"), std::string::npos) << notes(r);
  EXPECT_FALSE(r.isolation.seccomp);
  EXPECT_FALSE(r.isolation.complete());
  bool named = false;
  for (const auto& n : r.isolation.notes) named = named || n.find("seccomp filter") != std::string::npos;
  EXPECT_TRUE(named) << notes(r);
}

TEST(Sandbox, RequireCompleteRefusesToStartAWeakSandbox) {
  for (unsigned skip : {static_cast<unsigned>(kSandboxSkipSeccomp), static_cast<unsigned>(kSandboxSkipPrivileges),
                        static_cast<unsigned>(kSandboxSkipTmpfs)}) {
    SandboxLimits l = limits();
    l.skip = skip;
    l.require_complete = true;
    const SandboxResult r = run_sandboxed({"/bin/sh", "-c", "echo started"}, {}, l);
    EXPECT_TRUE(r.setup_failed) << skip << ": " << notes(r);
    EXPECT_NE(r.setup_error.find("the sandbox is incomplete (missing: "), std::string::npos) << r.setup_error;
    EXPECT_EQ(r.output.find("started"), std::string::npos) << "the program ran: " << notes(r);
    EXPECT_FALSE(r.passed());
  }
  // Complete: it runs.
  SandboxLimits l = limits();
  l.require_complete = true;
  const SandboxResult ok = run_sandboxed({"/bin/sh", "-c", "echo started"}, {}, l);
  EXPECT_TRUE(ok.passed()) << notes(ok);
  EXPECT_NE(ok.output.find("started"), std::string::npos);
}

TEST(Sandbox, ProbeReportsEveryStep) {
  const SandboxResult r = probe_sandbox(limits());
  EXPECT_TRUE(r.passed()) << notes(r);
  const SandboxIsolation& i = r.isolation;
  EXPECT_TRUE(i.pid_namespace && i.network_namespace && i.mount_namespace && i.ipc_namespace && i.uts_namespace)
      << notes(r);
  EXPECT_TRUE(i.readonly_root && i.tmpfs && i.home_hidden) << notes(r);
  EXPECT_TRUE(i.unprivileged_uid && i.capabilities_dropped && i.no_new_privs && i.seccomp) << notes(r);
  EXPECT_TRUE(i.complete()) << notes(r);
  EXPECT_TRUE(i.missing().empty());
  // Skipping steps: each is named in missing() and in the notes.
  SandboxLimits l = limits();
  l.skip = kSandboxSkipSeccomp | kSandboxSkipTmpfs;
  const SandboxResult weak = probe_sandbox(l);
  EXPECT_TRUE(weak.passed()) << notes(weak);
  EXPECT_EQ(weak.isolation.missing(), (std::vector<std::string>{"size-limited tmpfs work directory", "seccomp filter"}));
  const std::string& last = weak.isolation.notes.back();
  EXPECT_EQ(last, "missing: size-limited tmpfs work directory, seccomp filter");
}

// A work directory under /home keeps /home visible: reported, and so incomplete.
TEST(Sandbox, WorkDirectoryUnderHomeIsReported) {
  const fs::path dir = fs::path("/home") / ("upg_sandbox_tmp_" + std::to_string(getpid()));
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) GTEST_SKIP() << "cannot create " << dir << ": " << ec.message();
  const char* old = std::getenv("TMPDIR");
  const std::string saved = old ? old : "";
  setenv("TMPDIR", dir.c_str(), 1);
  const SandboxResult r = probe_sandbox(limits());
  if (old)
    setenv("TMPDIR", saved.c_str(), 1);
  else
    unsetenv("TMPDIR");
  fs::remove_all(dir, ec);
  EXPECT_TRUE(r.passed()) << notes(r);
  EXPECT_FALSE(r.isolation.home_hidden);
  EXPECT_FALSE(r.isolation.complete());
  ASSERT_GE(r.isolation.notes.size(), 2u) << notes(r);
  EXPECT_NE(r.isolation.notes[0].find("lies under /home, which therefore stays visible"), std::string::npos)
      << notes(r);
  EXPECT_EQ(r.isolation.notes.back(), "missing: hidden /home, /root and /run/user");
}

TEST(Sandbox, FilesLandInTheTmpfsAndTooLargeFilesFailTheSetup) {
  SandboxLimits l = limits();
  const SandboxResult r = run_sandboxed({"/bin/sh", "-c", "cat given.txt; stat -f -c %T .; ls -ld . | cut -c1-10"},
                                        {{"given.txt", "hello\n"}}, l);
  EXPECT_TRUE(r.passed()) << notes(r);
  EXPECT_NE(r.output.find("hello\ntmpfs\ndrwx------"), std::string::npos) << r.output;
  l.disk_bytes = 64 << 10;
  const SandboxResult big = run_sandboxed({"/bin/true"}, {{"big", std::string(1 << 20, 'x')}}, l);
  EXPECT_TRUE(big.setup_failed);
  EXPECT_NE(big.describe().find("No space left on device"), std::string::npos) << big.describe();
}

// What ordinary programs do still works: threads (glibc tries clone3, gets ENOSYS, uses clone),
// fork and wait, pipes, socketpair, files in the work directory.
TEST(Sandbox, OrdinaryProgramsStillWork) {
  const SandboxResult r = run_sandboxed(
      {"/usr/bin/python3", "-I", "-c",
       "import concurrent.futures as f, os, socket, threading\n"
       "with f.ThreadPoolExecutor(4) as ex:\n    assert sum(ex.map(lambda x: x * x, range(10))) == 285\n"
       "pid = os.fork()\nif pid == 0:\n    os._exit(7)\nassert os.waitpid(pid, 0)[1] >> 8 == 7\n"
       "r, w = os.pipe()\nos.write(w, b'x')\nassert os.read(r, 1) == b'x'\n"
       "a, b = socket.socketpair()\na.send(b'y')\nassert b.recv(1) == b'y'\n"
       "open('f', 'w').write('z')\nassert open('f').read() == 'z'\nprint('fine')"},
      {}, limits());
  EXPECT_TRUE(r.passed()) << notes(r);
  EXPECT_EQ(r.output, "fine\n");
  EXPECT_TRUE(r.isolation.complete()) << notes(r);
}

TEST(Sandbox, SeccompFilterIsBuilt) {
  const SandboxSeccompFilter& f = sandbox_seccomp_filter();
  EXPECT_TRUE(f.error.empty()) << f.error;
  EXPECT_GT(f.program.size(), 50u);
  EXPECT_LE(f.program.size(), static_cast<size_t>(BPF_MAXINSNS));
}

}  // namespace
}  // namespace upg
