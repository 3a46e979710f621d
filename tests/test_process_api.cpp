// asyncio.subprocess's API: create_subprocess_exec / _shell, Process streams, communicate with
// megabytes on stdin, stdout and stderr at once, wait, return codes of killed children, and
// broken stdin pipes. Real children (sh, cat, printf, sleep); loop kinds without processes must
// refuse with NotSupportedError.
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "support.hpp"

using namespace eddy;

static Coro<void> refused() {
  try {
    co_await create_subprocess_exec(strings("true"));
    FAIL("create_subprocess_exec without processes");
  } catch (const NotSupportedError& e) {
    CHECK(e.method() == "subprocess_exec");
  }
  try {
    co_await create_subprocess_shell("true");
    FAIL("create_subprocess_shell without processes");
  } catch (const NotSupportedError& e) {
    CHECK(e.method() == "subprocess_shell");
  }
}

LOOP_TEST("create_subprocess_*: NotSupportedError without processes", "[process-api]") {
  if (this->loop->capabilities().supports("subprocess_exec")) SKIP("this loop has processes");
  this->loop->run_until_complete(refused());
}

#ifndef __EMSCRIPTEN__
#include "peer.hpp"

using NativeFixture = LoopFixture<PlatformLoop>;

static Coro<void> big_communicate(std::string input, std::pair<std::string, std::string>* out,
                                  std::optional<int>* rc) {
  ProcessOptions o{
      .stdin_ = subprocess::PIPE, .stdout_ = subprocess::PIPE, .stderr_ = subprocess::PIPE};
  Process p = co_await create_subprocess_shell("cat; head -c 2000000 /dev/zero >&2", o);
  CHECK(p.pid > 0);
  REQUIRE(p.stdin_);
  REQUIRE(p.stdout_);
  REQUIRE(p.stderr_);
  CHECK_FALSE(p.returncode());
  *out = co_await p.communicate(std::move(input));
  *rc = p.returncode();
}

TEST_CASE_METHOD(NativeFixture, "communicate: 1.5 MiB in, 1.5 MiB out and 2 MB on stderr",
                 "[process-api]") {
  const std::string input = peer_pattern(0, 1536 * 1024);
  std::pair<std::string, std::string> out;
  std::optional<int> rc;
  loop->run_until_complete(big_communicate(input, &out, &rc));
  CHECK(out.first.size() == input.size());
  CHECK(out.first == input);
  CHECK(out.second == std::string(2000000, '\0'));
  CHECK(rc == 0);
}

static Coro<void> killed(std::optional<int>* rc, int* waited) {
  Process p = co_await create_subprocess_exec(strings("sleep", "30"));
  CHECK_FALSE(p.stdin_);  // INHERIT by default, as asyncio: no streams
  CHECK_FALSE(p.stdout_);
  CHECK_FALSE(p.stderr_);
  co_await sleep(0.05);
  CHECK_FALSE(p.returncode());
  p.kill();
  *waited = co_await p.wait();
  *rc = p.returncode();
  const int again = co_await p.wait();  // at once now
  CHECK(again == *waited);
  try {
    p.send_signal(SIGTERM);
    FAIL("send_signal after the end");
  } catch (const std::system_error& e) {
    CHECK(e.code() == std::errc::no_such_process);  // ProcessLookupError
  }
}

TEST_CASE_METHOD(NativeFixture, "a killed child: wait() and returncode are -SIGKILL",
                 "[process-api][faults]") {
  std::optional<int> rc;
  int waited = 0;
  loop->run_until_complete(killed(&rc, &waited));
  CHECK(waited == -SIGKILL);
  CHECK(rc == -SIGKILL);
}

static Coro<void> exit_codes(EventLoop& loop) {
  Process p = co_await create_subprocess_shell("sleep 0.1; exit 7");
  // Two waiters; cancelling one does not disturb the other.
  Task<int> first = loop.create_task(p.wait());
  Task<int> second = loop.create_task(p.wait());
  co_await sleep(0);
  first.cancel();
  const int rc = co_await second;
  CHECK(rc == 7);
  CHECK(first.cancelled());
  CHECK(p.returncode() == 7);
  try {
    p.terminate();
    FAIL("terminate after the end");
  } catch (const std::system_error& e) {
    CHECK(e.code() == std::errc::no_such_process);  // ProcessLookupError
  }
}

TEST_CASE_METHOD(NativeFixture, "wait(): the exit status, for several waiters", "[process-api]") {
  loop->run_until_complete(exit_codes(*loop));
}

// A child reaped by someone else (here the kernel, as SIGCHLD is ignored) has lost its status:
// asyncio warns and reports 255, never a success nobody saw. A quick child may be gone even
// before its process is watched (it used to make the spawn fail with ESRCH, one time in 25).
static Coro<void> reaped_elsewhere(std::vector<int>* codes) {
  Process slow = co_await create_subprocess_shell("exit 3");
  codes->push_back(co_await slow.wait());
  for (int i = 0; i < 100; ++i) {
    Process quick = co_await create_subprocess_exec(strings("true"));
    codes->push_back(co_await quick.wait());
  }
}

