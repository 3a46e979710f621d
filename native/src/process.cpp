// Child processes and pipes for the native backend. Each PIPE entry is a pipe2() pair: the
// child's end is handed to uv_spawn as an inherited fd (so stderr=STDOUT can share stdout's pipe)
// and closed here after the spawn; our end becomes a libuv pipe endpoint. The exit status is
// reported once, as asyncio's returncode (negative: the signal that killed the child).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "uv_backend.hpp"
#include "uv_stream.hpp"

namespace eddy::native {

namespace {

class UvProcess final : public ProcessEndpoint {
 public:
  explicit UvProcess(std::function<void(int)> on_exit) : on_exit_(std::move(on_exit)) { process_.data = this; }
  uv_process_t* handle() noexcept { return &process_; }
  static void exited(uv_process_t* p, int64_t status, int term_signal) {
    auto* self = static_cast<UvProcess*>(p->data);
    self->exited_ = true;
    if (self->closed_ || !self->on_exit_) return;
    auto report = std::move(self->on_exit_);
    report(term_signal ? -term_signal : static_cast<int>(status));
  }
  int pid() const noexcept override { return process_.pid; }
  void send_signal(int sig) override {
    if (int rc = uv_process_kill(&process_, sig)) throw std::system_error(uv_error(rc), "kill");
  }
  void close() noexcept override {
    if (closed_) return;
    closed_ = true;
    on_exit_ = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&process_), [](uv_handle_t* h) { delete static_cast<UvProcess*>(h->data); });
  }

 private:
  ~UvProcess() override = default;
  uv_process_t process_;
  std::function<void(int)> on_exit_;
  bool closed_ = false;
  bool exited_ = false;
};

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

StreamEndpointPtr UvBackend::adopt_pipe(int fd) {
  struct stat st;
  if (::fstat(fd, &st) != 0) throw std::system_error(errno, std::generic_category(), "fstat");
  if (!(S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || S_ISCHR(st.st_mode)))
    throw ValueError("Pipe transport is for pipes/sockets only.");
  auto* ep = new UvStreamEndpoint(&loop_, UvStreamEndpoint::Kind::pipe);
  StreamEndpointPtr owned(ep);
  if (int rc = uv_pipe_open(ep->pipe(), fd)) throw std::system_error(uv_error(rc), "uv_pipe_open");
  return owned;
}

SpawnedProcess UvBackend::spawn_process(const ProcessSpec& spec, std::function<void(int)> on_exit) {
  SpawnedProcess out;
  Fd child_ends[3], devnull;
  int ours[3] = {-1, -1, -1};
  uv_stdio_container_t stdio[3];
  for (int i = 0; i < 3; ++i) {
    const int want = spec.stdio[i];
    stdio[i].flags = UV_INHERIT_FD;
    if (want == subprocess::PIPE) {
      int fds[2];
      if (::pipe2(fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe");
      // fds[0] reads, fds[1] writes. The child reads its stdin, writes stdout and stderr.
      child_ends[i].fd = i == 0 ? fds[0] : fds[1];
      ours[i] = i == 0 ? fds[1] : fds[0];
      auto* ep = new UvStreamEndpoint(&loop_, UvStreamEndpoint::Kind::pipe);
      out.pipes[i] = StreamEndpointPtr(ep);
      if (int rc = uv_pipe_open(ep->pipe(), ours[i])) {
        ::close(ours[i]);
        throw std::system_error(uv_error(rc), "uv_pipe_open");
      }
      stdio[i].data.fd = child_ends[i].fd;
    } else if (want == subprocess::STDOUT) {
      stdio[i].data.fd = stdio[1].data.fd;
    } else if (want == subprocess::DEVNULL) {
      if (devnull.fd < 0) devnull.fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
      stdio[i].data.fd = devnull.fd;
    } else if (want == subprocess::INHERIT) {
      stdio[i].data.fd = i;
    } else if (want >= 0) {
      stdio[i].data.fd = want;
    } else {
      throw ValueError("invalid stdio value " + std::to_string(want));
    }
  }
  std::vector<char*> argv;
  for (const std::string& a : spec.args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  if (spec.env) {
    for (const std::string& e : *spec.env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
  }
  uv_process_options_t options;
  std::memset(&options, 0, sizeof options);
  options.file = argv[0];
  options.args = argv.data();
  options.env = spec.env ? envp.data() : nullptr;
  options.cwd = spec.cwd ? spec.cwd->c_str() : nullptr;
  options.stdio_count = 3;
  options.stdio = stdio;
  options.exit_cb = &UvProcess::exited;
  auto* p = new UvProcess(std::move(on_exit));
  if (int rc = uv_spawn(&loop_, p->handle(), &options)) {
    // libuv requires closing the handle even when spawn failed.
    p->close();
    throw std::system_error(uv_error(rc), "spawn " + spec.args[0]);
  }
  out.process = ProcessEndpointPtr(p);
  return out;  // the child's ends close here (Fd destructors)
}

}  // namespace eddy::native
