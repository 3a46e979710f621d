// Child processes (real /bin/sh, cat, sleep) and pipes: asyncio's SubprocessProtocol order,
// return codes (negative for a signal), stdio redirection, cwd and env; connect_read_pipe and
// connect_write_pipe over an OS pipe. Loop kinds without processes say NotSupportedError.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>

#include <algorithm>
#include <thread>

#include "support.hpp"

using namespace eddy;

struct ProcessRecorder : SubprocessProtocol {
  explicit ProcessRecorder(EventLoop& loop) : lost(loop.create_future<void>()) {}
  Ref<SubprocessTransport> transport;
  std::string out[3];
  std::vector<std::string> events;
  Future<void> lost;
  void connection_made(Ref<SubprocessTransport> t) override {
    transport = t;
    events.push_back("made");
  }
  void pipe_data_received(int fd, std::string_view data) override { out[fd] += data; }
  void pipe_connection_lost(int fd, std::exception_ptr) override { events.push_back("pipe" + std::to_string(fd)); }
  void process_exited() override { events.push_back("exited"); }
  void connection_lost(std::exception_ptr) override {
    events.push_back("lost");
    transport.reset();
    lost.set_result();
  }
};

static SubprocessProtocolFactory give(std::shared_ptr<ProcessRecorder> r) {
  return [r] { return std::static_pointer_cast<SubprocessProtocol>(r); };
}

LOOP_TEST("subprocess and pipe methods: NotSupportedError where there are no processes", "[subprocess]") {
  auto& loop = *this->loop;
  if (loop.capabilities().supports("subprocess_exec")) return;
  auto attempt = [](EventLoop& l) -> Coro<void> {
    co_await l.subprocess_shell([] { return std::shared_ptr<SubprocessProtocol>(); }, "true");
  };
  CHECK_THROWS_AS(loop.run_until_complete(attempt(loop)), NotSupportedError);
}

#ifndef __EMSCRIPTEN__
#include "peer.hpp"

using NativeFixture = LoopFixture<PlatformLoop>;

static Coro<void> cat_roundtrip(EventLoop& loop, std::shared_ptr<ProcessRecorder> r) {
  SubprocessConnection c = co_await loop.subprocess_exec(give(r), strings("cat"));
  CHECK(c.first->get_pid() > 0);
  CHECK_FALSE(c.first->get_returncode());
  auto in = c.first->get_pipe_transport(0);
  REQUIRE(in);
  auto* stdin_pipe = dynamic_cast<WriteTransport*>(in.get());
  REQUIRE(stdin_pipe);
  stdin_pipe->write("hello, ");
  stdin_pipe->write("cat");
  stdin_pipe->write_eof();  // closes cat's stdin: it exits after echoing
  co_await r->lost;
  CHECK(c.first->get_returncode() == 0);
  // As asyncio, the pipe transports outlive the process: closed, but still there to ask.
  for (int fd = 0; fd < 3; ++fd) {
    Ref<BaseTransport> pipe = c.first->get_pipe_transport(fd);
    REQUIRE(pipe);
    CHECK(pipe->is_closing());
    pipe->close();  // a no-op, as on any closed transport
  }
}

TEST_CASE_METHOD(NativeFixture, "subprocess_exec: cat echoes stdin; asyncio's callback order", "[subprocess]") {
  auto r = std::make_shared<ProcessRecorder>(*loop);
  loop->run_until_complete(cat_roundtrip(*loop, r));
  CHECK(r->out[1] == "hello, cat");
  CHECK(r->out[2].empty());
  REQUIRE(r->events.size() == 6);
  CHECK(r->events.front() == "made");
  CHECK(r->events.back() == "lost");
  for (const char* e : {"pipe0", "pipe1", "pipe2", "exited"})
    CHECK(std::count(r->events.begin(), r->events.end(), e) == 1);
}

static Coro<void> shell(EventLoop& loop, std::shared_ptr<ProcessRecorder> r, std::string cmd, SubprocessOptions o,
                        std::optional<int>* rc) {
  SubprocessConnection c = co_await loop.subprocess_shell(give(r), cmd, o);
  co_await r->lost;
  *rc = c.first->get_returncode();
}