namespace {
// SIGCHLD ignored for the scope, whatever happens in it.
struct IgnoreSigchld {
  struct sigaction saved = {};
  IgnoreSigchld() {
    struct sigaction ignore = {};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGCHLD, &ignore, &saved);
  }
  ~IgnoreSigchld() { ::sigaction(SIGCHLD, &saved, nullptr); }
};
}  // namespace

TEST_CASE_METHOD(NativeFixture, "a child reaped elsewhere: returncode 255 and a warning",
                 "[process-api]") {
  CapturedLog warnings;
  std::vector<int> codes;
  {
    IgnoreSigchld ignored;
    CHECK_NOTHROW(loop->run_until_complete(reaped_elsewhere(&codes)));
  }
  CHECK(codes == std::vector<int>(101, 255));
  REQUIRE(warnings.messages.size() == 101);
  CHECK(warnings.messages[0].find("exit status already read: will report returncode 255") !=
        std::string::npos);
}

// A child that ended unseen (reaped by the kernel, SIGCHLD being ignored) before the loop heard
// of it: send_signal does nothing, as asyncio's transport ignores ProcessLookupError from
// os.kill; wait() then reports 255, and only then is the process gone for send_signal.
static Coro<void> signalled_after_unseen_end(std::vector<int>* codes) {
  Process p = co_await create_subprocess_exec(strings("true"));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the loop does not run
  CHECK_NOTHROW(p.send_signal(SIGTERM));
  CHECK_NOTHROW(p.terminate());
  codes->push_back(co_await p.wait());
  try {
    p.kill();
    FAIL("kill after the end was reported");
  } catch (const std::system_error& e) {
    CHECK(e.code() == std::errc::no_such_process);  // ProcessLookupError
  }
}

TEST_CASE_METHOD(NativeFixture, "send_signal to a child that ended unseen does nothing",
                 "[process-api]") {
  CapturedLog warnings;
  std::vector<int> codes;
  {
    IgnoreSigchld ignored;
    CHECK_NOTHROW(loop->run_until_complete(signalled_after_unseen_end(&codes)));
  }
  CHECK(codes == std::vector<int>{255});
  CHECK(warnings.messages.size() == 1);
}

static Coro<void> line_by_line(std::vector<std::string>* lines) {
  ProcessOptions o{.stdout_ = subprocess::PIPE};
  Process p = co_await create_subprocess_exec(strings("printf", "a\\nb\\nlast"), o);
  for (;;) {
    std::string line = co_await p.stdout_->readline();
    if (line.empty()) break;
    lines->push_back(line);
  }
  CHECK(p.stdout_->at_eof());
  const int rc = co_await p.wait();
  CHECK(rc == 0);
}

TEST_CASE_METHOD(NativeFixture, "stdout as a StreamReader: readline until EOF", "[process-api]") {
  std::vector<std::string> lines;
  loop->run_until_complete(line_by_line(&lines));
  CHECK(lines == strings("a\n", "b\n", "last"));
}

static Coro<void> by_hand(std::string* out) {
  ProcessOptions o{.stdin_ = subprocess::PIPE, .stdout_ = subprocess::PIPE, .limit = 100};
  Process p = co_await create_subprocess_exec(strings("cat"), o);
  CHECK(p.stdout_->limit() == 100);
  p.stdin_->write("through ");
  p.stdin_->writelines(strings("cat ", "and back"));
  co_await p.stdin_->drain();
  p.stdin_->close();
  co_await p.stdin_->wait_closed();
  *out = co_await p.stdout_->read();
  const int rc = co_await p.wait();
  CHECK(rc == 0);
}

TEST_CASE_METHOD(NativeFixture, "stdin as a StreamWriter: write, drain, close, wait_closed",
                 "[process-api]") {
  std::string out;
  loop->run_until_complete(by_hand(&out));
  CHECK(out == "through cat and back");
}

static Coro<void> stdin_closed_early(std::pair<std::string, std::string>* out, int* rc) {
  // The child never reads its stdin: writing into it breaks the pipe, which communicate ignores.
  ProcessOptions o{.stdin_ = subprocess::PIPE, .stdout_ = subprocess::PIPE};
  Process p = co_await create_subprocess_shell("exec 0<&-; echo done", o);
  *out = co_await p.communicate(std::string(4 << 20, 'x'));
  *rc = *p.returncode();
}

TEST_CASE_METHOD(NativeFixture, "communicate ignores a broken stdin pipe",
                 "[process-api][faults]") {
  std::pair<std::string, std::string> out;
  int rc = -1;
  loop->run_until_complete(stdin_closed_early(&out, &rc));
  CHECK(out.first == "done\n");
  CHECK(out.second.empty());
  CHECK(rc == 0);
}

