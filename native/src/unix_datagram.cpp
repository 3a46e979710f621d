// Unix-domain datagram sockets for the native backend. libuv has none (uv_udp is IP only), so
// this is a non-blocking AF_UNIX SOCK_DGRAM socket watched by a uv_poll_t: readability drains
// it, sends go straight to the kernel and queue (a copy, in order) only when it would block.
// Binding removes a stale socket file first, as asyncio does; closing does not remove it.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <deque>
#include <optional>
#include <string>

#include "uv_backend.hpp"
#include "uv_stream.hpp"

namespace eddy::native {

// Paths (and Linux abstract names, which start with NUL) as sockaddr_un.
bool to_unix_sockaddr(const SocketAddress& a, sockaddr_un& out, socklen_t& len,
                      std::error_code& error) noexcept {
  std::memset(&out, 0, sizeof out);
  out.sun_family = AF_UNIX;
  const std::string_view path = a.host();
  if (a.family != AddressFamily::unix_socket) {
    error = std::make_error_code(std::errc::address_family_not_supported);
    return false;
  }
  if (path.size() >= sizeof out.sun_path) {
    error = std::make_error_code(std::errc::filename_too_long);
    return false;
  }
  std::memcpy(out.sun_path, path.data(), path.size());
  const bool abstract = !path.empty() && path[0] == '\0';
  len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + (abstract ? 0 : 1));
  return true;
}

SocketAddress from_unix_sockaddr(const sockaddr_un& sa, socklen_t len) {
  const std::size_t n =
      len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
  // An unnamed sender has no path: asyncio reports it as ''.
  if (n == 0) return SocketAddress::unix_path("");
  if (sa.sun_path[0] == '\0') return SocketAddress::unix_path(std::string_view(sa.sun_path, n));
  return SocketAddress::unix_path(std::string_view(sa.sun_path, strnlen(sa.sun_path, n)));
}

namespace {

std::error_code last_error() noexcept {
  return {errno, std::generic_category()};
}

class UnixDatagramEndpoint final : public DatagramEndpoint {
 public:
  // Takes `fd` (closed with the endpoint, or by the caller if this throws).
  UnixDatagramEndpoint(uv_loop_t* loop, int fd) : fd_(fd) {
    if (int rc = uv_poll_init_socket(loop, &poll_, fd))
      throw std::system_error(uv_error(rc), "uv_poll_init");
    poll_.data = this;
    uv_timer_init(loop, &retry_);
    retry_.data = this;
  }
  int fd() const noexcept { return fd_; }

  void set_events(DatagramEvents* events) noexcept override { events_ = events; }
  void receive_start() override {
    receiving_ = true;
    watch();
  }
  void receive_stop() noexcept override {
    receiving_ = false;
    watch();
  }
  bool try_send(std::string_view data, const SocketAddress* to,
                std::error_code& error) noexcept override {
    if (!queue_.empty()) return false;  // behind what is already queued
    return send_now(data, to, error);
  }
  void send(std::string_view data, const SocketAddress* to) override {
    queue_.push_back(
        Queued{std::string(data), to ? std::optional<SocketAddress>(*to) : std::nullopt});
    queued_bytes_ += data.size();
    watch();
  }
  std::size_t queued_bytes() const noexcept override { return queued_bytes_; }
  void close() noexcept override {
    if (closed_) return;
    closed_ = true;
    events_ = nullptr;
    uv_poll_stop(&poll_);
    uv_timer_stop(&retry_);
    // Two handles: the second close callback frees us.
    uv_close(reinterpret_cast<uv_handle_t*>(&retry_),
             [](uv_handle_t* h) { static_cast<UnixDatagramEndpoint*>(h->data)->handle_closed(); });
    uv_close(reinterpret_cast<uv_handle_t*>(&poll_),
             [](uv_handle_t* h) { static_cast<UnixDatagramEndpoint*>(h->data)->handle_closed(); });
  }
  std::any extra_info(std::string_view name) const override {
    if (name == "socket") return fd_;
    if (name != "sockname" && name != "peername") return {};
    sockaddr_un sa;
    socklen_t len = sizeof sa;
    std::memset(&sa, 0, sizeof sa);
    const int rc = name == "sockname" ? ::getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len)
                                      : ::getpeername(fd_, reinterpret_cast<sockaddr*>(&sa), &len);
    if (rc != 0) return {};
    return from_unix_sockaddr(sa, len);
  }

 private:
  struct Queued {
    std::string data;
    std::optional<SocketAddress> to;
  };
  ~UnixDatagramEndpoint() override { ::close(fd_); }
  void handle_closed() noexcept {
    if (++handles_closed_ == 2) delete this;
  }

