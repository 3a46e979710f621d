// The libuv stream endpoint shared by TCP and Unix sockets (and later pipes): reads into the
// buffer the core's transport supplies, writes with uv_try_write then uv_write for the rest,
// half-closes with uv_shutdown. It deletes itself in uv_close's callback; after close() it
// reports nothing, even for the writes libuv cancels while closing.
#pragma once

#include <sys/stat.h>
#include <sys/un.h>
#include <uv.h>

#include <any>
#include <string>

#include "eddy/endpoints.hpp"
#include "uv_backend.hpp"

namespace eddy::native {

// sockaddr <-> SocketAddress.
SocketAddress to_socket_address(const sockaddr* sa);
// Fills `out` (a sockaddr_storage); throws std::system_error(EINVAL) for a bad address.
void to_sockaddr(const SocketAddress& a, sockaddr_storage& out);
// AF_UNIX addresses with their exact length: Linux abstract names (a leading NUL) are the bytes
// given, not padded to sun_path's size (unix_datagram.cpp).
bool to_unix_sockaddr(const SocketAddress& a, sockaddr_un& out, socklen_t& len,
                      std::error_code& error) noexcept;
SocketAddress from_unix_sockaddr(const sockaddr_un& sa, socklen_t len);

// The libuv handle behind a TCP or Unix stream, connected or listening.
union UvStreamHandle {
  uv_handle_t handle;
  uv_stream_t stream;
  uv_tcp_t tcp;
  uv_pipe_t pipe;
};

class UvStreamEndpoint final : public StreamEndpoint {
 public:
  enum class Kind { tcp, unix_socket, pipe };
  UvStreamEndpoint(uv_loop_t* loop, Kind kind);  // initialises the handle (throws on failure)

  uv_stream_t* stream() noexcept { return &handle_.stream; }
  uv_tcp_t* tcp() noexcept { return &handle_.tcp; }
  uv_pipe_t* pipe() noexcept { return &handle_.pipe; }
  Kind kind() const noexcept { return kind_; }

  // Starts connecting (the caller has prepared the handle); `done` is reported once.
  void connect_tcp(const sockaddr* addr, ConnectDone done);
  void connect_unix(const std::string& path, ConnectDone done);
  // Socket options for a connected TCP endpoint.
  void tune(const ConnectOptions& options) noexcept;
  // For a pipe over a character device: read_start() will throw what epoll says about the
  // descriptor, if it cannot watch it (libuv would abort in its poll instead).
  void refuse_reading_unless_pollable() noexcept;

  void set_events(StreamEvents* events) noexcept override { events_ = events; }
  void read_start() override;
  void read_stop() noexcept override;
  void watch_reader() override;  // the write end of a FIFO: see ReaderWatch
  std::size_t try_write(std::string_view data, std::error_code& error) noexcept override;
  void write(WriteBuffers data) override;
  std::size_t queued_bytes() const noexcept override { return handle_.stream.write_queue_size; }
  void shutdown() override;
  void close(bool reset = false) noexcept override;
  std::any extra_info(std::string_view name) const override;
  int sendfile_socket() const noexcept override;
  void wait_writable(std::function<void()> ready) override;
  void cancel_writable_wait() noexcept override;

 private:
  struct WritableWatch;
  struct ReaderWatch;
  ~UvStreamEndpoint() override = default;

  UvStreamHandle handle_;
  Kind kind_;
  StreamEvents* events_ = nullptr;
  ConnectDone connect_done_;
  uv_connect_t connect_req_;
  uv_shutdown_t shutdown_req_;
  WritableWatch* writable_ = nullptr;  // for sendfile; made on first use
  ReaderWatch* reader_watch_ = nullptr;  // write pipes: until the last reader goes
  bool closed_ = false;
  bool shutting_down_ = false;
  int unpollable_error_ = 0;  // errno from epoll for a descriptor it cannot watch
};

}  // namespace eddy::native

namespace eddy::native {

// A listening TCP or Unix socket. Accepted connections become UvStreamEndpoints.
class UvListener final : public StreamListener {
 public:
  UvListener(uv_loop_t* loop, UvStreamEndpoint::Kind kind, const ListenOptions& options);
  uv_tcp_t* tcp() noexcept { return &handle_.tcp; }
  uv_pipe_t* pipe() noexcept { return &handle_.pipe; }
  // close() removes the socket file at `path`, unless another file replaced it (asyncio checks
  // the inode the same way).
  void set_unlink_path(std::string path, ino_t inode) {
    unlink_path_ = std::move(path);
    unlink_inode_ = inode;
  }

  void listen(Events events) override;
  SocketAddress address() const override;
  int fileno() const noexcept override;
  void close() noexcept override;

 private:
  ~UvListener() override = default;
  UvStreamHandle handle_;
  UvStreamEndpoint::Kind kind_;
  ListenOptions options_;
  Events events_;
  std::string unlink_path_;
  ino_t unlink_inode_ = 0;
  bool closed_ = false;
};

}  // namespace eddy::native
