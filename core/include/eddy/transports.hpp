// asyncio's transports: the interfaces user code sees, and the write flow control every writing
// transport shares (so the native and browser backends pause and resume protocols identically).
// Default limits are asyncio's: high 64 KiB, low = high / 4; pause_writing() is called once when
// the buffer goes strictly over high, resume_writing() once when it is back at low or below.
#pragma once

#include <any>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "eddy/net.hpp"
#include "eddy/protocols.hpp"
#include "eddy/ref.hpp"

namespace eddy {

class EventLoop;
namespace inspect {
struct TransportInfo;
}

class BaseTransport : public RefCounted {
 public:
  // Closes after the buffered data is sent; the protocol's connection_lost(null) follows.
  virtual void close() = 0;
  virtual bool is_closing() const = 0;
  // asyncio's keys: "peername", "sockname" (SocketAddress), "socket" (int fd), "pipe" (int fd),
  // "subprocess" (int pid); for TLS "ssl_object" (SSL* as void*), "peercert" (PeerCertificate),
  // "cipher" (TlsCipher), "ssl_version" (std::string), "compression" (none, as Python's None).
  // An empty std::any (or `default_value`) when the key does not apply.
  virtual std::any get_extra_info(std::string_view name, std::any default_value = {}) const = 0;
  virtual void set_protocol(std::shared_ptr<BaseProtocol> protocol) = 0;
  virtual std::shared_ptr<BaseProtocol> get_protocol() const = 0;
};

class ReadTransport : public virtual BaseTransport {
 public:
  virtual bool is_reading() const = 0;
  // No data_received until resume_reading(). Idempotent; no-op when closing.
  virtual void pause_reading() = 0;
  virtual void resume_reading() = 0;
};

class WriteTransport : public virtual BaseTransport {
 public:
  // Never blocks; what the peer cannot take yet is buffered. Data already accepted is never
  // lost or reordered. RuntimeError after write_eof(); after close()/loss it is dropped as
  // asyncio does (with a warning after repeated attempts).
  virtual void write(std::string_view data) = 0;
  void write(std::span<const std::byte> data) {
    write(std::string_view(reinterpret_cast<const char*>(data.data()), data.size()));
  }
  virtual void writelines(std::span<const std::string_view> chunks) {
    for (std::string_view c : chunks) write(c);
  }
  virtual bool can_write_eof() const = 0;
  virtual void write_eof() = 0;
  // Closes now: buffered data is lost; connection_lost(null) follows.
  virtual void abort() = 0;
  virtual std::size_t get_write_buffer_size() const = 0;
  // (low, high)
  virtual std::pair<std::size_t, std::size_t> get_write_buffer_limits() const = 0;
  // ValueError unless high >= low >= 0. Omitted values follow asyncio's defaults.
  virtual void set_write_buffer_limits(std::optional<long long> high = std::nullopt,
                                       std::optional<long long> low = std::nullopt) = 0;
};

class Transport : public ReadTransport, public WriteTransport {};

class DatagramTransport : public virtual BaseTransport {
 public:
  // `addr` omitted: the connected remote address. Data is sent whole or not at all.
  virtual void sendto(std::string_view data, std::optional<SocketAddress> addr = std::nullopt) = 0;
  virtual void abort() = 0;
  // Datagrams the kernel could not take yet, with the same water marks as stream transports.
  virtual std::size_t get_write_buffer_size() const = 0;
  // (low, high)
  virtual std::pair<std::size_t, std::size_t> get_write_buffer_limits() const = 0;
  // ValueError unless high >= low >= 0. Omitted values follow asyncio's defaults.
  virtual void set_write_buffer_limits(std::optional<long long> high = std::nullopt,
                                       std::optional<long long> low = std::nullopt) = 0;
  // As asyncio's selector datagram transport (not in its abstract class): while paused, datagrams
  // wait in the socket. False once closing.
  virtual bool is_reading() const = 0;
  virtual void pause_reading() = 0;
  virtual void resume_reading() = 0;
};

class SubprocessTransport : public virtual BaseTransport {
 public:
  virtual int get_pid() const = 0;
  // The transport of the child's fd 0, 1 or 2, or null when it is not a pipe.
  virtual Ref<BaseTransport> get_pipe_transport(int fd) const = 0;
  // Null while running; negative: killed by that signal, as asyncio reports it.
  virtual std::optional<int> get_returncode() const = 0;
  virtual void send_signal(int signal) = 0;
  virtual void terminate() = 0;
  virtual void kill() = 0;
};

// The water-mark state machine, shared by every writing transport. The transport reports its
// buffer size after each change; protocol callbacks' exceptions go to the loop's handler.
class WriteFlowControl {
 public:
  static constexpr std::size_t kDefaultHigh = 64 * 1024;

  void set_limits(std::optional<long long> high, std::optional<long long> low);
  std::size_t high() const noexcept { return high_; }
  std::size_t low() const noexcept { return low_; }
  bool protocol_paused() const noexcept { return paused_; }
  std::uint64_t inspect_id = 0;  // the transport's id in the inspector's events
  // For inspector snapshots: the state word, the buffer against these limits, writing paused.
  void describe(inspect::TransportInfo& out, std::size_t buffer, bool closed, bool closing) const;

  // Call after the buffer grew / shrank. `protocol` may be null (no call then).
  void maybe_pause(std::size_t buffer_size, BaseProtocol* protocol, EventLoop& loop,
                   const BaseTransport* transport);
  void maybe_resume(std::size_t buffer_size, BaseProtocol* protocol, EventLoop& loop,
                    const BaseTransport* transport);

 private:
  std::size_t high_ = kDefaultHigh;
  std::size_t low_ = kDefaultHigh / 4;
  bool paused_ = false;
};

}  // namespace eddy
