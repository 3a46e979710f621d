// add_reader/add_writer and the sock_* coroutines on raw non-blocking sockets: a socketpair,
// a listening socket accepted with sock_accept and connected with sock_connect, UDP with
// sock_sendto/sock_recvfrom, and a refused sock_connect. Loop kinds without sockets refuse.
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>

#include "support.hpp"

using namespace eddy;

LOOP_TEST("add_reader and sock_*: NotSupportedError where there are no file descriptors", "[sockets]") {
  auto& loop = *this->loop;
  if (loop.capabilities().supports("add_reader")) return;
  CHECK_THROWS_AS(loop.add_reader(0, [] {}), NotSupportedError);
  CHECK_FALSE(loop.remove_reader(0));
  CHECK_THROWS_AS(loop.run_until_complete(loop.sock_sendfile(0, 0)), NotSupportedError);
  CHECK_THROWS_AS(loop.run_until_complete(loop.sock_recv(0, 1)), NotSupportedError);
}

#ifndef __EMSCRIPTEN__
#include "peer.hpp"

using NativeFixture = LoopFixture<PlatformLoop>;

static int nonblocking_socket(int family, int type) { return ::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0); }

// A non-blocking TCP socket listening on 127.0.0.1 (port chosen by the kernel).
static int loopback_listener(std::uint16_t* port) {
  int listener = nonblocking_socket(AF_INET, SOCK_STREAM);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(listener, 8) == 0);
  socklen_t len = sizeof a;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return listener;
}

TEST_CASE_METHOD(NativeFixture, "add_reader/add_writer: level-triggered callbacks, replace, remove", "[sockets]") {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
  int writable = 0, first = 0, second = 0;
  loop->add_writer(sv[0], [&] {
    ++writable;
    CHECK(loop->remove_writer(sv[0]));
    CHECK(::write(sv[0], "ping", 4) == 4);
  });
  loop->add_reader(sv[1], [&] { ++first; });  // replaced before it can run
  loop->add_reader(sv[1], [&] {
    ++second;
    char buf[16];
    CHECK(::read(sv[1], buf, sizeof buf) == 4);
    CHECK(loop->remove_reader(sv[1]));
    loop->stop();
  });
  loop->run_forever();
  CHECK(writable == 1);
  CHECK(first == 0);
  CHECK(second == 1);
  CHECK_FALSE(loop->remove_reader(sv[1]));
  CHECK_FALSE(loop->remove_writer(sv[0]));
  CHECK_THROWS_AS(loop->add_reader(-1, [] {}), ValueError);
  ::close(sv[0]);
  ::close(sv[1]);
}

static Coro<void> tcp_roundtrip(EventLoop& loop, int listener, std::uint16_t port) {
  int client = nonblocking_socket(AF_INET, SOCK_STREAM);
  Task<std::pair<int, SocketAddress>> accepting = loop.create_task(loop.sock_accept(listener));
  co_await loop.sock_connect(client, SocketAddress::ip("127.0.0.1", port));
  std::pair<int, SocketAddress> conn = co_await accepting;
  CHECK(conn.second.host() == "127.0.0.1");
  const std::string big(3 << 20, 'q');  // more than the socket buffers: sendall must wait
  Task<void> sending = loop.create_task(loop.sock_sendall(client, big));
  std::size_t got = 0;
  std::string chunk;
  while (got < big.size()) {
    chunk = co_await loop.sock_recv(conn.first, 65536);
    REQUIRE_FALSE(chunk.empty());
    got += chunk.size();
  }
  co_await sending;
  ::shutdown(client, SHUT_WR);
  std::array<char, 8> buf;
  CHECK(co_await loop.sock_recv_into(conn.first, std::span<char>(buf)) == 0);  // EOF
  ::close(client);
  ::close(conn.first);
  CHECK(got == big.size());
}

TEST_CASE_METHOD(NativeFixture, "sock_accept, sock_connect, sock_sendall, sock_recv over TCP", "[sockets]") {
  std::uint16_t port = 0;
  int listener = loopback_listener(&port);
  loop->run_until_complete(tcp_roundtrip(*loop, listener, port));
  ::close(listener);
}

static Coro<void> udp_roundtrip(EventLoop& loop, int a, int b, std::uint16_t bport) {
  Task<std::pair<std::string, SocketAddress>> receiving = loop.create_task(loop.sock_recvfrom(b, 1024));
  CHECK(co_await loop.sock_sendto(a, "datagram", SocketAddress::ip("127.0.0.1", bport)) == 8);
  std::pair<std::string, SocketAddress> r = co_await receiving;
  CHECK(r.first == "datagram");
  CHECK(r.second.family == AddressFamily::inet);
}

