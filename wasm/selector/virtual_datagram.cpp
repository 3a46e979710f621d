// Datagram endpoints over the virtual network (UDP-like, and Unix datagram sockets): a send is
// taken whole at once (or refused with EMSGSIZE), crosses its link with the link's latency,
// bandwidth and loss, and is dropped if nobody is bound at the other end or the receiver's
// buffer is full, as UDP does.
#include <cstring>
#include <deque>

#include "virtual_sockets.hpp"

namespace eddy::vnet::detail {

namespace {

class VirtualDatagramEndpoint final : public DatagramEndpoint, public SocketOwner {
 public:
  VirtualDatagramEndpoint(NetworkCore& net, int fd) : net_(net), fd_(fd) {
    net_.set_owner(fd_, this);
  }

  void set_events(DatagramEvents* events) noexcept override { events_ = events; }
  void receive_start() override {
    receiving_ = true;
    net_.mark(fd_);
  }
  void receive_stop() noexcept override { receiving_ = false; }

  bool try_send(std::string_view data, const SocketAddress* to,
                std::error_code& error) noexcept override {
    if (closed_ || !queue_.empty()) return false;
    std::error_code ec;
    try {
      net_.send(fd_, data, to, ec);
    } catch (const std::system_error& e) {  // binding on first send can fail
      ec = e.code();
    }
    // EAGAIN (an AF_UNIX receiver is full): not an error; the transport queues it (send()).
    if (ec && ec != std::errc::operation_would_block) error = ec;
    return !ec;
  }

  void send(std::string_view data, const SocketAddress* to) override {
    queue_.push_back({to ? *to : SocketAddress{}, to != nullptr, std::string(data)});
    queued_ += data.size();
    net_.mark(fd_);
  }

  void check_destination(const SocketAddress& to, const char* method) const override {
    net_.check_datagram_destination(to, method);
  }
  std::size_t queued_bytes() const noexcept override { return queued_; }

  void close() noexcept override {
    if (closed_) return;
    closed_ = true;
    events_ = nullptr;
    net_.close(fd_);
    net_.retire(std::unique_ptr<SocketOwner>(this));
  }

  std::any extra_info(std::string_view name) const override {
    Socket* s = net_.find(fd_);
    if (!s) return {};
    if (name == "sockname") {
      if (s->bound) return s->local;
      // Not bound yet: what getsockname(2) says, the family's wildcard or an unnamed Unix path.
      if (s->family == AddressFamily::unix_socket) return SocketAddress::unix_path("");
      return SocketAddress::ip(s->family == AddressFamily::inet6 ? "::" : "0.0.0.0", 0);
    }
    if (name == "peername" && s->connected) return s->peer;
    if (name == "socket") return fd_;
    return {};
  }

  bool pump() override {
    bool reported = false;
    while (!queue_.empty() && !closed_) {
      Pending& p = queue_.front();
      std::error_code ec;
      try {
        net_.send(fd_, p.data, p.has_to ? &p.to : nullptr, ec);
      } catch (const std::system_error& e) {
        ec = e.code();
      }
      // The receiver is full: the datagram stays first in line until it reads (it marks us).
      if (ec == std::errc::operation_would_block) break;
      queued_ -= p.data.size();
      queue_.pop_front();
      if (events_) {
        events_->send_done(ec);
        reported = true;
      }
    }
    while (receiving_ && events_ && !closed_) {
      Socket* s = net_.find(fd_);
      if (!s) break;
      if (s->datagrams.empty()) {
        if (s->error) {
          events_->receive_failed(std::exchange(s->error, {}));
          reported = true;
        }
        break;
      }
      std::span<char> buffer = events_->receive_buffer(s->datagrams.front().data.size());
      if (closed_ || !events_) return true;
      SocketAddress from;
      std::error_code ec;
      const std::size_t n = net_.recv(fd_, buffer, &from, ec);
      if (ec) break;
      events_->received(n, from);
      reported = true;
    }
    return reported;
  }

 private:
  struct Pending {
    SocketAddress to;
    bool has_to = false;
    std::string data;
  };
  ~VirtualDatagramEndpoint() override = default;

  NetworkCore& net_;
  int fd_;
  DatagramEvents* events_ = nullptr;
  std::deque<Pending> queue_;
  std::size_t queued_ = 0;
  bool receiving_ = false;
  bool closed_ = false;
};

}  // namespace

DatagramEndpointPtr make_datagram_endpoint(NetworkCore& net, int fd) {
  return DatagramEndpointPtr(new VirtualDatagramEndpoint(net, fd));
}

}  // namespace eddy::vnet::detail