static Coro<void> merged_and_env(std::pair<std::string, std::string>* out) {
  std::vector<std::string_view> env;  // no braced lists in coroutine bodies (gcc 12)
  env.push_back("EDDY_Y=yes");
  env.push_back("PATH=/usr/bin:/bin");
  ProcessOptions o{.stdout_ = subprocess::PIPE,
                   .stderr_ = subprocess::STDOUT,
                   .cwd = "/tmp",
                   .env = std::span<const std::string_view>(env)};
  Process p = co_await create_subprocess_shell("pwd; echo $EDDY_Y; echo err >&2", o);
  CHECK_FALSE(p.stderr_);  // merged into stdout
  *out = co_await p.communicate();
}

TEST_CASE_METHOD(NativeFixture, "communicate with stderr=STDOUT, cwd and env", "[process-api]") {
  std::pair<std::string, std::string> out;
  loop->run_until_complete(merged_and_env(&out));
  CHECK(out.first == "/tmp\nyes\nerr\n");
  CHECK(out.second.empty());
}

static Coro<void> sorted_lines(std::string* out, int* status) {
  // processes.hpp's example.
  Process p = co_await create_subprocess_shell(
      "sort", {.stdin_ = subprocess::PIPE, .stdout_ = subprocess::PIPE});
  auto [sorted, err] = co_await p.communicate("b\na\n");
  CHECK(err.empty());
  *out = sorted;
  *status = *p.returncode();
}

TEST_CASE_METHOD(NativeFixture, "create_subprocess_shell: sort through communicate",
                 "[process-api]") {
  std::string out;
  int status = -1;
  loop->run_until_complete(sorted_lines(&out, &status));
  CHECK(out == "a\nb\n");
  CHECK(status == 0);
}

static Coro<void> bad_arguments() {
  ProcessOptions zero{.stdout_ = subprocess::PIPE, .limit = 0};
  try {
    co_await create_subprocess_exec(strings("true"), zero);
    FAIL("limit 0");
  } catch (const ValueError& e) {
    CHECK(std::string(e.what()) == "Limit cannot be <= 0");
  }
  try {
    co_await create_subprocess_exec(strings("/nonexistent/program"));
    FAIL("a missing program");
  } catch (const std::system_error& e) {
    CHECK(e.code() == std::errc::no_such_file_or_directory);
  }
}

TEST_CASE_METHOD(NativeFixture, "create_subprocess_*: bad limit, missing program",
                 "[process-api][faults]") {
  loop->run_until_complete(bad_arguments());
}

static Coro<void> dropped_process(EventLoop& loop) {
  // Dropping the Process closes the child's stdin (its writer goes): cat ends on its own.
  ProcessOptions o{.stdin_ = subprocess::PIPE};
  std::shared_ptr<SubprocessStreamProtocol> protocol;
  {
    Process p = co_await create_subprocess_exec(strings("cat"), o);
    protocol = std::dynamic_pointer_cast<SubprocessStreamProtocol>(p.transport()->get_protocol());
  }
  REQUIRE(protocol);
  Future<void> exited = protocol->exit_waiter();
  co_await exited;
  CHECK(protocol->finished());
  (void)loop;
}

TEST_CASE_METHOD(NativeFixture, "a dropped Process closes the child's stdin",
                 "[process-api][lifetime]") {
  loop->run_until_complete(dropped_process(*loop));
}
// Children of this process that are alive (not zombies). By parent and state, not by command
// line: under some kernels (gVisor) a child just spawned still shows its parent's for a moment.
static int live_children() {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    std::getline(stat, line);
    const std::size_t comm_end = line.rfind(')');  // "pid (comm) state ppid ..."
    if (comm_end == std::string::npos || comm_end + 2 > line.size()) continue;
    std::istringstream rest(line.substr(comm_end + 2));
    char state = 0;
    int ppid = 0;
    rest >> state >> ppid;
    if (ppid == ::getpid() && state != 'Z' && state != 'X') ++n;
  }
  return n;
}

struct CancelledStart {
  int running_before = -1, running_after = -1;
  bool cancelled = false;
};

static Coro<void> cancelled_while_starting(EventLoop& loop, CancelledStart* out) {
  ProcessOptions o{.stdout_ = subprocess::PIPE};
  const int baseline = live_children();
  Task<Process> t = loop.create_task(create_subprocess_exec(strings("sleep", "37.25"), o));
  co_await sleep(0);  // spawned; its pipe still connecting
  out->running_before = live_children() - baseline;
  t.cancel();
  try {
    co_await t;
  } catch (const CancelledError&) {
    out->cancelled = true;
  }
  out->running_after = live_children() - baseline;
}

// As asyncio's _make_subprocess_transport: a start that is cancelled kills the child and waits
// for it, rather than leaving it running with nobody to reap or stop it.
TEST_CASE_METHOD(NativeFixture, "create_subprocess_exec cancelled while starting leaves no child",
                 "[process-api][cancel]") {
  CancelledStart r;
  loop->run_until_complete(cancelled_while_starting(*loop, &r));
  CHECK(r.running_before == 1);
  CHECK(r.cancelled);
  CHECK(r.running_after == 0);
}

#endif  // __EMSCRIPTEN__
