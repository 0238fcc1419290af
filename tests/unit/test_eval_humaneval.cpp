// HumanEval: data loading, the check program, pass@k, and the sandbox against hostile programs
// (each must be contained, reported as failed with a reason, and leave nothing behind).
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "base/error.h"
#include "eval/humaneval.h"
#include "eval/sandbox.h"
#include "test_util.h"

namespace upg {
namespace {

namespace fs = std::filesystem;

bool have_python() { return access("/usr/bin/python3", X_OK) == 0; }

#define NEED_PYTHON() \
  if (!have_python()) GTEST_SKIP() << "/usr/bin/python3 not found"

HumanEvalProblem return1_problem() {
  return {"test/0", "def return1():\n", "    return 1", "def check(candidate):\n    assert candidate() == 1",
          "return1"};
}

// Sandboxes started while one of these is alive put their work directories under a folder of
// their own ($TMPDIR), so that leftover processes of this test can be told from those of tests
// running in parallel: sandbox_processes() counts the processes whose cwd is inside it.
class ScopedSandboxDir {
 public:
  ScopedSandboxDir() {
    const char* old = std::getenv("TMPDIR");
    if (old) old_ = old;
    dir_ = (fs::temp_directory_path() / ("upg_he_test_" + std::to_string(getpid()) + "_" + std::to_string(++count_)))
               .string();
    fs::create_directories(dir_);
    fs::permissions(dir_, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                              fs::perms::others_read | fs::perms::others_exec);
    setenv("TMPDIR", dir_.c_str(), 1);
  }
  ~ScopedSandboxDir() {
    if (old_.empty())
      unsetenv("TMPDIR");
    else
      setenv("TMPDIR", old_.c_str(), 1);
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  // Live processes whose working directory is under this folder.
  int sandbox_processes() const {
    int n = 0;
    for (const auto& e : fs::directory_iterator("/proc")) {
      const std::string name = e.path().filename().string();
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;
      std::error_code ec;
      const std::string cwd = fs::read_symlink(e.path() / "cwd", ec).string();
      n += !ec && cwd.rfind(dir_, 0) == 0;
    }
    return n;
  }

 private:
  std::string dir_, old_;
  static inline int count_ = 0;
};

fs::path temp_file(const std::string& name) { return fs::temp_directory_path() / name; }

void write_file(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary);
  f << text;
}

void write_gz(const fs::path& p, const std::string& text) {
  gzFile f = gzopen(p.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, text.data(), static_cast<unsigned>(text.size())), static_cast<int>(text.size()));
  gzclose(f);
}

TEST(HumanEval, ProgramIsHumanEvalsCheckProgram) {
  EXPECT_EQ(humaneval_program(return1_problem(), "    return 1"),
            "def return1():\n    return 1\ndef check(candidate):\n    assert candidate() == 1\ncheck(return1)");
}

TEST(HumanEval, StopSequencesAndTruncation) {
  const auto& s = humaneval_stop_sequences();
  EXPECT_EQ(s, (std::vector<std::string>{"\nclass", "\ndef", "\n#", "\nif", "\nprint"}));
  EXPECT_EQ(truncate_at_stop("    return 1\n\nif __name__", s), "    return 1\n");
  EXPECT_EQ(truncate_at_stop("    x = 1\n    # fine\n#top\ndef g", s), "    x = 1\n    # fine");
  EXPECT_EQ(truncate_at_stop("    return 2", s), "    return 2");
}

TEST(HumanEval, PassAtK) {
  EXPECT_DOUBLE_EQ(pass_at_k(6, 3, 1), 0.5);  // human-eval's example: 3 of 6 samples pass
  EXPECT_DOUBLE_EQ(pass_at_k(1, 1, 1), 1.0);
  EXPECT_DOUBLE_EQ(pass_at_k(1, 0, 1), 0.0);
  EXPECT_NEAR(pass_at_k(10, 2, 5), 1.0 - (8.0 * 7 * 6 * 5 * 4) / (10.0 * 9 * 8 * 7 * 6), 1e-12);
  EXPECT_DOUBLE_EQ(pass_at_k(5, 3, 3), 1.0);  // fewer failures than k: always a pass among k
  EXPECT_THROW(pass_at_k(3, 4, 1), Error);
}

TEST(HumanEval, LoadsTheSharedProblems) {
  UPG_NEED_SHARED_DATA(data);
  auto all = load_humaneval(data + "/eval/humaneval/HumanEval.jsonl.gz");
  ASSERT_EQ(all.size(), 164u);
  EXPECT_EQ(all[0].task_id, "HumanEval/0");
  EXPECT_EQ(all[0].entry_point, "has_close_elements");
  EXPECT_EQ(all[163].task_id, "HumanEval/163");
  EXPECT_NE(all[0].test.find("def check(candidate):"), std::string::npos);
  EXPECT_EQ(load_humaneval(data + "/eval/humaneval/HumanEval.jsonl.gz", 3).size(), 3u);
}

TEST(HumanEval, BadInputGivesClearErrors) {
  auto expect_error = [](const fs::path& p, const std::string& part) {
    try {
      load_humaneval(p.string());
      ADD_FAILURE() << "no error for " << p;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(p.filename().string()), std::string::npos) << e.what();
    }
  };
  expect_error(temp_file("upg_he_missing.jsonl"), "does not exist");
  const fs::path bad = temp_file("upg_he_bad.jsonl");
  write_file(bad, "{\"task_id\": \"a\", \"prompt\": \"x\", \"test\": \"y\", \"entry_point\": \"f\"}\n{not json\n");
  expect_error(bad, ":2: not a JSON object");
  write_file(bad, "{\"task_id\": \"a\", \"prompt\": \"x\", \"test\": \"y\"}\n");
  expect_error(bad, "\"entry_point\"");
  write_file(bad, "\n\n");
  expect_error(bad, "no JSON lines");
  const fs::path gz = temp_file("upg_he_bad.jsonl.gz");
  write_file(gz, "this is not gzip data at all, but long enough to be read");
  expect_error(gz, "gzip");
  // A valid gzip file cut in half.
  std::string line = "{\"task_id\": \"a\", \"prompt\": \"x\", \"test\": \"y\", \"entry_point\": \"f\"}\n";
  std::string many;
  for (int i = 0; i < 200; ++i) many += line;
  write_gz(gz, many);
  EXPECT_EQ(load_humaneval(gz.string()).size(), 200u);
  auto size = fs::file_size(gz);
  fs::resize_file(gz, size / 2);
  expect_error(gz, "gzip");
  fs::remove(bad);
  fs::remove(gz);
}

