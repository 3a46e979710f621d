// Pipes (connect_read_pipe, connect_write_pipe) and child processes (subprocess_exec,
// subprocess_shell) with asyncio's base_subprocess semantics: connection_made once the pipes are
// connected; pipe_data_received / pipe_connection_lost per fd; process_exited when the child
// ends; connection_lost(null) once it has exited *and* every pipe is closed. asyncio calls each
// protocol method in a callback of its own, so one that raises is reported and the rest follows.
#include "eddy/errors.hpp"
#include "eddy/loop.hpp"
#include "eddy/task.hpp"
#include "exception_is.hpp"
#include "stream_transport.hpp"

namespace eddy {

// ---- Pipes ----------------------------------------------------------------------------------------

namespace {
// A pipe transport in `mode`, returned once connection_made has run.
Coro<Ref<StreamTransport>> connect_pipe(EventLoop& loop, std::shared_ptr<BaseProtocol> protocol, int fd,
                                        StreamTransport::Mode mode) {
  StreamEndpointPtr endpoint = loop.backend().adopt_pipe(
      fd, mode == StreamTransport::Mode::read_pipe ? "connect_read_pipe" : "connect_write_pipe");
  Future<void> waiter = loop.create_future<void>();
  Ref<StreamTransport> t = StreamTransport::create(loop, std::move(endpoint), std::move(protocol), nullptr, waiter, mode);
  co_await waiter;
  co_return t;
}
}  // namespace

Coro<ReadPipeConnection> EventLoop::connect_read_pipe(ProtocolFactory factory, int fd) {
  capabilities().require("connect_read_pipe");
  std::shared_ptr<BaseProtocol> protocol = factory();
  Ref<StreamTransport> t = co_await connect_pipe(*this, protocol, fd, StreamTransport::Mode::read_pipe);
  ReadPipeConnection result{Ref<ReadTransport>(t.get()), protocol};
  co_return result;
}

Coro<WritePipeConnection> EventLoop::connect_write_pipe(ProtocolFactory factory, int fd) {
  capabilities().require("connect_write_pipe");
  std::shared_ptr<BaseProtocol> protocol = factory();
  Ref<StreamTransport> t = co_await connect_pipe(*this, protocol, fd, StreamTransport::Mode::write_pipe);
  WritePipeConnection result{Ref<WriteTransport>(t.get()), protocol};
  co_return result;
}

// ---- Processes ------------------------------------------------------------------------------------

namespace {

class ProcessTransport;

// Relays one pipe's protocol events to the process transport, tagged with the child's fd.
class PipeRelay final : public Protocol {
 public:
  PipeRelay(ProcessTransport* owner, int fd) : owner_(owner), fd_(fd) {}
  void data_received(std::string_view data) override;
  bool eof_received() override { return false; }
  void connection_lost(std::exception_ptr exc) override;
  void pause_writing() override;
  void resume_writing() override;
  void disown() noexcept { owner_ = nullptr; }

 private:
  ProcessTransport* owner_;
  int fd_;
};

class ProcessTransport final : public SubprocessTransport, public inspect::TransportProbe {
 public:
  ProcessTransport(EventLoop& loop, std::shared_ptr<SubprocessProtocol> protocol)
      : loop_(&loop), protocol_(std::move(protocol)) {
    loop.transport_created(this);
  }
  void describe(inspect::TransportInfo& out, const void*& server) const override {
    server = nullptr;
    out.kind = "subprocess";
    out.peer = "pid " + std::to_string(get_pid());
    out.state = get_returncode() ? "exited " + std::to_string(*get_returncode()) : "running";
  }

  Coro<void> start(SpawnedProcess spawned) {
    Ref<ProcessTransport> keep(this);
    process_ = std::move(spawned.process);
    pid_ = process_->pid();
    self_ = keep;  // until connection_lost
    for (int fd = 0; fd < 3; ++fd) {
      if (!spawned.pipes[fd]) continue;
      relays_[fd] = std::make_shared<PipeRelay>(this, fd);
      Future<void> waiter = loop_->create_future<void>();
      pipes_[fd] = StreamTransport::create(*loop_, std::move(spawned.pipes[fd]), relays_[fd], nullptr, waiter,
                                           fd == 0 ? StreamTransport::Mode::write_pipe
                                                   : StreamTransport::Mode::read_pipe);
      ++open_pipes_;
      co_await waiter;
    }
    connected_ = true;
    call_connection_made(*loop_,
                         [&] { protocol_->connection_made(Ref<SubprocessTransport>(this)); });
    // Events that arrived while connecting are delivered now, in asyncio's order.
    for (auto& f : pending_) f();
    pending_.clear();
  }