TEST_CASE_METHOD(NativeFixture, "subprocess_shell: stderr=STDOUT, exit status, cwd, env, DEVNULL", "[subprocess]") {
  std::optional<int> rc;
  SECTION("stderr merged into stdout, exit status 3") {
    auto r = std::make_shared<ProcessRecorder>(*loop);
    loop->run_until_complete(
        shell(*loop, r, "echo out; echo err 1>&2; exit 3", {.stdin_ = subprocess::DEVNULL, .stderr_ = subprocess::STDOUT}, &rc));
    CHECK(r->out[1] == "out\nerr\n");
    CHECK(rc == 3);
  }
  SECTION("cwd and a replaced environment") {
    auto r = std::make_shared<ProcessRecorder>(*loop);
    const std::vector<std::string_view> env{"EDDY_X=42", "PATH=/usr/bin:/bin"};
    loop->run_until_complete(shell(*loop, r, "pwd; echo $EDDY_X; echo ${HOME:-unset}",
                                   {.cwd = "/tmp", .env = std::span<const std::string_view>(env)}, &rc));
    CHECK(r->out[1] == "/tmp\n42\nunset\n");
    CHECK(rc == 0);
  }
  SECTION("DEVNULL has no pipe transport") {
    auto r = std::make_shared<ProcessRecorder>(*loop);
    loop->run_until_complete(shell(*loop, r, "echo hidden", {.stdout_ = subprocess::DEVNULL}, &rc));
    CHECK(r->out[1].empty());
    CHECK(std::count(r->events.begin(), r->events.end(), "pipe1") == 0);
    CHECK(rc == 0);
  }
}

// Python's subprocess defaults: close_fds=True (a descriptor we opened without O_CLOEXEC stays
// ours) and restore_signals=True (SIGPIPE, which the loop ignores, is default again in the child;
// a signal the program ignores on purpose, SIGHUP under nohup, stays ignored). A cwd that is no
// directory is an error naming it.
TEST_CASE_METHOD(NativeFixture,
                 "subprocess: descriptors closed, ignored signals kept, SIGPIPE restored",
                 "[subprocess]") {
  const int leaky = ::open("/dev/null", O_RDONLY);  // no O_CLOEXEC
  REQUIRE(leaky > 2);
  struct sigaction ignore {
  }, saved_hup{};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGHUP, &ignore, &saved_hup);
  auto r = std::make_shared<ProcessRecorder>(*loop);
  std::optional<int> rc;
  const std::string fd = std::to_string(leaky);
  loop->run_until_complete(shell(*loop, r,
                                 "grep SigIgn /proc/self/status; [ -e /proc/self/fd/" + fd +
                                     " ] && echo fd open || echo fd closed",
                                 {}, &rc));
  ::sigaction(SIGHUP, &saved_hup, nullptr);
  ::close(leaky);
  CHECK(rc == 0);
  const std::string& out = r->out[1];
  REQUIRE(out.rfind("SigIgn:", 0) == 0);
  const unsigned long long ignored = std::stoull(out.substr(7, out.find('\n') - 7), nullptr, 16);
  CHECK((ignored & (1ull << (SIGHUP - 1))) != 0);
  CHECK((ignored & (1ull << (SIGPIPE - 1))) == 0);
  CHECK(out.find("fd closed") != std::string::npos);

  auto nowhere = std::make_shared<ProcessRecorder>(*loop);
  try {
    loop->run_until_complete(shell(*loop, nowhere, "pwd", {.cwd = "/nonexistent-eddy-dir"}, &rc));
    FAIL("a missing cwd did not throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == std::errc::no_such_file_or_directory);
    CHECK(std::string(e.what()).find("/nonexistent-eddy-dir") != std::string::npos);
  }
}

// A program whose stdin is closed (a daemon) can still run a loop and start a child that inherits
// stdin: libuv would take descriptor 0 for itself and abort when closing it, so the loop puts
// /dev/null there first, as Node does. Proved in a forked child, whose descriptor 0 may be closed
// without disturbing the tests.
TEST_CASE("subprocess: a closed stdin does not break the loop or the child", "[subprocess]") {
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(0);
    int code = 1;
    try {
      code = eddy::run([]() -> Coro<int> {
        Process p = co_await create_subprocess_shell("read line; [ -z \"$line\" ] && exit 3");
        int rc = co_await p.wait();
        co_return rc;
      }());
    } catch (...) {
      code = 2;
    }
    ::_exit(code);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 3);  // its stdin: /dev/null, read at once as end of file
}