// The example of github.com/openai/human-eval (data/example_problem.jsonl, example_samples.jsonl):
// its README gives pass@1 = 0.5 (three of the six samples pass). Expected per sample: the
// subprocess call fails, sleep(10) times out, input() fails (stdin is /dev/null: EOFError), and
// the three `return 1` with different indentation pass.
TEST(HumanEval, ExampleSamplesGiveTheKnownResults) {
  NEED_PYTHON();
  UPG_NEED_SHARED_DATA(data);
  auto problems = load_humaneval(data + "/eval/humaneval/example_problem.jsonl");
  auto samples = load_humaneval_samples(data + "/eval/humaneval/example_samples.jsonl");
  ASSERT_EQ(problems.size(), 1u);
  ASSERT_EQ(samples.size(), 6u);
  const std::vector<bool> expected = {false, false, false, true, true, true};
  int passed = 0;
  for (size_t i = 0; i < samples.size(); ++i) {
    ASSERT_EQ(samples[i].task_id, problems[0].task_id);
    HumanEvalCheck c = check_completion(problems[0], samples[i].completion, humaneval_limits(3.0));
    EXPECT_EQ(c.passed, expected[i]) << "sample " << i << ": " << c.result;
    passed += c.passed;
    if (i == 1) {
      EXPECT_EQ(c.result.rfind("timed out", 0), 0u) << c.result;
    }
    if (i == 2) {
      EXPECT_NE(c.result.find("EOFError"), std::string::npos) << c.result;
    }
  }
  EXPECT_DOUBLE_EQ(pass_at_k(6, passed, 1), 0.5);
}

TEST(HumanEval, CanonicalSolutionsOfTheFirstProblemsPass) {
  NEED_PYTHON();
  UPG_NEED_SHARED_DATA(data);
  auto problems = load_humaneval(data + "/eval/humaneval/HumanEval.jsonl.gz", 5);
  for (const auto& p : problems) {
    HumanEvalCheck c = check_completion(p, p.canonical_solution, humaneval_limits(10.0));
    EXPECT_TRUE(c.passed) << p.task_id << ": " << c.result;
    // A wrong solution fails.
    HumanEvalCheck w = check_completion(p, "    return None\n", humaneval_limits(10.0));
    EXPECT_FALSE(w.passed) << p.task_id;
  }
}

