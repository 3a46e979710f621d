// libuv stream endpoint (see uv_stream.hpp) and sockaddr conversion.
#include "uv_stream.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/epoll.h>
#endif

#include <cerrno>
#include <cstring>
#include <iterator>
#include <memory>
#include <utility>

namespace eddy::native {

SocketAddress to_socket_address(const sockaddr* sa) {
  SocketAddress a;
  char text[INET6_ADDRSTRLEN] = {};
  switch (sa->sa_family) {
    case AF_INET: {
      auto* in = reinterpret_cast<const sockaddr_in*>(sa);
      inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
      a.family = AddressFamily::inet;
      a.set_host(text);
      a.port = ntohs(in->sin_port);
      break;
    }
    case AF_INET6: {
      auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
      inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
      a.family = AddressFamily::inet6;
      a.set_host(text);
      a.port = ntohs(in6->sin6_port);
      a.flowinfo = ntohl(in6->sin6_flowinfo);
      a.scope_id = in6->sin6_scope_id;
      break;
    }
    case AF_UNIX: {
      auto* un = reinterpret_cast<const sockaddr_un*>(sa);
      a.family = AddressFamily::unix_socket;
      a.set_host(un->sun_path);
      break;
    }
    default: break;
  }
  return a;
}

void to_sockaddr(const SocketAddress& a, sockaddr_storage& out) {
  std::memset(&out, 0, sizeof out);
  int rc = UV_EINVAL;
  if (a.family == AddressFamily::inet) {
    rc = uv_ip4_addr(a.host_c_str(), a.port, reinterpret_cast<sockaddr_in*>(&out));
  } else if (a.family == AddressFamily::inet6) {
    rc = uv_ip6_addr(a.host_c_str(), a.port, reinterpret_cast<sockaddr_in6*>(&out));
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&out);
    if (rc == 0 && a.scope_id) in6->sin6_scope_id = a.scope_id;
    if (rc == 0) in6->sin6_flowinfo = htonl(a.flowinfo);
  }
  if (rc != 0) throw std::system_error(uv_error(rc), "bad address " + a.to_string());
}

UvStreamEndpoint::UvStreamEndpoint(uv_loop_t* loop, Kind kind) : kind_(kind) {
  int rc = kind == Kind::tcp ? uv_tcp_init(loop, &handle_.tcp) : uv_pipe_init(loop, &handle_.pipe, 0);
  if (rc) throw std::system_error(uv_error(rc), "uv stream init");
  handle_.handle.data = this;
}

void UvStreamEndpoint::connect_tcp(const sockaddr* addr, ConnectDone done) {
  connect_done_ = std::move(done);
  connect_req_.data = this;
  int rc = uv_tcp_connect(&connect_req_, &handle_.tcp, addr, [](uv_connect_t* req, int status) {
    auto* self = static_cast<UvStreamEndpoint*>(req->data);
    if (self->closed_) return;
    auto done = std::move(self->connect_done_);
    done(status ? uv_error(status) : std::error_code());
  });
  if (rc) throw std::system_error(uv_error(rc), "connect");
}

void UvStreamEndpoint::connect_unix(const std::string& path, ConnectDone done) {
  connect_done_ = std::move(done);
  connect_req_.data = this;
  uv_pipe_connect(&connect_req_, &handle_.pipe, path.c_str(), [](uv_connect_t* req, int status) {
    auto* self = static_cast<UvStreamEndpoint*>(req->data);
    if (self->closed_) return;
    auto done = std::move(self->connect_done_);
    done(status ? uv_error(status) : std::error_code());
  });
}

void UvStreamEndpoint::tune(const ConnectOptions& options) noexcept {
  if (kind_ != Kind::tcp) return;
  if (options.nodelay) uv_tcp_nodelay(&handle_.tcp, 1);
  if (options.keep_alive) uv_tcp_keepalive(&handle_.tcp, 1, 60);
}

void UvStreamEndpoint::refuse_reading_unless_pollable() noexcept {
#ifdef __linux__
  uv_os_fd_t fd;
  if (uv_fileno(&handle_.handle, &fd) != 0) return;
  const int probe = ::epoll_create1(EPOLL_CLOEXEC);
  if (probe < 0) return;
  epoll_event ev{};
  ev.events = EPOLLIN;
  if (::epoll_ctl(probe, EPOLL_CTL_ADD, fd, &ev) != 0) unpollable_error_ = errno;
  ::close(probe);
#endif
}