  // The start failed or was cancelled, as asyncio's _make_subprocess_transport handles it: the
  // child is killed and its pipes closed; the protocol, never connected, hears nothing. The
  // result is done once the child is reaped.
  Future<void> abandon() {
    abandoned_ = true;
    pending_.clear();
    for (auto& r : relays_)
      if (r) r->disown();
    close();
    exit_waiter_ = loop_->create_future<void>();
    if (returncode_) finish_abandoned();
    return exit_waiter_;
  }

  void process_exited(int returncode) {
    returncode_ = returncode;
    if (abandoned_) {
      finish_abandoned();
      return;
    }
    // The child's stdin pipe stays open, as in asyncio: a grandchild may still read it. It
    // closes when its last reader goes (the pipe transport watches for that) or on close().
    call([this] {
      call_protocol(*loop_, "process_exited()", [this] { protocol_->process_exited(); });
      try_finish();
    });
  }
  void pipe_data(int fd, std::string_view data) {
    if (!connected_) {
      pending_.push_back([this, fd, d = std::string(data)] { deliver_data(fd, d); });
      return;
    }
    deliver_data(fd, data);
  }
  void pipe_lost(int fd, std::exception_ptr exc) {
    --open_pipes_;
    call([this, fd, exc] {
      call_protocol(*loop_, "pipe_connection_lost()",
                    [&] { protocol_->pipe_connection_lost(fd, exc); });
      try_finish();
    });
  }
  void pipe_pause(bool pause) {
    if (pause)
      protocol_->pause_writing();
    else
      protocol_->resume_writing();
  }

  // SubprocessTransport
  int get_pid() const override { return pid_; }
  Ref<BaseTransport> get_pipe_transport(int fd) const override {
    if (fd < 0 || fd > 2 || !pipes_[fd]) return nullptr;
    return Ref<BaseTransport>(pipes_[fd].get());
  }
  std::optional<int> get_returncode() const override { return returncode_; }
  void send_signal(int sig) override {
    if (!process_) throw std::system_error(std::make_error_code(std::errc::no_such_process), "process closed");
    if (returncode_) return;  // already reaped, as Popen.send_signal
    process_->send_signal(sig);
  }
  void terminate() override { send_signal(15); }
  void kill() override { send_signal(9); }

  // BaseTransport
  void close() override {
    if (closed_) return;
    closed_ = true;
    for (auto& p : pipes_)
      if (p) p->close();
    if (process_ && !returncode_) {
      try {
        process_->send_signal(9);  // asyncio kills a child still running at close()
      } catch (const std::system_error&) {
      }
    }
  }
  bool is_closing() const override { return closed_; }
  void loop_closed() noexcept override {
    Ref<ProcessTransport> keep(this);
    if (process_ && !returncode_) {
      try {
        process_->send_signal(9);  // as close() does, and asyncio's transport when collected
      } catch (const std::system_error&) {
      }
    }
    closed_ = finished_ = true;
    pending_.clear();
    for (auto& r : relays_)
      if (r) r->disown();
    let_go();  // the loop releases each pipe transport in turn
  }
  std::any get_extra_info(std::string_view name, std::any default_value) const override {
    if (name == "subprocess") return pid_;
    return default_value;
  }
  void set_protocol(std::shared_ptr<BaseProtocol> protocol) override {
    auto p = std::dynamic_pointer_cast<SubprocessProtocol>(protocol);
    if (!p) throw TypeError("a subprocess transport needs a SubprocessProtocol");
    protocol_ = std::move(p);
  }
  std::shared_ptr<BaseProtocol> get_protocol() const override { return protocol_; }

