// add_reader/add_writer and the sock_* coroutines on raw non-blocking sockets: a socketpair,
// a listening socket accepted with sock_accept and connected with sock_connect, UDP with
// sock_sendto/sock_recvfrom, and a refused sock_connect. Loop kinds without sockets refuse.
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstring>
#include <thread>

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

// libuv adds a watched fd to epoll only when it next polls, and aborted the process if the fd had
// been closed meanwhile. asyncio's selector never reports such an fd; nor does Eddy now.
TEST_CASE_METHOD(NativeFixture, "add_reader then closing the fd before the loop polls",
                 "[sockets]") {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
  int fired = 0;
  loop->add_reader(sv[0], [&] { ++fired; });
  loop->add_writer(sv[1], [&] { ++fired; });
  ::close(sv[0]);
  ::close(sv[1]);
  loop->run_until_complete(sleep(0.02));
  CHECK(fired == 0);
  CHECK(loop->remove_reader(sv[0]));
  CHECK(loop->remove_writer(sv[1]));
  CHECK_THROWS_WITH(loop->remove_reader(-1), "Invalid file descriptor: -1");
  CHECK_THROWS_WITH(loop->remove_writer(-2), "Invalid file descriptor: -2");
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
  // (gcc 12 evaluates a co_await inside CHECK more than once: results are named first.)
  const std::size_t at_eof = co_await loop.sock_recv_into(conn.first, std::span<char>(buf));
  CHECK(at_eof == 0);  // EOF
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

// asyncio's debug mode refuses a blocking socket in every sock_* call, before touching it; a
// non-socket descriptor is an OSError. Outside debug mode the call goes ahead.
TEST_CASE_METHOD(NativeFixture, "sock_*: debug mode refuses a blocking socket", "[sockets]") {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);  // blocking
  auto message_of = [&](auto&& call) -> std::string {
    try {
      loop->run_until_complete(call());
    } catch (const ValueError& e) {
      return e.what();
    }
    return "no ValueError";
  };
  loop->set_debug(true);
  const std::string refused = "the socket must be non-blocking";
  CHECK(message_of([&] { return loop->sock_recv(sv[0], 10); }) == refused);
  CHECK(message_of([&] { return loop->sock_sendall(sv[0], "x"); }) == refused);
  CHECK(message_of([&] { return loop->sock_accept(sv[0]); }) == refused);
  CHECK(message_of([&] {
          return loop->sock_connect(sv[0], SocketAddress::unix_path("/nonexistent"));
        }) == refused);
  CHECK(message_of([&] {
          return loop->sock_sendto(sv[0], "x", SocketAddress::ip("127.0.0.1", 9));
        }) == refused);
  CHECK(message_of([&] { return loop->sock_recvfrom(sv[0], 10); }) == refused);
  CHECK(message_of([&] { return loop->sock_sendfile(sv[0], 0); }) == refused);
  char byte = 0;
  CHECK(::recv(sv[1], &byte, 1, MSG_DONTWAIT) == -1);  // refused before sending anything
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  try {
    loop->run_until_complete(loop->sock_recv(fds[0], 1));
    FAIL("sock_recv on a pipe did not throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == std::errc::not_a_socket);
  }
  loop->set_debug(false);
  REQUIRE(::write(sv[1], "y", 1) == 1);
  CHECK(loop->run_until_complete(loop->sock_recv(sv[0], 10)) == "y");
  for (int fd : {sv[0], sv[1], fds[0], fds[1]}) ::close(fd);
}

static Coro<void> udp_roundtrip(EventLoop& loop, int a, int b, std::uint16_t bport) {
  Task<std::pair<std::string, SocketAddress>> receiving = loop.create_task(loop.sock_recvfrom(b, 1024));
  const std::size_t sent =
      co_await loop.sock_sendto(a, "datagram", SocketAddress::ip("127.0.0.1", bport));
  CHECK(sent == 8);
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

static Coro<void> abstract_roundtrip(EventLoop& loop, int a, int b, SocketAddress to,
                                     std::pair<std::string, SocketAddress>* got) {
  Task<std::pair<std::string, SocketAddress>> receiving =
      loop.create_task(loop.sock_recvfrom(b, 1024));
  co_await loop.sock_sendto(a, "abstract", to);
  *got = co_await receiving;
}

static int bind_abstract(int fd, const std::string& name) {
  sockaddr_un sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, name.data(), name.size());
  return ::bind(fd, reinterpret_cast<sockaddr*>(&sa),
                static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size()));
}