// ---- The sandbox against hostile programs ----

SandboxLimits quick_limits(double wall = 5) {
  SandboxLimits l = humaneval_limits(wall);
  return l;
}

TEST(Sandbox, CorrectProgramPassesAndIsolationIsReported) {
  NEED_PYTHON();
  SandboxResult r = run_python_sandboxed("import os, sys\nprint('cwd', os.getcwd())\nprint('uid', os.getuid())\n",
                                         quick_limits());
  EXPECT_TRUE(r.passed()) << r.describe() << "\n" << r.output;
  EXPECT_NE(r.output.find("cwd /"), std::string::npos) << r.output;
  for (const auto& n : r.isolation.notes) std::printf("isolation note: %s\n", n.c_str());
  // As root and, through a user namespace, as any other user: everything must take effect.
  EXPECT_TRUE(r.isolation.complete());
  EXPECT_NE(r.output.find("uid 65534"), std::string::npos) << r.output;
}

// ---- Refusing to run in an incomplete sandbox ----

TEST(HumanEval, CompleteSandboxIsAccepted) {
  const SandboxIsolation iso = require_humaneval_sandbox(humaneval_limits(3.0), false);
  EXPECT_TRUE(iso.complete());
  const nlohmann::json j = to_json(iso);
  EXPECT_TRUE(j["complete"].get<bool>());
  EXPECT_TRUE(j["seccomp"].get<bool>() && j["tmpfs"].get<bool>() && j["capabilities_dropped"].get<bool>());
}

TEST(HumanEval, RefusesAnIncompleteSandboxNamingWhatIsMissing) {
  SandboxLimits l = humaneval_limits(3.0);
  l.skip = kSandboxSkipSeccomp | kSandboxSkipTmpfs;
  try {
    require_humaneval_sandbox(l, false);
    ADD_FAILURE() << "no error for an incomplete sandbox";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("refusing to run model-written programs"), std::string::npos) << m;
    EXPECT_NE(m.find("missing: size-limited tmpfs work directory, seccomp filter"), std::string::npos) << m;
    EXPECT_NE(m.find("--unsafe-no-sandbox"), std::string::npos) << m;
  }
  // And the limits themselves never start a program in it (require_complete).
  const HumanEvalCheck c = check_completion(return1_problem(), "    return 1", l);
  EXPECT_FALSE(c.passed);
  EXPECT_NE(c.result.find("the sandbox is incomplete (missing: "), std::string::npos) << c.result;
  EXPECT_NE(c.result.find("the program was not started"), std::string::npos) << c.result;
}

TEST(HumanEval, UnsafeNoSandboxRunsInWhatTookEffect) {
  NEED_PYTHON();
  SandboxLimits l = humaneval_limits(3.0, /*require_complete_sandbox=*/false);
  l.skip = kSandboxSkipSeccomp;
  const SandboxIsolation iso = require_humaneval_sandbox(l, /*unsafe_no_sandbox=*/true);
  EXPECT_FALSE(iso.complete());
  EXPECT_FALSE(iso.seccomp);
  EXPECT_TRUE(iso.capabilities_dropped && iso.tmpfs && iso.readonly_root);
  ASSERT_FALSE(iso.notes.empty());
  EXPECT_EQ(iso.notes.back(), "missing: seccomp filter");
  const HumanEvalCheck c = check_completion(return1_problem(), "    return 1", l);
  EXPECT_TRUE(c.passed) << c.result;
  EXPECT_FALSE(c.isolation.seccomp);
}

TEST(Sandbox, InfiniteLoopIsKilledAtTheDeadline) {
  NEED_PYTHON();
  auto t0 = std::chrono::steady_clock::now();
  SandboxResult r = run_python_sandboxed("while True:\n    pass\n", quick_limits(1.0));
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_FALSE(r.passed());
  EXPECT_TRUE(r.timed_out) << r.describe();
  EXPECT_EQ(r.describe().rfind("timed out", 0), 0u);
  EXPECT_LT(s, 3.0);
}

