// Stream endpoints and listeners over the virtual network: what the core's StreamTransport and
// Server drive for TCP-like and Unix-like connections, socket pairs and pipes. Writes the send
// buffer cannot take yet wait in the endpoint (that is the transport's write buffer), and every
// event is reported from the network's delivery inside poll(), never after close().
#include <deque>
#include <string>

#include "virtual_sockets.hpp"

namespace eddy::vnet::detail {

namespace {

bool would_block(const std::error_code& ec) {
  return ec == std::errc::operation_would_block;
}

class VirtualStreamEndpoint final : public StreamEndpoint, public SocketOwner {
 public:
  VirtualStreamEndpoint(NetworkCore& net, int fd, ConnectDone connect_done)
      : net_(net), fd_(fd), connect_done_(std::move(connect_done)) {
    net_.set_owner(fd_, this);
  }

  void set_events(StreamEvents* events) noexcept override { events_ = events; }

  void read_start() override {
    reading_ = true;
    net_.mark(fd_);
  }
  void read_stop() noexcept override { reading_ = false; }

  std::size_t try_write(std::string_view data, std::error_code& error) noexcept override {
    if (closed_ || !writes_.empty()) return 0;  // keep the order of queued writes
    std::error_code ec;
    const std::size_t n = net_.send(fd_, data, nullptr, ec);
    if (ec && !would_block(ec)) error = ec;
    return n;
  }

  void write(WriteBuffers data) override {
    if (data.empty()) data.emplace_back();  // still one write_done
    for (std::string& piece : data) {
      queued_ += piece.size();
      writes_.push_back({std::move(piece), false});
    }
    writes_.back().ends_write = true;
    net_.mark(fd_);
  }

  std::size_t queued_bytes() const noexcept override { return queued_; }

  void shutdown() override {
    shutdown_requested_ = true;
    net_.mark(fd_);
  }

  void close(bool reset) noexcept override {
    if (closed_) return;
    closed_ = true;
    events_ = nullptr;
    writable_ = nullptr;
    net_.close(fd_, reset);
    net_.retire(std::unique_ptr<SocketOwner>(this));  // freed at the next poll, outside our calls
  }

  std::any extra_info(std::string_view name) const override {
    Socket* s = net_.find(fd_);
    if (!s) return {};
    const bool pipe = s->kind == Socket::Kind::pipe_read || s->kind == Socket::Kind::pipe_write;
    if (pipe) return name == "pipe" ? std::any(fd_) : std::any();  // pipes have no addresses
    if (name == "peername" && s->connected) return s->peer;
    if (name == "sockname" && s->bound) return s->local;
    if ((name == "socket" && !pipe) || (name == "pipe" && pipe)) return fd_;
    return {};
  }

  // sendfile writes into a stream socket's send buffer directly (SelectorBackend::sendfile_chunk),
  // once the writes queued here are in: the transport waits for them first.
  int sendfile_socket() const noexcept override {
    const Socket* s = net_.find(fd_);
    return s && s->kind == Socket::Kind::stream && !closed_ ? fd_ : -1;
  }
  void wait_writable(std::function<void()> ready) override {
    writable_ = std::move(ready);
    net_.mark(fd_);
  }
  void cancel_writable_wait() noexcept override { writable_ = nullptr; }

  void watch_reader() override {
    watching_reader_ = true;
    net_.mark(fd_);
  }

  bool pump() override {
    Socket* s = net_.find(fd_);
    if (!s || closed_) return false;
    if (writable_ && writes_.empty() && net_.writable(*s)) {
      auto ready = std::move(writable_);
      writable_ = nullptr;
      ready();
      if (closed_) return true;
      s = net_.find(fd_);
      if (!s) return true;
    }
    bool reported = false;
    if (connect_done_) {
      if (s->connecting) return false;
      auto done = std::move(connect_done_);
      connect_done_ = nullptr;
      done(s->connect_result);
      reported = true;
      if (closed_) return true;
    }
    reported |= move_writes();
    if (closed_) return true;
    reported |= report_reads();
    return reported;
  }

 private:
  ~VirtualStreamEndpoint() override = default;

  // Queued writes into the send buffer, in order; each write_done once all of it is in.
  bool move_writes() {
    bool reported = false;
    while (!writes_.empty()) {
      std::string& w = writes_.front().data;
      std::error_code ec;
      const std::size_t n = net_.send(fd_, std::string_view(w).substr(offset_), nullptr, ec);
      if (ec && !would_block(ec)) {
        // The connection is gone: every queued write fails with its error.
        while (!writes_.empty() && !closed_) {
          const bool ends_write = writes_.front().ends_write;
          writes_.pop_front();
          offset_ = 0;
          queued_ = 0;
          if (events_ && ends_write) {
            events_->write_done(ec);
            reported = true;
          }
        }
        return reported;
      }
      offset_ += n;
      queued_ -= n;
      if (offset_ < w.size()) break;
      const bool ends_write = writes_.front().ends_write;
      writes_.pop_front();
      offset_ = 0;
      if (events_ && ends_write) {
        events_->write_done({});
        reported = true;
        if (closed_) return true;
      }
    }
    if (shutdown_requested_ && writes_.empty() && !shutdown_sent_) {
      shutdown_sent_ = true;
      std::error_code ec;
      try {
        net_.shutdown_write(fd_);
      } catch (const std::system_error& e) {
        ec = e.code();
      }
      if (events_) {
        events_->shutdown_done(ec);
        reported = true;
      }
    }
    return reported;
  }