TEST_CASE_METHOD(NativeFixture, "sock_sendto and sock_recvfrom over UDP", "[sockets]") {
  int a = nonblocking_socket(AF_INET, SOCK_DGRAM), b = nonblocking_socket(AF_INET, SOCK_DGRAM);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(b, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  ::getsockname(b, reinterpret_cast<sockaddr*>(&addr), &len);
  loop->run_until_complete(udp_roundtrip(*loop, a, b, ntohs(addr.sin_port)));
  ::close(a);
  ::close(b);
}

static Coro<void> refused(EventLoop& loop, int s, std::uint16_t port, std::error_code* got) {
  try {
    co_await loop.sock_connect(s, SocketAddress::ip("127.0.0.1", port));
  } catch (const std::system_error& e) {
    *got = e.code();
  }
}

TEST_CASE_METHOD(NativeFixture, "sock_connect to a closed port raises ECONNREFUSED", "[sockets][faults]") {
  int s = nonblocking_socket(AF_INET, SOCK_STREAM);
  std::error_code got;
  loop->run_until_complete(refused(*loop, s, unused_port(), &got));
  CHECK(got == std::errc::connection_refused);
  ::close(s);
}
static int temp_file_with(const std::string& content) {
  char path[] = "/tmp/eddy-sendfile-XXXXXX";
  int fd = ::mkstemp(path);
  ::unlink(path);
  std::size_t off = 0;
  while (off < content.size()) off += static_cast<std::size_t>(::write(fd, content.data() + off, content.size() - off));
  return fd;
}

static Coro<void> sendfile_zero_copy(EventLoop& loop, int listener, std::uint16_t port, int file, std::string* got) {
  int client = nonblocking_socket(AF_INET, SOCK_STREAM);
  Task<std::pair<int, SocketAddress>> accepting = loop.create_task(loop.sock_accept(listener));
  co_await loop.sock_connect(client, SocketAddress::ip("127.0.0.1", port));
  std::pair<int, SocketAddress> conn = co_await accepting;
  Task<std::size_t> sending = loop.create_task(loop.sock_sendfile(client, file, 1000, std::size_t(2) << 20));
  while (got->size() < (std::size_t(2) << 20)) {
    std::string chunk = co_await loop.sock_recv(conn.first, 1 << 16);
    REQUIRE_FALSE(chunk.empty());
    *got += chunk;
  }
  CHECK(co_await sending == (std::size_t(2) << 20));
  ::close(client);
  ::close(conn.first);
}

TEST_CASE_METHOD(NativeFixture, "sock_sendfile: zero-copy from an offset, file position after", "[sockets][sendfile]") {
  const std::string content = peer_pattern(0, 3 << 20);
  int file = temp_file_with(content);
  std::uint16_t port = 0;
  int listener = loopback_listener(&port);
  std::string got;
  loop->run_until_complete(sendfile_zero_copy(*loop, listener, port, file, &got));
  CHECK(got == content.substr(1000, 2 << 20));
  CHECK(::lseek(file, 0, SEEK_CUR) == 1000 + (2 << 20));
  ::close(listener);
  ::close(file);
}

static Coro<void> sendfile_from_pipe(EventLoop& loop, int sock, int peer, int pipe_read, bool fallback, std::string* got) {
  std::size_t sent = co_await loop.sock_sendfile(sock, pipe_read, 0, std::nullopt, fallback);
  ::shutdown(sock, SHUT_WR);
  for (;;) {
    std::string chunk = co_await loop.sock_recv(peer, 4096);
    if (chunk.empty()) break;
    *got += chunk;
  }
  CHECK(sent == got->size());
}

TEST_CASE_METHOD(NativeFixture, "sock_sendfile: the fallback, and SendfileNotAvailableError without it",
                 "[sockets][sendfile]") {
  const bool fallback = GENERATE(true, false);
  int sv[2], p[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
  REQUIRE(::pipe(p) == 0);
  REQUIRE(::write(p[1], "piped data", 10) == 10);
  ::close(p[1]);  // the kernel cannot sendfile from a pipe
  std::string got;
  if (fallback) {
    loop->run_until_complete(sendfile_from_pipe(*loop, sv[0], sv[1], p[0], true, &got));
    CHECK(got == "piped data");
  } else {
    CHECK_THROWS_AS(loop->run_until_complete(sendfile_from_pipe(*loop, sv[0], sv[1], p[0], false, &got)),
                    SendfileNotAvailableError);
  }
  ::close(p[0]);
  ::close(sv[0]);
  ::close(sv[1]);
}

struct Keeper : Protocol {
  explicit Keeper(EventLoop& loop) : lost(loop.create_future<void>()) {}
  Ref<Transport> transport;
  std::string data;
  Future<void> lost;
  void connection_made(Ref<Transport> t) override { transport = t; }
  void data_received(std::string_view d) override { data += d; }
  void connection_lost(std::exception_ptr) override {
    transport.reset();
    lost.set_result();
  }
};

static Coro<void> sendfile_transport(EventLoop& loop, std::uint16_t port, int file, std::shared_ptr<Keeper> k,
                                     std::size_t* sent) {
  ProtocolFactory factory = [k] { return k; };
  Connection c = co_await loop.create_connection(factory, "127.0.0.1", port);
  c.first->set_write_buffer_limits(64 * 1024);
  *sent = co_await loop.sendfile(Ref<WriteTransport>(c.first.get()), file);
  CHECK(c.first->get_protocol() == k);  // the user's protocol is back
  CHECK(c.first->is_reading());
  c.first->write_eof();
  co_await k->lost;
}

TEST_CASE_METHOD(NativeFixture, "sendfile on a transport: through an asyncio echo server", "[streams][sendfile][peer]") {
  const std::string content = peer_pattern(0, 3 << 20);
  int file = temp_file_with(content);
  PythonPeer peer(strings("echo-server", "tcp:127.0.0.1:0"));
  const auto port = static_cast<std::uint16_t>(std::stoi(peer.ready()));
  auto k = std::make_shared<Keeper>(*loop);
  std::size_t sent = 0;
  loop->run_until_complete(sendfile_transport(*loop, port, file, k, &sent));
  CHECK(sent == content.size());
  CHECK(k->data == content);
  ::close(file);
  peer.finish();
}
#endif  // __EMSCRIPTEN__