static Coro<void> kill_child(EventLoop& loop, std::shared_ptr<ProcessRecorder> r, std::optional<int>* rc) {
  SubprocessConnection c = co_await loop.subprocess_exec(give(r), strings("sleep", "30"));
  co_await sleep(0.05);
  c.first->kill();
  co_await r->lost;
  *rc = c.first->get_returncode();
  try {
    c.first->send_signal(SIGTERM);  // after connection_lost: ProcessLookupError, as asyncio
    FAIL("send_signal after the end");
  } catch (const std::system_error& e) {
    CHECK(e.code() == std::errc::no_such_process);
  }
}

TEST_CASE_METHOD(NativeFixture, "a child killed by a signal reports a negative return code", "[subprocess][faults]") {
  auto r = std::make_shared<ProcessRecorder>(*loop);
  std::optional<int> rc;
  loop->run_until_complete(kill_child(*loop, r, &rc));
  CHECK(rc == -SIGKILL);
}

struct RaisingRecorder : ProcessRecorder {
  using ProcessRecorder::ProcessRecorder;
  void connection_made(Ref<SubprocessTransport> t) override {
    ProcessRecorder::connection_made(t);
    throw ValueError("boom in connection_made");
  }
};

static Coro<void> raising_child(EventLoop& loop, std::shared_ptr<RaisingRecorder> r) {
  SubprocessConnection c = co_await wait_for(loop.subprocess_shell(give(r), "echo out", {}), 5.0);
  co_await wait_for(r->lost, 5.0);
  CHECK(c.first->get_returncode() == 0);
}

// As asyncio (connection_made runs in a callback of its own): reported, and the child's pipes
// and exit are still delivered.
TEST_CASE_METHOD(NativeFixture,
                 "subprocess: connection_made raising is reported; the child still runs",
                 "[subprocess][faults]") {
  auto r = std::make_shared<RaisingRecorder>(*loop);
  loop->run_until_complete(raising_child(*loop, r));
  CHECK(r->out[1] == "out\n");
  REQUIRE(reported.size() == 1);
  CHECK(reported[0].message == "Exception in callback protocol.connection_made()");
  reported.clear();
}

// Raises from the one protocol method it is told to, after recording the call.
struct ThrowingRecorder : ProcessRecorder {
  ThrowingRecorder(EventLoop& loop, std::string method)
      : ProcessRecorder(loop), method(std::move(method)) {}
  std::string method;
  int data_calls = 0;
  void raise_in(const char* name) {
    if (method == name) throw ValueError(std::string("boom in ") + name);
  }
  void pipe_data_received(int fd, std::string_view data) override {
    ProcessRecorder::pipe_data_received(fd, data);
    ++data_calls;
    raise_in("pipe_data_received");
  }
  void pipe_connection_lost(int fd, std::exception_ptr exc) override {
    ProcessRecorder::pipe_connection_lost(fd, exc);
    raise_in("pipe_connection_lost");
  }
  void process_exited() override {
    ProcessRecorder::process_exited();
    raise_in("process_exited");
  }
};

static Coro<void> run_to_the_end(EventLoop& loop, std::shared_ptr<ThrowingRecorder> r,
                                 std::optional<int>* rc) {
  SubprocessProtocolFactory factory = [r] {
    return std::static_pointer_cast<SubprocessProtocol>(r);
  };
  SubprocessConnection c =
      co_await loop.subprocess_shell(factory, "echo one; sleep 0.1; echo two", {});
  co_await wait_for(r->lost, 5.0);
  *rc = c.first->get_returncode();
}

// asyncio calls each SubprocessProtocol method in a callback of its own: one that raises is
// reported as that callback's exception, and the rest still comes. The pipe whose
// pipe_data_received raised goes on reading (the child is not killed by SIGPIPE), and
// connection_lost(null) still ends it all.
TEST_CASE_METHOD(NativeFixture,
                 "subprocess: a protocol method that raises is reported; the rest still follows",
                 "[subprocess][faults]") {
  const std::string method =
      GENERATE(as<std::string>(), "pipe_data_received", "pipe_connection_lost", "process_exited");
  CAPTURE(method);
  auto r = std::make_shared<ThrowingRecorder>(*loop, method);
  std::optional<int> rc;
  loop->run_until_complete(run_to_the_end(*loop, r, &rc));
  CHECK(rc == 0);
  CHECK(r->out[1] == "one\ntwo\n");
  CHECK(r->events.back() == "lost");
  for (const char* e : {"pipe0", "pipe1", "pipe2", "exited"})
    CHECK(std::count(r->events.begin(), r->events.end(), e) == 1);
  const std::size_t expected = method == "pipe_data_received"     ? std::size_t(r->data_calls)
                               : method == "pipe_connection_lost" ? 3
                                                                  : 1;
  CHECK(reported.size() == expected);
  for (const ExceptionContext& c : reported) {
    CHECK(c.message == "Exception in callback protocol." + method + "()");
    CHECK_THROWS_AS(std::rethrow_exception(c.exception), ValueError);
  }
  reported.clear();
}