void UvStreamEndpoint::read_start() {
  if (closed_) return;
  if (unpollable_error_)
    throw std::system_error(unpollable_error_, std::generic_category(), "cannot watch the pipe");
  int rc = uv_read_start(
      &handle_.stream,
      [](uv_handle_t* h, size_t suggested, uv_buf_t* buf) {
        auto* self = static_cast<UvStreamEndpoint*>(h->data);
        buf->base = nullptr;
        buf->len = 0;
        if (self->closed_ || !self->events_) return;
        std::span<char> b = self->events_->read_buffer(suggested);
        buf->base = b.data();
        buf->len = b.size();
      },
      [](uv_stream_t* s, ssize_t nread, const uv_buf_t*) {
        auto* self = static_cast<UvStreamEndpoint*>(s->data);
        if (self->closed_ || !self->events_ || nread == 0) return;
        if (nread > 0)
          self->events_->read_done(static_cast<std::size_t>(nread));
        else if (nread == UV_EOF)
          self->events_->read_eof();
        else  // UV_ENOBUFS: the transport refused a buffer (see StreamEvents::read_buffer)
          self->events_->read_failed(uv_error(static_cast<int>(nread)));
      });
  if (rc && rc != UV_EALREADY) throw std::system_error(uv_error(rc), "read_start");
}

void UvStreamEndpoint::read_stop() noexcept {
  if (!closed_) uv_read_stop(&handle_.stream);
}

std::size_t UvStreamEndpoint::try_write(std::string_view data, std::error_code& error) noexcept {
  uv_buf_t buf = uv_buf_init(const_cast<char*>(data.data()), static_cast<unsigned>(data.size()));
  int rc = uv_try_write(&handle_.stream, &buf, 1);
  if (rc >= 0) return static_cast<std::size_t>(rc);
  if (rc != UV_EAGAIN && rc != UV_ENOSYS) error = uv_error(rc);
  return 0;
}

namespace {
struct WriteRequest {
  uv_write_t req;
  WriteBuffers data;
};
}  // namespace

void UvStreamEndpoint::write(WriteBuffers data) {
  auto* w = new WriteRequest{{}, std::move(data)};
  w->req.data = this;
  // libuv copies the array of buffers into the request; the bytes stay in `w`.
  const std::size_t n = w->data.size();
  uv_buf_t few[8];
  std::unique_ptr<uv_buf_t[]> many;
  uv_buf_t* bufs = n <= std::size(few) ? few : (many = std::make_unique<uv_buf_t[]>(n)).get();
  for (std::size_t i = 0; i < n; ++i)
    bufs[i] = uv_buf_init(w->data[i].data(), static_cast<unsigned>(w->data[i].size()));
  int rc = uv_write(&w->req, &handle_.stream, bufs, static_cast<unsigned>(n),
                    [](uv_write_t* req, int status) {
                      auto* w = reinterpret_cast<WriteRequest*>(req);
                      auto* self = static_cast<UvStreamEndpoint*>(req->data);
                      delete w;
                      if (self->closed_ || !self->events_) return;
                      self->events_->write_done(status ? uv_error(status) : std::error_code());
                    });
  if (rc) {
    delete w;
    throw std::system_error(uv_error(rc), "write");
  }
}

void UvStreamEndpoint::shutdown() {
  if (closed_ || shutting_down_) return;
  shutting_down_ = true;
  shutdown_req_.data = this;
  int rc = uv_shutdown(&shutdown_req_, &handle_.stream, [](uv_shutdown_t* req, int status) {
    auto* self = static_cast<UvStreamEndpoint*>(req->data);
    if (self->closed_ || !self->events_) return;
    self->events_->shutdown_done(status ? uv_error(status) : std::error_code());
  });
  if (rc) shutting_down_ = false;  // not connected or already shut: nothing to do
}

// Writability for sendfile, without disturbing libuv's own watcher of the socket: a duplicate
// descriptor of the same socket has its own epoll registration. Frees itself when closed.
struct UvStreamEndpoint::WritableWatch {
  uv_poll_t poll;
  int fd;
  std::function<void()> ready;
};