  // Readable while receiving; writable while something is queued (unless backing off).
  void watch() noexcept {
    if (closed_) return;
    const int events =
        (receiving_ ? UV_READABLE : 0) | (!queue_.empty() && !backing_off_ ? UV_WRITABLE : 0);
    if (events == 0)
      uv_poll_stop(&poll_);
    else
      uv_poll_start(&poll_, events, [](uv_poll_t* p, int status, int events) {
        static_cast<UnixDatagramEndpoint*>(p->data)->ready(status, events);
      });
  }

  void ready(int status, int events) {
    if (closed_) return;
    if (status < 0) {
      if (events_) events_->receive_failed(uv_error(status));
      return;
    }
    if (events & UV_WRITABLE) flush();
    if (!closed_ && (events & UV_READABLE)) drain();
  }

  bool send_now(std::string_view data, const SocketAddress* to, std::error_code& error) noexcept {
    sockaddr_un sa;
    socklen_t len = 0;
    if (to && !to_unix_sockaddr(*to, sa, len, error)) return false;
    for (;;) {
      const ssize_t n = to ? ::sendto(fd_, data.data(), data.size(), MSG_NOSIGNAL,
                                      reinterpret_cast<const sockaddr*>(&sa), len)
                           : ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n >= 0) return true;
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) error = last_error();
      return false;
    }
  }

  // Sends what is queued, in order. A receiver whose queue is full makes sendto() say EAGAIN
  // while poll() still says writable (our own buffer has room), so then we retry on a short
  // timer instead of spinning.
  void flush() {
    bool progressed = false;
    while (!queue_.empty() && !closed_) {
      Queued& item = queue_.front();
      std::error_code error;
      if (!send_now(item.data, item.to ? &*item.to : nullptr, error) && !error) break;
      queued_bytes_ -= item.data.size();
      queue_.pop_front();
      progressed = true;
      if (events_) events_->send_done(error);
    }
    if (closed_) return;
    backing_off_ = !queue_.empty() && !progressed;
    if (backing_off_)
      uv_timer_start(
          &retry_,
          [](uv_timer_t* t) {
            auto* self = static_cast<UnixDatagramEndpoint*>(t->data);
            self->backing_off_ = false;
            self->flush();
          },
          1, 0);
    watch();
  }

  void drain() {
    // A bounded batch per wakeup, so one busy socket cannot starve the rest of the loop.
    for (int i = 0; i < 64 && receiving_ && !closed_ && events_; ++i) {
      std::span<char> buffer = events_->receive_buffer(65536);
      sockaddr_un from;
      socklen_t len = sizeof from;
      std::memset(&from, 0, sizeof from);
      const ssize_t n = ::recvfrom(fd_, buffer.data(), buffer.size(), 0,
                                   reinterpret_cast<sockaddr*>(&from), &len);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) events_->receive_failed(last_error());
        return;
      }
      events_->received(static_cast<std::size_t>(n), from_unix_sockaddr(from, len));
    }
  }

  int fd_;
  uv_poll_t poll_;
  uv_timer_t retry_;
  DatagramEvents* events_ = nullptr;
  std::deque<Queued> queue_;
  std::size_t queued_bytes_ = 0;
  int handles_closed_ = 0;
  bool receiving_ = false;
  bool backing_off_ = false;
  bool closed_ = false;
};

DatagramEndpointPtr wrap(uv_loop_t* loop, int fd) {
  UnixDatagramEndpoint* ep;
  try {
    ep = new UnixDatagramEndpoint(loop, fd);
  } catch (...) {
    ::close(fd);
    throw;
  }
  return DatagramEndpointPtr(ep);
}

}  // namespace

DatagramEndpointPtr open_unix_datagram(uv_loop_t* loop, const DatagramOptions& options) {
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::system_error(last_error(), "socket(AF_UNIX, SOCK_DGRAM)");
  DatagramEndpointPtr owned = wrap(loop, fd);
  std::error_code error;
  sockaddr_un sa;
  socklen_t len = 0;
  if (options.local) {
    remove_stale_unix_socket(std::string(options.local->host()));
    if (!to_unix_sockaddr(*options.local, sa, len, error))
      throw std::system_error(error, "bad address " + options.local->to_string());
    if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), len) != 0)
      throw std::system_error(last_error(), "bind " + options.local->to_string());
  }
  if (options.remote) {
    if (!to_unix_sockaddr(*options.remote, sa, len, error))
      throw std::system_error(error, "bad address " + options.remote->to_string());
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), len) != 0)
      throw std::system_error(last_error(), "connect " + options.remote->to_string());
  }
  return owned;
}

DatagramEndpointPtr adopt_unix_datagram(uv_loop_t* loop, int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0)
    throw std::system_error(last_error(), "fcntl(O_NONBLOCK)");
  return wrap(loop, fd);
}

}  // namespace eddy::native