static Coro<void> leave_children(EventLoop& loop, std::shared_ptr<ProcessRecorder> exited,
                                 std::shared_ptr<ProcessRecorder> running, int* running_pid) {
  // The shell exits at once, but the backgrounded sleep (its pid printed) keeps stdout open.
  SubprocessConnection a = co_await loop.subprocess_shell(give(exited), "sleep 30 & echo $!", {});
  SubprocessConnection b = co_await loop.subprocess_exec(give(running), strings("sleep", "30"));
  *running_pid = b.first->get_pid();
  for (int i = 0;
       i < 500 && (exited->events.size() < 3 || exited->out[1].find('\n') == std::string::npos);
       ++i)
    co_await sleep(0.01);
}

// asyncio's transport, when collected, closes the pipes and kills a child still running; Eddy
// does that in loop.close(), which must not wait for a pipe a grandchild still holds (it used to
// wait until the grandchild exited).
TEST_CASE_METHOD(NativeFixture, "closing the loop releases children and pipes still open",
                 "[subprocess][lifecycle]") {
  auto exited = std::make_shared<ProcessRecorder>(*loop);
  auto running = std::make_shared<ProcessRecorder>(*loop);
  int pid = -1;
  loop->run_until_complete(leave_children(*loop, exited, running, &pid));
  // stdin closes with the child (the shell gives its background job /dev/null instead); stdout
  // and stderr stay with the grandchild.
  std::vector<std::string> events = exited->events;
  std::sort(events.begin() + 1, events.end());
  CHECK(events == strings("made", "exited", "pipe0"));
  CHECK(running->events == strings("made"));
  const int grandchild = std::atoi(exited->out[1].c_str());
  REQUIRE(grandchild > 0);
  loop->close();
  CHECK(::kill(grandchild, 0) == 0);  // close() returned while the grandchild still held the pipe
  ::kill(grandchild, SIGKILL);
  CHECK(exited->events.size() == 3);  // no connection_lost
  CHECK(running->transport->is_closing());
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
  exited->transport.reset();
  running->transport.reset();
}

static Coro<void> feed_grandchild(EventLoop& loop, std::shared_ptr<ProcessRecorder> r,
                                  bool* open_after_exit) {
  // The shell hands its stdin to a background job (which would get /dev/null otherwise) and exits.
  SubprocessConnection c =
      co_await loop.subprocess_shell(give(r), "exec 3<&0; head -c 5 <&3 & exit 0", {});
  for (int i = 0; i < 500 && std::count(r->events.begin(), r->events.end(), "exited") == 0; ++i)
    co_await sleep(0.01);
  Ref<BaseTransport> in = c.first->get_pipe_transport(0);
  *open_after_exit =
      !in->is_closing() && std::count(r->events.begin(), r->events.end(), "pipe0") == 0;
  auto* stdin_pipe = dynamic_cast<WriteTransport*>(in.get());
  REQUIRE(stdin_pipe);
  stdin_pipe->write("hello");
  co_await wait_for(r->lost, 5.0);
}

// As asyncio, the child's stdin pipe is not closed when the child exits: a grandchild still
// reading it gets what is written after, and pipe_connection_lost(0) comes once the last reader
// has gone.
TEST_CASE_METHOD(NativeFixture,
                 "subprocess: stdin stays open for a grandchild after the child exits",
                 "[subprocess]") {
  auto r = std::make_shared<ProcessRecorder>(*loop);
  bool open_after_exit = false;
  loop->run_until_complete(feed_grandchild(*loop, r, &open_after_exit));
  CHECK(open_after_exit);
  CHECK(r->out[1] == "hello");
  REQUIRE(r->events.size() == 6);
  CHECK(r->events[1] == "exited");
  CHECK(r->events.back() == "lost");
  for (const char* e : {"pipe0", "pipe1", "pipe2"})
    CHECK(std::count(r->events.begin(), r->events.end(), e) == 1);
}