namespace {
// A uv_poll on a duplicate of `fd`: its own epoll registration, so it may watch for other
// events than libuv's stream handle on the same socket or pipe. `Watch` has `poll` and `fd`.
template <class Watch>
Watch* watch_duplicate(uv_loop_t* loop, int fd, const char* what) {
  const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (copy < 0) throw std::system_error(errno, std::generic_category(), "dup");
  auto* w = new Watch{};
  w->fd = copy;
  if (int rc = uv_poll_init(loop, &w->poll, copy)) {
    ::close(copy);
    delete w;
    throw std::system_error(uv_error(rc), what);
  }
  w->poll.data = w;
  return w;
}

// Closes a watch made by watch_duplicate, and frees it once libuv has let go of it.
template <class Watch>
void close_watch(Watch* w) noexcept {
  uv_close(reinterpret_cast<uv_handle_t*>(&w->poll), [](uv_handle_t* h) {
    auto* w = static_cast<Watch*>(h->data);
    ::close(w->fd);  // libuv has already dropped its registration
    delete w;
  });
}
}  // namespace

int UvStreamEndpoint::sendfile_socket() const noexcept {
  uv_os_fd_t fd;
  if (closed_ || kind_ == Kind::pipe || uv_fileno(&handle_.handle, &fd) != 0) return -1;
  return static_cast<int>(fd);
}

void UvStreamEndpoint::wait_writable(std::function<void()> ready) {
  if (closed_)
    throw std::system_error(std::make_error_code(std::errc::bad_file_descriptor), "sendfile");
  if (!writable_)
    writable_ = watch_duplicate<WritableWatch>(handle_.handle.loop, sendfile_socket(), "sendfile");
  writable_->ready = std::move(ready);
  int rc = uv_poll_start(&writable_->poll, UV_WRITABLE, [](uv_poll_t* h, int, int) {
    auto* w = static_cast<WritableWatch*>(h->data);
    uv_poll_stop(h);
    auto ready = std::move(w->ready);  // an error is readiness too: the next sendfile reports it
    if (ready) ready();
  });
  if (rc) throw std::system_error(uv_error(rc), "sendfile");
}

void UvStreamEndpoint::cancel_writable_wait() noexcept {
  if (!writable_) return;
  uv_poll_stop(&writable_->poll);
  writable_->ready = nullptr;
}

// The write end of a FIFO polls as an error once no reader is left (libuv cannot read-watch a
// write-only pipe, which is how asyncio's write pipe transport notices it): a duplicate
// descriptor, with its own epoll registration, is watched for that. Frees itself when closed.
struct UvStreamEndpoint::ReaderWatch {
  uv_poll_t poll;
  int fd;
  UvStreamEndpoint* owner;
};

void UvStreamEndpoint::watch_reader() {
  uv_os_fd_t ours;
  struct stat st;
  if (closed_ || reader_watch_ || kind_ != Kind::pipe || uv_fileno(&handle_.handle, &ours) != 0 ||
      ::fstat(ours, &st) != 0 || !(S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)))
    return;
  ReaderWatch* w = watch_duplicate<ReaderWatch>(handle_.handle.loop, ours, "watch_reader");
  w->owner = this;
  reader_watch_ = w;
  // A FIFO's write end never polls readable: whatever is reported (POLLERR) means the readers
  // are gone. Over a socket, asyncio takes anything readable (EOF, data) as the peer closing.
  int rc = uv_poll_start(&w->poll, UV_READABLE, [](uv_poll_t* h, int, int) {
    auto* w = static_cast<ReaderWatch*>(h->data);
    uv_poll_stop(h);
    UvStreamEndpoint* self = w->owner;
    if (!self->closed_ && self->events_) self->events_->read_eof();
  });
  if (rc) throw std::system_error(uv_error(rc), "watch_reader");
}

void UvStreamEndpoint::close(bool reset) noexcept {
  if (closed_) return;
  closed_ = true;
  events_ = nullptr;
  if (ReaderWatch* w = std::exchange(reader_watch_, nullptr)) close_watch(w);
  if (WritableWatch* w = std::exchange(writable_, nullptr)) {
    w->ready = nullptr;
    close_watch(w);
  }
  auto on_closed = [](uv_handle_t* h) { delete static_cast<UvStreamEndpoint*>(h->data); };
  if (reset && kind_ == Kind::tcp && uv_tcp_close_reset(&handle_.tcp, on_closed) == 0) return;
  uv_close(&handle_.handle, on_closed);
}

