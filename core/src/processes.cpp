// asyncio.subprocess (Lib/asyncio/subprocess.py) over EventLoop::subprocess_exec: the
// SubprocessStreamProtocol that turns pipe events into streams, Process (wait, communicate,
// signals) and the create_subprocess_* helpers. Platform-free.
#include "eddy/processes.hpp"

#include <algorithm>

#include "eddy/loop.hpp"

namespace eddy {

// gcc 12: results are named before co_return, and no co_await sits in a catch block.

// ---- SubprocessStreamProtocol -------------------------------------------------------------------

SubprocessStreamProtocol::SubprocessStreamProtocol(long long limit, EventLoop* loop)
    : FlowControlMixin(loop), stdin_closed_(get_loop().create_future<void>()) {
  if (limit <= 0) throw ValueError("Limit cannot be <= 0");
  limit_ = static_cast<std::size_t>(limit);
}

SubprocessStreamProtocol::~SubprocessStreamProtocol() {
  // Awaiting stdin's wait_closed is optional: its error is not reported as never retrieved.
  if (stdin_closed_.done() && !stdin_closed_.cancelled()) (void)stdin_closed_.exception();
}

void SubprocessStreamProtocol::connection_made(Ref<SubprocessTransport> transport) {
  transport_ = transport;
  const long long limit = static_cast<long long>(limit_);
  for (int fd = 1; fd <= 2; ++fd) {
    Ref<BaseTransport> pipe = transport->get_pipe_transport(fd);
    auto* read_pipe = dynamic_cast<ReadTransport*>(pipe.get());
    if (!read_pipe) continue;
    auto reader = std::make_shared<StreamReader>(limit, &get_loop());
    reader->set_transport(Ref<ReadTransport>(read_pipe));
    (fd == 1 ? stdout_ : stderr_) = std::move(reader);
    pipe_fds_.push_back(fd);
  }
  Ref<BaseTransport> pipe = transport->get_pipe_transport(0);
  if (auto* write_pipe = dynamic_cast<WriteTransport*>(pipe.get())) {
    std::shared_ptr<SubprocessStreamProtocol> self = weak_from_this().lock();
    if (!self) throw RuntimeError("SubprocessStreamProtocol must be owned by a shared_ptr");
    stdin_owned_ = std::make_shared<StreamWriter>(Ref<WriteTransport>(write_pipe),
                                                  std::static_pointer_cast<FlowControlMixin>(self),
                                                  nullptr, get_loop());
    stdin_ = stdin_owned_;
  }
}

void SubprocessStreamProtocol::pipe_data_received(int fd, std::string_view data) {
  StreamReader* reader = fd == 1 ? stdout_.get() : fd == 2 ? stderr_.get() : nullptr;
  if (reader) reader->feed_data(data);
}

void SubprocessStreamProtocol::pipe_connection_lost(int fd, std::exception_ptr exc) {
  if (fd == 0) {
    if (std::shared_ptr<StreamWriter> writer = stdin_.lock()) writer->close();
    flow_connection_lost(exc);  // drain on stdin raises from now on
    if (!stdin_closed_.done()) {
      if (exc)
        stdin_closed_.set_exception(exc);
      else
        stdin_closed_.set_result();
    }
    return;
  }
  StreamReader* reader = fd == 1 ? stdout_.get() : fd == 2 ? stderr_.get() : nullptr;
  if (reader) {
    if (exc)
      reader->set_exception(exc);
    else
      reader->feed_eof();
  }
  std::erase(pipe_fds_, fd);
  maybe_close_transport();
}

void SubprocessStreamProtocol::process_exited() {
  process_exited_ = true;
  maybe_close_transport();
}

void SubprocessStreamProtocol::maybe_close_transport() {
  if (!pipe_fds_.empty() || !process_exited_ || !transport_) return;
  Ref<SubprocessTransport> t = std::move(transport_);
  t->close();
}

void SubprocessStreamProtocol::connection_lost(std::exception_ptr exc) {
  flow_connection_lost(exc);
  transport_.reset();
  finished_ = true;
  // Process.wait()'s waiters (asyncio wakes them in the transport's _call_connection_lost).
  std::vector<Future<void>> waiters = std::move(exit_waiters_);
  exit_waiters_.clear();
  for (Future<void>& w : waiters)
    if (!w.done()) w.set_result();
}

Future<void> SubprocessStreamProtocol::close_waiter(const StreamWriter&) {
  return stdin_closed_;
}

std::shared_ptr<StreamWriter> SubprocessStreamProtocol::stdin_stream() const {
  return stdin_.lock();
}

Future<void> SubprocessStreamProtocol::exit_waiter() {
  Future<void> f = get_loop().create_future<void>();
  if (finished_)
    f.set_result();
  else
    exit_waiters_.push_back(f);
  return f;
}

// ---- Process ------------------------------------------------------------------------------------

Process::Process(Ref<SubprocessTransport> transport,
                 std::shared_ptr<SubprocessStreamProtocol> protocol)
    : transport_(std::move(transport)), protocol_(std::move(protocol)) {
  stdin_ = std::move(protocol_->stdin_owned_);
  if (!stdin_) stdin_ = protocol_->stdin_.lock();
  stdout_ = protocol_->stdout_;
  stderr_ = protocol_->stderr_;
  pid = transport_->get_pid();
}

namespace {

Coro<int> wait_for_exit(Ref<SubprocessTransport> transport,
                        std::shared_ptr<SubprocessStreamProtocol> protocol) {
  if (std::optional<int> rc = transport->get_returncode()) co_return *rc;
  Future<void> exited = protocol->exit_waiter();
  co_await detail::awaiting_as("eddy::Process::wait", exited);
  const int rc = transport->get_returncode().value_or(-1);
  co_return rc;
}

bool ignored_stdin_error(const std::system_error& e) {
  return e.code() == std::errc::broken_pipe || e.code() == std::errc::connection_reset;
}

Coro<void> feed_stdin(std::shared_ptr<StreamWriter> writer, std::string input) {
  std::exception_ptr error;
  try {
    if (!input.empty()) writer->write(input);
    co_await writer->drain();
  } catch (const std::system_error& e) {
    // The child may exit without reading its input: asyncio ignores that.
    if (!ignored_stdin_error(e)) error = std::current_exception();
  }
  writer->close();
  if (error) std::rethrow_exception(error);
}

Coro<std::string> read_stream(std::shared_ptr<StreamReader> reader,
                              Ref<SubprocessTransport> transport, int fd) {
  std::string output = co_await reader->read();
  if (Ref<BaseTransport> pipe = transport->get_pipe_transport(fd)) pipe->close();
  co_return output;
}

template <class T>
void settle(Task<T>& task) {
  if (!task) return;
  if (!task.done())
    task.cancel();
  else if (!task.cancelled())
    (void)task.exception();  // seen: only the first error is raised
}

Coro<std::pair<std::string, std::string>> communicate_impl(
    Ref<SubprocessTransport> transport, std::shared_ptr<SubprocessStreamProtocol> protocol,
    std::shared_ptr<StreamWriter> in, std::shared_ptr<StreamReader> out,
    std::shared_ptr<StreamReader> err, std::string input) {
  EventLoop& loop = get_running_loop();
  Task<void> in_task;
  Task<std::string> out_task, err_task;
  if (in) in_task = loop.create_task(feed_stdin(in, std::move(input)));
  if (out) out_task = loop.create_task(read_stream(out, transport, 1));
  if (err) err_task = loop.create_task(read_stream(err, transport, 2));
  std::pair<std::string, std::string> result;
  std::exception_ptr error;
  try {
    if (in_task) co_await detail::awaiting_as("eddy::Process::communicate", in_task);
    if (out_task)
      result.first = co_await detail::awaiting_as("eddy::Process::communicate", out_task);
    if (err_task)
      result.second = co_await detail::awaiting_as("eddy::Process::communicate", err_task);
  } catch (...) {
    error = std::current_exception();
  }
  if (error) {
    // asyncio's gather would leave the other parts running; they are cancelled here instead.
    settle(in_task);
    settle(out_task);
    settle(err_task);
    std::rethrow_exception(error);
  }
  const int rc = co_await detail::awaiting_as("eddy::Process::communicate",
                                              wait_for_exit(transport, protocol));
  (void)rc;
  co_return result;
}

}  // namespace

Coro<int> Process::wait() {
  return wait_for_exit(transport_, protocol_);
}

Coro<std::pair<std::string, std::string>> Process::communicate(std::string input) {
  return communicate_impl(transport_, protocol_, stdin_, stdout_, stderr_, std::move(input));
}

// ---- create_subprocess_* ------------------------------------------------------------------------

namespace {

SubprocessOptions to_subprocess_options(const ProcessOptions& options) {
  SubprocessOptions o;
  o.stdin_ = options.stdin_;
  o.stdout_ = options.stdout_;
  o.stderr_ = options.stderr_;
  o.cwd = options.cwd;
  o.env = options.env;
  o.start_new_session = options.start_new_session;
  o.process_group = options.process_group;
  return o;
}

}  // namespace

Coro<Process> create_subprocess_exec(std::vector<std::string> args, ProcessOptions options) {
  EventLoop& loop = get_running_loop();
  auto protocol = std::make_shared<SubprocessStreamProtocol>(options.limit, &loop);
  SubprocessProtocolFactory factory = [protocol]() -> std::shared_ptr<SubprocessProtocol> {
    return protocol;
  };
  SubprocessConnection c =
      co_await loop.subprocess_exec(factory, std::move(args), to_subprocess_options(options));
  Process process(c.first, protocol);
  co_return process;
}

Coro<Process> create_subprocess_shell(std::string command, ProcessOptions options) {
  EventLoop& loop = get_running_loop();
  auto protocol = std::make_shared<SubprocessStreamProtocol>(options.limit, &loop);
  SubprocessProtocolFactory factory = [protocol]() -> std::shared_ptr<SubprocessProtocol> {
    return protocol;
  };
  SubprocessConnection c =
      co_await loop.subprocess_shell(factory, std::move(command), to_subprocess_options(options));
  Process process(c.first, protocol);
  co_return process;
}

}  // namespace eddy