// Linux abstract names are exactly their bytes (no padding to sun_path's size), as Python's
// socket module passes them: sending to one reaches it, and the sender's comes back whole.
TEST_CASE_METHOD(NativeFixture, "sock_sendto and sock_recvfrom with abstract AF_UNIX names",
                 "[sockets][unix]") {
  const std::string tag = std::to_string(::getpid());
  const std::string dest = std::string(1, '\0') + "eddy-abstract-dest-" + tag;
  const std::string src = std::string(1, '\0') + "eddy-abstract-src-" + tag;
  const int a = nonblocking_socket(AF_UNIX, SOCK_DGRAM);
  const int b = nonblocking_socket(AF_UNIX, SOCK_DGRAM);
  REQUIRE(bind_abstract(b, dest) == 0);
  REQUIRE(bind_abstract(a, src) == 0);
  std::pair<std::string, SocketAddress> got;
  loop->run_until_complete(abstract_roundtrip(*loop, a, b, SocketAddress::unix_path(dest), &got));
  CHECK(got.first == "abstract");
  CHECK(got.second == SocketAddress::unix_path(src));
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
  const std::size_t sent_all = co_await sending;
  CHECK(sent_all == (std::size_t(2) << 20));
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

// Nothing to send (an offset past the end of the file): 0, and the file position stays where it
// was, as asyncio moves it only when bytes went out.
static Coro<void> sendfile_past_end(EventLoop& loop, int listener, std::uint16_t port, int file,
                                    std::size_t* sent) {
  int client = nonblocking_socket(AF_INET, SOCK_STREAM);
  Task<std::pair<int, SocketAddress>> accepting = loop.create_task(loop.sock_accept(listener));
  co_await loop.sock_connect(client, SocketAddress::ip("127.0.0.1", port));
  std::pair<int, SocketAddress> conn = co_await accepting;
  *sent = co_await loop.sock_sendfile(client, file, 5000, std::nullopt);
  ::close(client);
  ::close(conn.first);
}

TEST_CASE_METHOD(NativeFixture, "sock_sendfile: nothing sent leaves the file position",
                 "[sockets][sendfile]") {
  int file = temp_file_with("0123456789");
  ::lseek(file, 7, SEEK_SET);
  std::uint16_t port = 0;
  int listener = loopback_listener(&port);
  std::size_t sent = 99;
  loop->run_until_complete(sendfile_past_end(*loop, listener, port, file, &sent));
  CHECK(sent == 0);
  CHECK(::lseek(file, 0, SEEK_CUR) == 7);
  ::close(listener);
  ::close(file);
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

// Zero-copy on a socket transport: written bytes, then the file, then more writes, to a Python
// reader that pauses so that the socket fills (sendfile must wait for writability).
struct FileSender : Protocol {
  explicit FileSender(EventLoop& loop)
      : connected(loop.create_future<void>()), lost(loop.create_future<void>()) {}
  Ref<Transport> transport;
  Future<void> connected, lost;
  std::exception_ptr lost_with;
  void connection_made(Ref<Transport> t) override {
    transport = t;
    connected.set_result();
  }
  void connection_lost(std::exception_ptr exc) override {
    lost_with = exc;
    lost.set_result();
  }
};

struct NativeSendfileRun {
  static constexpr std::size_t kJunk = 1000, kBefore = 4 << 20, kFile = 24 << 20, kAfter = 1 << 20;
  std::size_t sent = 0;
  std::string write_refused, second_refused, peer_said;
  bool reading_after = false;
};

static Coro<void> sendfile_between_writes(EventLoop& loop, bool unix_socket, int file,
                                          NativeSendfileRun* run) {
  using R = NativeSendfileRun;
  auto p = std::make_shared<FileSender>(loop);
  ProtocolFactory factory = [p] { return p; };
  Ref<Server> server;
  std::string addr;
  if (unix_socket) {
    const std::string path = "/tmp/eddy-test-" + std::to_string(::getpid()) + "-sendfile.sock";
    server = co_await loop.create_unix_server(factory, path);
    addr = "unix:" + path;
  } else {
    server = co_await loop.create_server(factory, "127.0.0.1", 0);
    addr = "tcp:127.0.0.1:" + std::to_string(server->sockets()[0].address.port);
  }
  PythonPeer peer(strings("slow-reader", addr, std::to_string(R::kBefore + R::kFile + R::kAfter)));
  co_await p->connected;
  Ref<Transport> t = p->transport;
  Ref<WriteTransport> w(t.get());
  t->write(peer_pattern(0, R::kBefore));  // still queued when sendfile starts: it goes first
  Task<std::size_t> sending = loop.create_task(loop.sendfile(w, file, R::kJunk, R::kFile, false));
  co_await sleep(0);
  try {
    t->write("x");
  } catch (const RuntimeError& e) {
    run->write_refused = e.what();
  }
  try {
    co_await loop.sendfile(w, file, 0, 1, false);
  } catch (const RuntimeError& e) {
    run->second_refused = e.what();
  }
  run->sent = co_await sending;
  run->reading_after = t->is_reading();
  t->write(peer_pattern(R::kBefore + R::kFile, R::kAfter));
  t->close();
  co_await p->lost;
  p->transport.reset();
  server->close();
  co_await server->wait_closed();
  run->peer_said = peer.finish();
}

TEST_CASE_METHOD(
    NativeFixture,
    "sendfile on a socket transport: zero-copy between writes, to a slow asyncio reader",
    "[streams][sendfile][peer]") {
  using R = NativeSendfileRun;
  const bool unix_socket = GENERATE(false, true);
  CAPTURE(unix_socket);
  // The file holds the middle of the stream after kJunk bytes that must not be sent.
  const std::string content =
      std::string(R::kJunk, '#') + peer_pattern(R::kBefore, R::kFile) + "trailing";
  int file = temp_file_with(content);
  R run;
  loop->run_until_complete(sendfile_between_writes(*loop, unix_socket, file, &run));
  CHECK(run.sent == R::kFile);
  CHECK(::lseek(file, 0, SEEK_CUR) == static_cast<off_t>(R::kJunk + R::kFile));
  CHECK(run.write_refused == "unable to write; sendfile is in progress");
  CHECK(run.second_refused == "sendfile is already in progress on this transport");
  CHECK(run.reading_after);
  CHECK(run.peer_said == "OK " + std::to_string(R::kBefore + R::kFile + R::kAfter) + "\n");
  ::close(file);
}

// The peer resets the connection in the middle: sendfile raises the connection error, the
// transport is closed with it, and the file position says how far it got.
static Coro<void> sendfile_into_reset(EventLoop& loop, std::uint16_t port, int file,
                                      std::error_code* error, std::shared_ptr<FileSender> p) {
  ProtocolFactory factory = [p] { return p; };
  Connection c = co_await loop.create_connection(factory, "127.0.0.1", port);
  try {
    co_await loop.sendfile(Ref<WriteTransport>(c.first.get()), file, 0, std::nullopt, false);
  } catch (const std::system_error& e) {
    *error = e.code();
  }
  CHECK(c.first->is_closing());
  co_await p->lost;
  p->transport.reset();
}

TEST_CASE_METHOD(NativeFixture, "sendfile on a transport: the peer resets in the middle",
                 "[streams][sendfile][faults]") {
  const std::size_t size = 64 << 20;
  int file = temp_file_with(peer_pattern(0, size));
  PythonPeer peer(strings("reset-server", "tcp:127.0.0.1:0"));
  auto p = std::make_shared<FileSender>(*loop);
  std::error_code error;
  loop->run_until_complete(sendfile_into_reset(
      *loop, static_cast<std::uint16_t>(std::stoi(peer.ready())), file, &error, p));
  CHECK((error == std::errc::connection_reset || error == std::errc::broken_pipe));
  CHECK(p->lost_with != nullptr);  // connection_lost got the error
  const off_t position = ::lseek(file, 0, SEEK_CUR);
  CHECK(position > 0);
  CHECK(position < static_cast<off_t>(size));
  ::close(file);
  peer.finish();
}

// Pipes take the fallback; without it, asyncio's RuntimeError.
static Coro<void> sendfile_to_pipe(EventLoop& loop, int write_end, int file, std::size_t* sent,
                                   std::string* refused) {
  auto p = std::make_shared<FileSender>(loop);
  ProtocolFactory factory = [p] { return p; };
  WritePipeConnection c = co_await loop.connect_write_pipe(factory, write_end);
  Ref<WriteTransport> w(c.first.get());
  try {
    co_await loop.sendfile(w, file, 0, std::nullopt, false);
  } catch (const SendfileNotAvailableError&) {
    *refused = "SendfileNotAvailableError";
  } catch (const RuntimeError& e) {
    *refused = e.what();
  }
  *sent = co_await loop.sendfile(w, file);
  c.first->close();
  co_await p->lost;
  p->transport.reset();
}

TEST_CASE_METHOD(NativeFixture,
                 "sendfile on a pipe transport: the fallback, RuntimeError without it",
                 "[streams][sendfile]") {
  const std::string content = peer_pattern(0, 200000);
  int file = temp_file_with(content);
  PipeDrain drain;
  std::size_t sent = 0;
  std::string refused;
  loop->run_until_complete(sendfile_to_pipe(*loop, drain.write_end(), file, &sent, &refused));
  const std::string& got = drain.join();
  CHECK(refused == "fallback is disabled and native sendfile is not supported for this transport");
  CHECK(sent == content.size());
  CHECK(got == content);
  ::close(file);
}
// The fallback lends the transport a protocol of its own. Flow control the user's protocol missed
// meanwhile is made up for when it comes back (a StreamWriter paused before would otherwise wait
// for a resume_writing that already went to the lent protocol), and after connection_lost the
// transport does not take the user's protocol back.
struct FlowRecorder : FileSender {
  using FileSender::FileSender;
  int pauses = 0, resumes = 0;
  void pause_writing() override { ++pauses; }
  void resume_writing() override { ++resumes; }
};

static Coro<void> sendfile_after_pause(EventLoop& loop, int write_end, int file,
                                       std::shared_ptr<FlowRecorder> p, std::size_t* sent) {
  ProtocolFactory factory = [p] { return p; };
  WritePipeConnection c = co_await loop.connect_write_pipe(factory, write_end);
  Ref<WriteTransport> w(c.first.get());
  w->write(std::string(std::size_t(512) << 10, 'x'));  // more than the pipe holds: paused
  CHECK(p->pauses == 1);
  CHECK(p->resumes == 0);
  *sent = co_await loop.sendfile(w, file);
  CHECK(p->resumes == 1);  // the fallback waited for the buffer to drain: resumed
  CHECK(w->get_protocol() == p);
  c.first->close();
  co_await p->lost;
  CHECK(w->get_protocol() == nullptr);
  p->transport.reset();
}

static Coro<void> sendfile_into_closed_pipe(EventLoop& loop, int write_end, int file,
                                            std::shared_ptr<FlowRecorder> p, bool* failed) {
  ProtocolFactory factory = [p] { return p; };
  WritePipeConnection c = co_await loop.connect_write_pipe(factory, write_end);
  Ref<WriteTransport> w(c.first.get());
  try {
    co_await loop.sendfile(w, file);
  } catch (const std::system_error&) {
    *failed = true;
  }
  co_await p->lost;  // through the lent protocol
  CHECK(w->get_protocol() == nullptr);
  CHECK(p->lost_with != nullptr);
  p->transport.reset();
}

TEST_CASE_METHOD(NativeFixture,
                 "sendfile fallback: flow control made up for, nothing re-attached after loss",
                 "[streams][sendfile]") {
  const std::string content = peer_pattern(0, 300000);
  int file = temp_file_with(content);
  SECTION("paused before the call, resumed during it") {
    PipeDrain drain(50000);  // waits first, so that the first write fills the pipe
    auto p = std::make_shared<FlowRecorder>(*loop);
    std::size_t sent = 0;
    loop->run_until_complete(sendfile_after_pause(*loop, drain.write_end(), file, p, &sent));
    CHECK(sent == content.size());
    CHECK(drain.join().size() == content.size() + (std::size_t(512) << 10));
  }
  SECTION("the reader goes away in the middle") {
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    std::thread reader([&] {
      char buf[4096];
      (void)::read(fds[0], buf, sizeof buf);
      ::close(fds[0]);
    });
    auto p = std::make_shared<FlowRecorder>(*loop);
    bool failed = false;
    loop->run_until_complete(sendfile_into_closed_pipe(*loop, fds[1], file, p, &failed));
    reader.join();
    CHECK(failed);
  }
  ::close(file);
}
#endif  // __EMSCRIPTEN__
