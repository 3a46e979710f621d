// asyncio.subprocess: create_subprocess_exec / create_subprocess_shell return a Process whose
// stdin is a StreamWriter and stdout / stderr are StreamReaders (when they are PIPEs), with
// wait(), communicate() (feeds stdin and reads both outputs concurrently, so large outputs cannot
// deadlock) and signals. Built on EventLoop::subprocess_exec and SubprocessProtocol.
//
//   eddy::Process p = co_await eddy::create_subprocess_shell(
//       "sort", {.stdin_ = eddy::subprocess::PIPE, .stdout_ = eddy::subprocess::PIPE});
//   auto [out, err] = co_await p.communicate("b\na\n");   // out == "a\nb\n"
//   int status = *p.returncode();
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "eddy/io_options.hpp"
#include "eddy/protocols.hpp"
#include "eddy/streams.hpp"
#include "eddy/task.hpp"
#include "eddy/transports.hpp"

namespace eddy {

// create_subprocess_exec / create_subprocess_shell keyword arguments. As in asyncio the standard
// streams default to INHERIT (Python's None); PIPE gives the Process a stream for them.
struct ProcessOptions {
  int stdin_ = subprocess::INHERIT;
  int stdout_ = subprocess::INHERIT;
  int stderr_ = subprocess::INHERIT;      // or subprocess::STDOUT
  long long limit = kDefaultStreamLimit;  // of the stdout / stderr readers
  std::optional<std::string_view> cwd;
  std::optional<std::span<const std::string_view>> env;  // "NAME=value" entries; nullopt: ours
  bool start_new_session = false;                        // Popen's: setsid() in the child
  std::optional<int> process_group;  // Popen's (3.11+): setpgid(0, n) in the child; 0: its own
};
static_assert(std::is_trivially_destructible_v<ProcessOptions>);

class Process;

// asyncio's SubprocessStreamProtocol: readers for the child's stdout and stderr, a writer for
// its stdin. Closes the transport once the child exited and both outputs reached EOF; wait()
// returns after its connection_lost. Create it with make_shared.
class SubprocessStreamProtocol : public SubprocessProtocol,
                                 public FlowControlMixin,
                                 public std::enable_shared_from_this<SubprocessStreamProtocol> {
 public:
  // ValueError if limit <= 0.
  explicit SubprocessStreamProtocol(long long limit = kDefaultStreamLimit,
                                    EventLoop* loop = nullptr);
  ~SubprocessStreamProtocol() override;

  void connection_made(Ref<SubprocessTransport> transport) override;
  void pipe_data_received(int fd, std::string_view data) override;
  void pipe_connection_lost(int fd, std::exception_ptr exc) override;
  void process_exited() override;
  void connection_lost(std::exception_ptr exc) override;
  void pause_writing() override { flow_pause_writing(); }
  void resume_writing() override { flow_resume_writing(); }
  Future<void> close_waiter(const StreamWriter& stream) override;

  std::shared_ptr<StreamWriter> stdin_stream() const;
  const std::shared_ptr<StreamReader>& stdout_stream() const noexcept { return stdout_; }
  const std::shared_ptr<StreamReader>& stderr_stream() const noexcept { return stderr_; }
  // True once the transport's connection_lost ran (the child exited, every pipe closed).
  bool finished() const noexcept { return finished_; }
  // A future that resolves at connection_lost (already done if finished()).
  Future<void> exit_waiter();

 private:
  friend class Process;
  void maybe_close_transport();

  std::size_t limit_;
  Ref<SubprocessTransport> transport_;
  std::shared_ptr<StreamReader> stdout_;
  std::shared_ptr<StreamReader> stderr_;
  // Held here until a Process takes it: from then on the Process owns the writer, and dropping
  // it closes the child's stdin.
  std::shared_ptr<StreamWriter> stdin_owned_;
  std::weak_ptr<StreamWriter> stdin_;
  std::vector<int> pipe_fds_;
  std::vector<Future<void>> exit_waiters_;
  Future<void> stdin_closed_;
  bool process_exited_ = false;
  bool finished_ = false;
};

// asyncio.subprocess.Process. A value type: copies share the child and its streams. The member
// coroutines keep what they use alive, so a Process may go away while they run.
class Process {
 public:
  Process() = default;  // empty: only to be assigned to
  Process(Ref<SubprocessTransport> transport, std::shared_ptr<SubprocessStreamProtocol> protocol);

  std::shared_ptr<StreamWriter> stdin_;   // null unless stdin_ was PIPE
  std::shared_ptr<StreamReader> stdout_;  // null unless stdout_ was PIPE
  std::shared_ptr<StreamReader> stderr_;  // null unless stderr_ was PIPE
  int pid = -1;

  // Null while running; negative: killed by that signal.
  std::optional<int> returncode() const { return transport_->get_returncode(); }
  // The return code: at once if the child has exited, else once it has and its pipes are closed.
  // Can deadlock if the child fills a stdout/stderr PIPE nobody reads: use communicate().
  Coro<int> wait();
  // Writes `input` to stdin (if a PIPE) and closes it, reads stdout and stderr to EOF, all
  // concurrently; then waits for the exit. Returns (stdout, stderr) ("" for non-PIPEs).
  // BrokenPipe/ConnectionReset on stdin are ignored, as asyncio does.
  Coro<std::pair<std::string, std::string>> communicate(std::string input = {});
  // ProcessLookupError (std::system_error ESRCH) once the process is gone.
  void send_signal(int sig) { transport_->send_signal(sig); }
  void terminate() { transport_->terminate(); }
  void kill() { transport_->kill(); }
  const Ref<SubprocessTransport>& transport() const noexcept { return transport_; }

 private:
  Ref<SubprocessTransport> transport_;
  std::shared_ptr<SubprocessStreamProtocol> protocol_;
};

// Must run inside a task of the running loop. `args[0]` is the program (searched in PATH).
Coro<Process> create_subprocess_exec(std::vector<std::string> args, ProcessOptions options = {});
// `command` runs under /bin/sh -c.
Coro<Process> create_subprocess_shell(std::string command, ProcessOptions options = {});

}  // namespace eddy