 private:
  ~ProcessTransport() override {
    for (auto& r : relays_)
      if (r) r->disown();
    loop_->transport_destroyed(this);
  }
  // Drops the child, the protocol (as asyncio) and the self-reference. The pipe transports stay,
  // closed, for get_pipe_transport (asyncio keeps them too); they hold nothing of ours any more.
  void let_go() noexcept {
    process_.reset();
    protocol_.reset();
    self_.reset();
  }
  // asyncio calls each protocol method in a callback of its own: one that raises is reported,
  // and the pipe goes on reading (it is not the pipe's protocol that failed).
  void deliver_data(int fd, std::string_view data) {
    call_protocol(*loop_, "pipe_data_received()", [&] { protocol_->pipe_data_received(fd, data); });
  }
  template <class F>
  void call(F f) {
    if (!connected_) {
      pending_.push_back(std::move(f));
      return;
    }
    f();
  }
  void finish_abandoned() {
    if (exit_waiter_ && !exit_waiter_.done()) exit_waiter_.set_result();
    let_go();
  }
  void try_finish() {
    if (!returncode_ || open_pipes_ > 0 || finished_) return;
    finished_ = true;
    Ref<ProcessTransport> self(this);
    loop_->call_soon([self] {
      struct Release {
        ProcessTransport* t;
        ~Release() { t->let_go(); }
      } release{self.get()};
      self->protocol_->connection_lost(nullptr);
    });
  }

  Ref<EventLoop> loop_;
  std::shared_ptr<SubprocessProtocol> protocol_;
  ProcessEndpointPtr process_;
  Ref<StreamTransport> pipes_[3];
  std::shared_ptr<PipeRelay> relays_[3];
  std::vector<std::function<void()>> pending_;
  Ref<ProcessTransport> self_;
  std::optional<int> returncode_;
  int pid_ = -1;
  int open_pipes_ = 0;
  bool connected_ = false;
  bool closed_ = false;
  bool finished_ = false;
  bool abandoned_ = false;
  Future<void> exit_waiter_;  // abandon()'s
};

void PipeRelay::data_received(std::string_view data) {
  if (owner_) owner_->pipe_data(fd_, data);
}
void PipeRelay::connection_lost(std::exception_ptr exc) {
  if (owner_) owner_->pipe_lost(fd_, exc);
}
void PipeRelay::pause_writing() {
  if (owner_) owner_->pipe_pause(true);
}
void PipeRelay::resume_writing() {
  if (owner_) owner_->pipe_pause(false);
}

}  // namespace

Coro<SubprocessConnection> EventLoop::subprocess_exec(SubprocessProtocolFactory factory, std::vector<std::string> args,
                                                      SubprocessOptions options) {
  capabilities().require("subprocess_exec");
  if (args.empty()) throw ValueError("subprocess_exec needs at least the program");
  // Popen's own check; stdin=STDOUT is, as any other negative number, a bad descriptor (EBADF).
  if (options.stdout_ == subprocess::STDOUT) throw ValueError("STDOUT can only be used for stderr");
  ProcessSpec spec;
  spec.args = std::move(args);
  if (options.cwd) spec.cwd = std::string(*options.cwd);
  if (options.env) spec.env = std::vector<std::string>(options.env->begin(), options.env->end());
  spec.stdio[0] = options.stdin_;
  spec.stdio[1] = options.stdout_;
  spec.stdio[2] = options.stderr_;
  if (options.process_group && *options.process_group < 0)
    throw ValueError("process_group must be a process group id (>= 0)");
  spec.start_new_session = options.start_new_session;
  spec.process_group = options.process_group;
  std::shared_ptr<SubprocessProtocol> protocol = factory();
  Ref<ProcessTransport> transport(new ProcessTransport(*this, protocol));
  ProcessTransport* raw = transport.get();
  // The exit report holds a reference: the transport lives until the child is reaped.
  SpawnedProcess spawned = backend().spawn_process(spec, [keep = transport](int rc) { keep->process_exited(rc); });
  (void)raw;
  std::exception_ptr failure;
  try {
    co_await transport->start(std::move(spawned));
  } catch (...) {
    failure = std::current_exception();
  }
  if (failure) {
    // Cancelled (or failed) while the pipes connected: no child is left running unsupervised.
    // A KeyboardInterrupt leaves at once, as in asyncio.
    if (!detail::exception_is<KeyboardInterrupt>(failure)) {
      Future<void> reaped = transport->abandon();
      co_await reaped;
    }
    std::rethrow_exception(failure);
  }
  SubprocessConnection result{Ref<SubprocessTransport>(transport.get()), protocol};
  co_return result;
}

Coro<SubprocessConnection> EventLoop::subprocess_shell(SubprocessProtocolFactory factory, std::string command,
                                                       SubprocessOptions options) {
  capabilities().require("subprocess_shell");
  std::vector<std::string> args;
  args.emplace_back("/bin/sh");
  args.emplace_back("-c");
  args.push_back(std::move(command));
  SubprocessConnection result = co_await subprocess_exec(std::move(factory), std::move(args), options);
  co_return result;
}

}  // namespace eddy