  bool report_reads() {
    bool reported = false;
    if (watching_reader_ && !reading_ && events_ && !closed_ && !eof_reported_) {
      // A write pipe's watch (asyncio's reader on its pipe): the reader went away, or, over a
      // socket, anything readable came (data, EOF, an error).
      Socket* s = net_.find(fd_);
      const bool gone =
          s && (s->kind == Socket::Kind::pipe_write
                    ? s->out && (s->out->reader_gone || s->out->dead)
                    : s->error || (s->in && (s->in->eof || !s->in->received.empty())));
      if (gone) {
        eof_reported_ = true;
        events_->read_eof();
        return true;
      }
    }
    while (reading_ && events_ && !closed_) {
      Socket* s = net_.find(fd_);
      if (!s) break;
      if (s->kind == Socket::Kind::pipe_write) {
        // A write pipe "reads" only to learn that its reader went away.
        if (s->out && (s->out->reader_gone || s->out->dead) && !eof_reported_) {
          eof_reported_ = true;
          events_->read_eof();
          reported = true;
        }
        break;
      }
      if (!s->in) break;
      if (!s->in->received.empty()) {
        std::span<char> buffer =
            events_->read_buffer(std::min<std::size_t>(s->in->received.size(), 64 * 1024));
        if (closed_ || !events_) return true;
        if (buffer.empty()) {
          events_->read_failed(std::make_error_code(std::errc::no_buffer_space));
          return true;
        }
        std::error_code ec;
        const std::size_t n = net_.recv(fd_, buffer, nullptr, ec);
        events_->read_done(n);
        reported = true;
        continue;
      }
      if (s->error) {
        if (!error_reported_) {
          error_reported_ = true;
          events_->read_failed(s->error);
          reported = true;
        }
        break;
      }
      if (s->in->eof && !eof_reported_) {
        eof_reported_ = true;
        events_->read_eof();
        reported = true;
      }
      break;
    }
    return reported;
  }

  NetworkCore& net_;
  int fd_;
  ConnectDone connect_done_;
  StreamEvents* events_ = nullptr;
  std::function<void()> writable_;  // sendfile's wait for room in the send buffer
  struct QueuedPiece {
    std::string data;
    bool ends_write;  // write_done once this piece is in the send buffer
  };
  std::deque<QueuedPiece> writes_;
  std::size_t offset_ = 0;  // of writes_.front() already in the send buffer
  std::size_t queued_ = 0;
  bool reading_ = false;
  bool watching_reader_ = false;  // watch_reader(): a write pipe learning that its reader left
  bool shutdown_requested_ = false;
  bool shutdown_sent_ = false;
  bool eof_reported_ = false;
  bool error_reported_ = false;
  bool closed_ = false;
};

class VirtualListener final : public StreamListener, public SocketOwner {
 public:
  VirtualListener(NetworkCore& net, int fd, int backlog) : net_(net), fd_(fd), backlog_(backlog) {}

  // As asyncio's server: bound at creation, listening only once it starts serving (before that,
  // connections are refused, as the kernel refuses them).
  void listen(Events events) override {
    net_.listen(fd_, backlog_);
    events_ = std::move(events);
    listening_ = true;
    net_.set_owner(fd_, this);
  }

  SocketAddress address() const override { return net_.get(fd_).local; }
  int fileno() const noexcept override { return fd_; }

  void close() noexcept override {
    if (closed_) return;
    closed_ = true;
    events_ = {};
    net_.close(fd_);
    net_.retire(std::unique_ptr<SocketOwner>(this));
  }

  bool pump() override {
    bool reported = false;
    while (listening_ && !closed_) {
      std::error_code ec;
      const int fd = net_.accept(fd_, nullptr, ec);
      if (fd < 0) break;
      auto accepted = events_.accepted;
      accepted(make_stream_endpoint(net_, fd));
      reported = true;
    }
    return reported;
  }

 private:
  ~VirtualListener() override = default;
  NetworkCore& net_;
  int fd_;
  int backlog_;
  Events events_;
  bool listening_ = false;
  bool closed_ = false;
};

}  // namespace

StreamEndpointPtr make_stream_endpoint(NetworkCore& net, int fd,
                                       StreamEndpoint::ConnectDone connect_done) {
  return StreamEndpointPtr(new VirtualStreamEndpoint(net, fd, std::move(connect_done)));
}

StreamListenerPtr make_listener(NetworkCore& net, int fd, int backlog) {
  return StreamListenerPtr(new VirtualListener(net, fd, backlog));
}

}  // namespace eddy::vnet::detail