TEST(Sandbox, SleepingChildrenAreKilledToo) {
  NEED_PYTHON();
  ScopedSandboxDir dir;
  // The program exits at once but leaves a detached grandchild sleeping: it must not survive.
  SandboxResult r = run_python_sandboxed(
      "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n    os._exit(0)\nprint('parent done')\n",
      quick_limits());
  EXPECT_TRUE(r.passed()) << r.describe() << r.output;
  EXPECT_EQ(dir.sandbox_processes(), 0);
}

TEST(Sandbox, ForkBombIsContainedFastAndLeavesNothing) {
  NEED_PYTHON();
  ScopedSandboxDir dir;
  auto t0 = std::chrono::steady_clock::now();
  SandboxResult r = run_python_sandboxed("import os\nwhile True:\n    os.fork()\n", quick_limits(5.0));
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_FALSE(r.passed());
  std::printf("fork bomb: %s in %.2f s\n", r.describe().c_str(), s);
  EXPECT_LT(s, 6.0);
  EXPECT_EQ(dir.sandbox_processes(), 0);  // nothing of it may remain
}

TEST(Sandbox, HugeAllocationFails) {
  NEED_PYTHON();
  SandboxResult r = run_python_sandboxed("x = bytearray(100 * 1024**3)\nprint('allocated')\n", quick_limits());
  EXPECT_FALSE(r.passed());
  EXPECT_NE(r.describe().find("MemoryError"), std::string::npos) << r.describe() << "\n" << r.output;
  // Slowly growing memory is stopped as well.
  SandboxResult g = run_python_sandboxed("a = []\nwhile True:\n    a.append(bytearray(10**7))\n", quick_limits());
  EXPECT_FALSE(g.passed());
  EXPECT_NE(g.describe().find("MemoryError"), std::string::npos) << g.describe();
}

TEST(Sandbox, WritingOutsideItsDirectoryFails) {
  NEED_PYTHON();
  const std::string outside = "/tmp/upg_escape_test";
  const std::string repo_file = test::source_dir() + "/upg_escape_test";
  std::error_code ec;
  fs::remove(outside, ec);
  fs::remove(repo_file, ec);
  for (const std::string& target : {outside, repo_file}) {
    SandboxResult r = run_python_sandboxed("open('" + target + "', 'w').write('escaped')\n", quick_limits());
    EXPECT_FALSE(r.passed()) << target;
    EXPECT_TRUE(r.describe().find("Read-only file system") != std::string::npos ||
                r.describe().find("Permission denied") != std::string::npos)
        << r.describe();
    EXPECT_FALSE(fs::exists(target)) << target << " was written by the sandboxed program";
  }
  // Its own directory is writable (and disappears afterwards).
  SandboxResult own = run_python_sandboxed(
      "import os\nopen('scratch.txt', 'w').write('ok')\nprint(os.path.abspath('scratch.txt'))\n", quick_limits());
  EXPECT_TRUE(own.passed()) << own.describe();
  std::string path = own.output.substr(0, own.output.find('\n'));
  EXPECT_FALSE(path.empty());
  EXPECT_FALSE(fs::exists(path)) << path << " left behind";
}

TEST(Sandbox, LargeFileIsStoppedByTheSizeLimit) {
  NEED_PYTHON();
  SandboxLimits l = quick_limits();
  l.file_size_bytes = 1 << 20;
  SandboxResult r = run_python_sandboxed("f = open('big', 'wb')\nfor i in range(100):\n    f.write(b'x' * 65536)\n"
                                         "f.close()\n",
                                         l);
  EXPECT_FALSE(r.passed());
  EXPECT_TRUE(r.signal == SIGXFSZ || r.describe().find("File too large") != std::string::npos) << r.describe();
}

TEST(Sandbox, NoNetwork) {
  NEED_PYTHON();
  SandboxResult c = run_python_sandboxed(
      "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.settimeout(2)\n"
      "s.connect(('1.1.1.1', 53))\ns.send(b'x')\nprint('sent')\n",
      quick_limits());
  EXPECT_FALSE(c.passed()) << c.output;
  EXPECT_NE(c.describe().find("OSError"), std::string::npos) << c.describe();  // Network is unreachable
  SandboxResult t = run_python_sandboxed(
      "import socket\ns = socket.create_connection(('1.1.1.1', 53), timeout=2)\nprint('connected')\n", quick_limits());
  EXPECT_FALSE(t.passed());
  EXPECT_EQ(t.output.find("connected"), std::string::npos);
}