static Coro<void> missing_program(EventLoop& loop, std::error_code* got) {
  try {
    co_await loop.subprocess_exec([] { return std::make_shared<SubprocessProtocol>(); },
                                  strings("/nonexistent/program"));
  } catch (const std::system_error& e) {
    *got = e.code();
  }
}

TEST_CASE_METHOD(NativeFixture, "subprocess_exec of a missing program raises ENOENT", "[subprocess][faults]") {
  std::error_code got;
  loop->run_until_complete(missing_program(*loop, &got));
  CHECK(got == std::errc::no_such_file_or_directory);
}

struct PipeReader : Protocol {
  explicit PipeReader(EventLoop& loop) : lost(loop.create_future<void>()) {}
  std::string data;
  std::vector<std::string> events;
  Future<void> lost;
  void connection_made(Ref<Transport>) override { events.push_back("made"); }
  void data_received(std::string_view d) override { data += d; }
  bool eof_received() override {
    events.push_back("eof");
    return true;  // a read pipe closes anyway
  }
  void connection_lost(std::exception_ptr) override {
    events.push_back("lost");
    lost.set_result();
  }
};

static Coro<void> pipe_pair(EventLoop& loop, int rfd, int wfd, std::shared_ptr<PipeReader> reader) {
  auto writer = std::make_shared<PipeReader>(loop);
  // Factories are named first: gcc 12 destroys a capturing lambda temporary inside a co_await
  // expression twice (ASan caught it here).
  ProtocolFactory reader_factory = [reader] { return reader; };
  ProtocolFactory writer_factory = [writer] { return writer; };
  ReadPipeConnection r = co_await loop.connect_read_pipe(reader_factory, rfd);
  WritePipeConnection w = co_await loop.connect_write_pipe(writer_factory, wfd);
  CHECK(std::any_cast<int>(w.first->get_extra_info("pipe")) == wfd);
  CHECK_FALSE(r.first->get_extra_info("peername").has_value());
  w.first->write("through ");
  w.first->write("a pipe");
  w.first->write_eof();  // closes the write end after flushing
  co_await writer->lost;
  co_await reader->lost;
  CHECK(writer->events == strings("made", "lost"));
}

TEST_CASE_METHOD(NativeFixture, "connect_read_pipe and connect_write_pipe over an OS pipe", "[pipes]") {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  auto reader = std::make_shared<PipeReader>(*loop);
  loop->run_until_complete(pipe_pair(*loop, fds[0], fds[1], reader));
  CHECK(reader->data == "through a pipe");
  CHECK(reader->events == strings("made", "eof", "lost"));
}

// asyncio's write pipe drops what is written once it is closing, even while earlier data is still
// queued: the reader gets exactly what came before close() / write_eof().
static Coro<void> write_after_close(EventLoop& loop, int wfd, bool eof) {
  auto writer = std::make_shared<PipeReader>(loop);
  ProtocolFactory writer_factory = [writer] { return writer; };
  WritePipeConnection w = co_await loop.connect_write_pipe(writer_factory, wfd);
  w.first->write(std::string(300000, 'x'));  // more than the pipe holds: most of it is queued
  CHECK(w.first->get_write_buffer_size() > 0);
  if (eof)
    w.first->write_eof();
  else
    w.first->close();
  w.first->write("TAIL");
  co_await writer->lost;
}

TEST_CASE_METHOD(NativeFixture, "a write pipe drops writes after close or write_eof", "[pipes]") {
  for (bool eof : {false, true}) {
    PipeDrain drain;
    loop->run_until_complete(write_after_close(*loop, drain.write_end(), eof));
    const std::string& got = drain.join();
    CHECK(got.size() == 300000);
    CHECK(got.find("TAIL") == std::string::npos);
  }
}

// Raises from data_received on the first chunk and from eof_received; records every call.
struct RaisingReader : Protocol {
  explicit RaisingReader(EventLoop& loop) : lost(loop.create_future<void>()) {}
  std::vector<std::string> events;
  Future<void> lost;
  void data_received(std::string_view d) override {
    events.push_back("data " + std::string(d));
    if (events.size() == 1) throw ValueError("boom in data_received");
  }
  bool eof_received() override {
    events.push_back("eof");
    throw ValueError("boom in eof_received");
  }
  void connection_lost(std::exception_ptr exc) override {
    events.push_back(exc ? "lost with error" : "lost");
    lost.set_result();
  }
};