std::any UvStreamEndpoint::extra_info(std::string_view name) const {
  auto* self = const_cast<UvStreamEndpoint*>(this);
  if (name == (kind_ == Kind::pipe ? "pipe" : "socket")) {
    uv_os_fd_t fd;
    if (uv_fileno(&self->handle_.handle, &fd) == 0) return static_cast<int>(fd);
    return {};
  }
  const bool peer = name == "peername";
  if (!peer && name != "sockname") return {};
  if (kind_ == Kind::tcp) {
    sockaddr_storage ss;
    int len = sizeof ss;
    int rc = peer ? uv_tcp_getpeername(&self->handle_.tcp, reinterpret_cast<sockaddr*>(&ss), &len)
                  : uv_tcp_getsockname(&self->handle_.tcp, reinterpret_cast<sockaddr*>(&ss), &len);
    if (rc) return {};
    return to_socket_address(reinterpret_cast<sockaddr*>(&ss));
  }
  char path[4096];
  size_t len = sizeof path;
  int rc = peer ? uv_pipe_getpeername(&self->handle_.pipe, path, &len)
                : uv_pipe_getsockname(&self->handle_.pipe, path, &len);
  if (rc) return {};
  return SocketAddress::unix_path(std::string(path, len));
}

}  // namespace eddy::native

#include <unistd.h>

namespace eddy::native {

UvListener::UvListener(uv_loop_t* loop, UvStreamEndpoint::Kind kind, const ListenOptions& options)
    : kind_(kind), options_(options) {
  int rc = kind == UvStreamEndpoint::Kind::tcp ? uv_tcp_init(loop, &handle_.tcp) : uv_pipe_init(loop, &handle_.pipe, 0);
  if (rc) throw std::system_error(uv_error(rc), "uv listener init");
  handle_.handle.data = this;
}

void UvListener::listen(Events events) {
  events_ = std::move(events);
  int rc = uv_listen(&handle_.stream, options_.backlog, [](uv_stream_t* server, int status) {
    auto* self = static_cast<UvListener*>(server->data);
    if (self->closed_) return;
    if (status < 0) {
      if (self->events_.failed) self->events_.failed(uv_error(status));
      return;
    }
    UvStreamEndpoint* ep = new UvStreamEndpoint(server->loop, self->kind_);
    StreamEndpointPtr owned(ep);
    if (int rc = uv_accept(server, ep->stream())) {
      if (self->events_.failed) self->events_.failed(uv_error(rc));
      return;
    }
    ep->tune({.nodelay = self->options_.nodelay, .keep_alive = self->options_.keep_alive});
    if (self->events_.accepted) self->events_.accepted(std::move(owned));
  });
  if (rc) throw std::system_error(uv_error(rc), "listen");
}

SocketAddress UvListener::address() const {
  auto* self = const_cast<UvListener*>(this);
  if (kind_ == UvStreamEndpoint::Kind::tcp) {
    sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getsockname(&self->handle_.tcp, reinterpret_cast<sockaddr*>(&ss), &len) == 0)
      return to_socket_address(reinterpret_cast<sockaddr*>(&ss));
    return {};
  }
  char path[4096];
  size_t len = sizeof path;
  if (uv_pipe_getsockname(&self->handle_.pipe, path, &len) == 0) return SocketAddress::unix_path(std::string(path, len));
  return {};
}

int UvListener::fileno() const noexcept {
  uv_os_fd_t fd = -1;
  uv_fileno(&handle_.handle, &fd);
  return fd;
}

void UvListener::close() noexcept {
  if (closed_) return;
  closed_ = true;
  struct stat st;
  if (!unlink_path_.empty() && ::stat(unlink_path_.c_str(), &st) == 0 && st.st_ino == unlink_inode_)
    ::unlink(unlink_path_.c_str());
  uv_close(&handle_.handle, [](uv_handle_t* h) { delete static_cast<UvListener*>(h->data); });
}

}  // namespace eddy::native