// Binding a port works inside the sandbox's own network namespace, but nothing outside can reach
// it: while the program listens, a connection from here to that port is refused.
TEST(Sandbox, ListeningPortIsInvisibleFromOutside) {
  NEED_PYTHON();
  const int port = 38765;
  auto try_connect = [&](int* err) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    *err = errno;
    close(fd);
    return rc;
  };
  int err = 0;
  if (try_connect(&err) == 0) GTEST_SKIP() << "port " << port << " is in use on this machine";
  SandboxResult r;
  std::thread t([&] {
    r = run_python_sandboxed(
        "import socket, time\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('0.0.0.0', " + std::to_string(port) + "))\ns.listen()\nprint('listening', flush=True)\n"
        "s.settimeout(3)\ntry:\n    s.accept()\n    print('accepted')\nexcept socket.timeout:\n    pass\n",
        quick_limits(6));
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const int rc = try_connect(&err);
  t.join();
  if (!r.isolation.network_namespace) GTEST_SKIP() << "no network namespace on this system";
  EXPECT_NE(r.output.find("listening"), std::string::npos) << r.describe() << r.output;
  EXPECT_EQ(rc, -1) << "connected to the sandbox's port from outside";
  EXPECT_EQ(err, ECONNREFUSED);
  EXPECT_EQ(r.output.find("accepted"), std::string::npos);
}

TEST(Sandbox, CleanEnvironmentAndNoStdin) {
  NEED_PYTHON();
  setenv("UPG_SECRET_FOR_TEST", "leak", 1);
  SandboxResult r = run_python_sandboxed(
      "import os, sys\nassert 'UPG_SECRET_FOR_TEST' not in os.environ, 'env leaked'\n"
      "assert os.environ['HOME'] == os.getcwd(), (os.environ['HOME'], os.getcwd())\n"
      "assert sys.stdin.read() == ''\n",
      quick_limits());
  unsetenv("UPG_SECRET_FOR_TEST");
  EXPECT_TRUE(r.passed()) << r.describe() << "\n" << r.output;
}

TEST(Sandbox, HostileRunsDoNotStopTheEvaluation) {
  NEED_PYTHON();
  ScopedSandboxDir dir;
  // A batch like a real evaluation: the hostile items fail, the good one after them still passes.
  HumanEvalProblem p = return1_problem();
  const std::vector<std::pair<std::string, bool>> completions = {
      {"    while True:\n        pass\n", false},
      {"    import os\n    while True:\n        os.fork()\n", false},
      {"    x = bytearray(100 * 1024**3)\n    return 1\n", false},
      {"    open('/tmp/upg_escape_test', 'w').write('x')\n    return 1\n", false},
      {"    import socket\n    socket.create_connection(('1.1.1.1', 53), timeout=1)\n    return 1\n", false},
      {"    return 1\n", true},
  };
  for (const auto& [c, want] : completions) {
    HumanEvalCheck r = check_completion(p, c, humaneval_limits(2.0));
    EXPECT_EQ(r.passed, want) << c << " -> " << r.result;
    EXPECT_FALSE(r.result.empty());
    if (!want) {
      EXPECT_TRUE(r.result.rfind("failed: ", 0) == 0 || r.result.rfind("timed out", 0) == 0) << r.result;
    }
  }
  EXPECT_FALSE(fs::exists("/tmp/upg_escape_test"));
  EXPECT_EQ(dir.sandbox_processes(), 0);
}

TEST(Sandbox, MissingInterpreterIsASetupFailure) {
  SandboxResult r = run_sandboxed({"/nonexistent/python"}, {}, quick_limits());
  EXPECT_FALSE(r.passed());
  EXPECT_TRUE(r.setup_failed);
  EXPECT_NE(r.describe().find("No such file"), std::string::npos) << r.describe();
  EXPECT_THROW(run_sandboxed({"relative"}, {}, quick_limits()), Error);
  EXPECT_THROW(run_sandboxed({"/usr/bin/true"}, {{"../x", ""}}, quick_limits()), Error);
}

}  // namespace
}  // namespace upg