static Coro<void> feed_raising_reader(EventLoop& loop, bool over_pipe,
                                      std::shared_ptr<RaisingReader> reader) {
  int fds[2];
  REQUIRE((over_pipe ? ::pipe(fds) : ::socketpair(AF_UNIX, SOCK_STREAM, 0, fds)) == 0);
  ProtocolFactory factory = [reader] { return reader; };
  if (over_pipe)
    co_await loop.connect_read_pipe(factory, fds[0]);
  else
    co_await loop.connect_accepted_socket(factory, fds[0]);
  (void)!::write(fds[1], "one", 3);
  co_await sleep(0.05);
  (void)!::write(fds[1], "two", 3);  // the socket is gone by now: EPIPE, ignored
  co_await sleep(0.05);
  ::close(fds[1]);
  co_await wait_for(reader->lost, 5.0);
}

// asyncio's _UnixReadPipeTransport calls data_received from its reader callback unguarded, and
// eof_received in a callback of its own: what they raise is reported, and the pipe goes on to
// its end. A socket transport treats the same failure as fatal (connection_lost(exc)).
TEST_CASE_METHOD(NativeFixture, "a read pipe whose protocol raises keeps reading; a socket closes",
                 "[pipes][faults]") {
  const bool over_pipe = GENERATE(true, false);
  CAPTURE(over_pipe);
  auto reader = std::make_shared<RaisingReader>(*loop);
  loop->run_until_complete(feed_raising_reader(*loop, over_pipe, reader));
  if (over_pipe) {
    CHECK(joined(reader->events) == "data one;data two;eof;lost;");
    REQUIRE(reported.size() == 2);
    CHECK(reported[0].message == "Exception in callback protocol.data_received()");
    CHECK(reported[1].message == "Exception in callback protocol.eof_received()");
  } else {
    CHECK(joined(reader->events) == "data one;lost with error;");
    REQUIRE(reported.size() == 1);
    CHECK(reported[0].message == "Fatal error: protocol.data_received() call failed.");
  }
  reported.clear();
}

static Coro<void> pipes_on_dev_null(EventLoop& loop, std::shared_ptr<PipeReader> reader,
                                    std::shared_ptr<PipeReader> writer) {
  ProtocolFactory reader_factory = [reader] { return reader; };
  ProtocolFactory writer_factory = [writer] { return writer; };
  ReadPipeConnection r =
      co_await loop.connect_read_pipe(reader_factory, ::open("/dev/null", O_RDONLY));
  WritePipeConnection w =
      co_await loop.connect_write_pipe(writer_factory, ::open("/dev/null", O_WRONLY));
  w.first->write("into nothing");
  co_await sleep(0.05);
  CHECK_FALSE(r.first->is_closing());  // open, but never reading
  CHECK(w.first->get_write_buffer_size() == 0);
  r.first->close();
  w.first->close();
  co_await reader->lost;
  co_await writer->lost;
}

// epoll cannot watch /dev/null (a program's stdin under `prog </dev/null`): Python reports the
// PermissionError of its _add_reader() callback and leaves the read pipe open, idle. libuv would
// abort the process. A write pipe there never needed watching, and writes go through.
TEST_CASE_METHOD(NativeFixture,
                 "pipes on /dev/null: reading is refused and reported; writing works",
                 "[pipes][faults]") {
  auto reader = std::make_shared<PipeReader>(*loop);
  auto writer = std::make_shared<PipeReader>(*loop);
  loop->run_until_complete(pipes_on_dev_null(*loop, reader, writer));
  CHECK(reader->events == strings("made", "lost"));
  CHECK(writer->events == strings("made", "lost"));
  REQUIRE(reported.size() == 1);
  CHECK(reported[0].message == "Exception in callback read_pipe_transport._add_reader()");
  try {
    std::rethrow_exception(reported[0].exception);
  } catch (const std::system_error& e) {
    CHECK(e.code() == std::errc::operation_not_permitted);
  }
  reported.clear();
}

static Coro<void> regular_file(EventLoop& loop, int fd) {
  co_await loop.connect_read_pipe([] { return std::make_shared<Protocol>(); }, fd);
}

TEST_CASE_METHOD(NativeFixture, "pipe transports refuse regular files", "[pipes][faults]") {
  int fd = ::open("/etc/hostname", O_RDONLY);
  REQUIRE(fd >= 0);
  CHECK_THROWS_AS(loop->run_until_complete(regular_file(*loop, fd)), ValueError);
  ::close(fd);
}
#endif  // __EMSCRIPTEN__
