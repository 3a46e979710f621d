// TLS over TCP (OpenSSL via memory BIOs in native/): a client against `openssl s_server`, a
// server against Python's ssl client, certificate verification failure and the handshake
// timeout. Certificates are made at test time with the openssl command.
#include "support.hpp"

using namespace eddy;

#ifndef __EMSCRIPTEN__
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>

#include "peer.hpp"
#include "tls_certs.hpp"

using NativeFixture = LoopFixture<PlatformLoop>;

namespace {

// A client's certificate for mutual TLS (its own trust anchor).
const TestCert& client_cert() {
  static TestCert c("tls-client", "-subj /CN=eddy-client");
  return c;
}

// A certificate with every field Python's getpeercert() shows: a multi-valued RDN, each kind of
// subject alternative name, OCSP and CA issuer URLs, a CRL distribution point.
const TestCert& rich_cert() {
  static TestCert c(
      "tls-rich",
      "-subj '/C=DE/O=Eddy Tests/OU=Loop+OU=Core/CN=localhost'"
      " -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:2001:db8::1,email:a@b.example,"
      "URI:http://u.example/'"
      " -addext "
      "'authorityInfoAccess=OCSP;URI:http://ocsp.example/,caIssuers;URI:http://ca.example/ca.crt'"
      " -addext 'crlDistributionPoints=URI:http://crl.example/x.crl'");
  return c;
}

// `openssl s_server -rev`: answers each line reversed.
class OpensslServer {
 public:
  explicit OpensslServer(std::uint16_t port) {
    int fds[2];
    ::pipe(fds);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    std::vector<std::string> a = strings("openssl", "s_server", "-accept", std::to_string(port), "-cert",
                                         test_cert().cert, "-key", test_cert().key, "-rev", "-naccept", "1");
    std::vector<char*> argv;
    for (auto& s : a) argv.push_back(s.data());
    argv.push_back(nullptr);
    posix_spawnp(&pid_, "openssl", &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(fds[1]);
    out_ = fds[0];
    std::string line;
    char c;
    while (line.find("ACCEPT") == std::string::npos && ::read(out_, &c, 1) == 1) line += c;
  }
  ~OpensslServer() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    ::close(out_);
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
};

struct Collect : Protocol {
  explicit Collect(EventLoop& loop) : lost(loop.create_future<void>()) {}
  Ref<Transport> transport;
  std::string data;
  std::size_t want = 0;
  Future<void> lost;
  void connection_made(Ref<Transport> t) override { transport = t; }
  void data_received(std::string_view d) override {
    data += d;
    if (want && data.size() >= want) transport->close();
  }
  void connection_lost(std::exception_ptr) override {
    transport.reset();
    ++lost_calls;
    lost.set_result();
  }
  int lost_calls = 0;
  int events_lost() const { return lost_calls; }
};

}  // namespace

static Coro<void> tls_client(EventLoop& loop, std::uint16_t port, std::shared_ptr<Collect> c,
                             TlsCipher* cipher, PeerCertificate* peercert) {
  TlsContext tls{.ca_file = test_cert().cert};
  ProtocolFactory factory = [c] { return c; };
  Connection conn = co_await loop.create_connection(factory, "localhost", port, {.ssl = &tls});
  *cipher = std::any_cast<TlsCipher>(conn.first->get_extra_info("cipher"));
  *peercert = std::any_cast<PeerCertificate>(conn.first->get_extra_info("peercert"));
  CHECK_FALSE(conn.first->can_write_eof());
  CHECK_THROWS_AS(conn.first->write_eof(), NotSupportedError);
  c->want = 12;
  conn.first->write("hello, tls!\n");
  co_await c->lost;
}

TEST_CASE_METHOD(NativeFixture, "TLS client: openssl s_server, verified certificate", "[tls][peer]") {
  const std::uint16_t port = unused_port();
  OpensslServer server(port);
  auto c = std::make_shared<Collect>(*loop);
  TlsCipher cipher;
  PeerCertificate peercert;
  loop->run_until_complete(tls_client(*loop, port, c, &cipher, &peercert));
  CHECK(c->data.rfind("!slt ,olleh", 0) == 0);
  CHECK_FALSE(cipher.name.empty());
  using Attribute = PeerCertificate::Attribute;
  CHECK(peercert.subject == PeerCertificate::Name{{Attribute{"commonName", "localhost"}}});
  CHECK(peercert.subject_alt_name == std::vector<Attribute>{{"DNS", "localhost"}});
}

static Coro<void> tls_expect_failure(EventLoop& loop, std::uint16_t port, const TlsContext* tls, double timeout,
                                     std::string* what, std::error_code* code) {
  ProtocolFactory factory = [] { return std::make_shared<Protocol>(); };
  try {
    co_await loop.create_connection(factory, "localhost", port, {.ssl = tls, .ssl_handshake_timeout = timeout});
  } catch (const std::system_error& e) {
    *what = e.what();
    *code = e.code();
  }
}

TEST_CASE_METHOD(NativeFixture, "TLS handshake failure: an untrusted certificate", "[tls][faults]") {
  const std::uint16_t port = unused_port();
  OpensslServer server(port);
  TlsContext untrusted{};  // the system's trust anchors: our self-signed certificate is not among them
  std::string what;
  std::error_code code;
  loop->run_until_complete(tls_expect_failure(*loop, port, &untrusted, 10, &what, &code));
  INFO(what);
  CHECK(what.find("certificate verify failed") != std::string::npos);
}

TEST_CASE_METHOD(NativeFixture, "TLS handshake timeout: a server that never answers", "[tls][faults]") {
  int silent = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(silent, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::listen(silent, 4);  // the kernel accepts; nobody speaks TLS
  socklen_t len = sizeof a;
  ::getsockname(silent, reinterpret_cast<sockaddr*>(&a), &len);
  TlsContext tls{.ca_file = test_cert().cert};
  std::string what;
  std::error_code code;
  // A whole number of seconds, printed as Python prints a float ("1.0", not "1").
  loop->run_until_complete(tls_expect_failure(*loop, ntohs(a.sin_port), &tls, 1.0, &what, &code));
  CHECK(code == std::errc::connection_aborted);
  CHECK(what.find("SSL handshake is taking longer than 1.0 seconds: aborting the connection") !=
        std::string::npos);
  ::close(silent);
}

struct TlsEcho : Protocol {
  explicit TlsEcho(Future<void> done) : done(std::move(done)) {}
  Future<void> done;
  Ref<Transport> transport;
  void connection_made(Ref<Transport> t) override { transport = t; }
  void data_received(std::string_view d) override { transport->write(d); }
  void connection_lost(std::exception_ptr) override {
    transport.reset();
    if (!done.done()) done.set_result();
  }
};

static Coro<void> tls_server(EventLoop& loop, std::string* said) {
  TlsContext tls{.server = true, .cert_file = test_cert().cert, .key_file = test_cert().key};
  Future<void> done = loop.create_future<void>();
  ProtocolFactory factory = [done] { return std::make_shared<TlsEcho>(done); };
  Ref<Server> server = co_await loop.create_server(factory, "127.0.0.1", 0, {.ssl = &tls});
  const std::uint16_t port = server->sockets()[0].address.port;
  PythonPeer peer(strings("tls-client", "tcp:127.0.0.1:" + std::to_string(port), "300000", test_cert().cert));
  co_await done;
  server->close();
  co_await server->wait_closed();
  *said = peer.finish();
}

TEST_CASE_METHOD(NativeFixture, "TLS server: Python's ssl client echoes 300 KB", "[tls][peer][server]") {
  std::string said;
  loop->run_until_complete(tls_server(*loop, &said));
  CHECK(said.rfind("OK TLSv1.3", 0) == 0);
}

// A server's certificate is loaded before it listens, as Python's load_cert_chain loads it when
// the SSLContext is made: a missing file, or a key of another certificate, fails create_server
// with the file named. While serving, the files are read again when they change on disk; one
// that became unreadable fails that connection (reported), and the server serves on.
static Coro<std::string> create_server_error(EventLoop& loop, TlsContext tls) {
  Future<void> unused = loop.create_future<void>();
  ProtocolFactory factory = [unused] { return std::make_shared<TlsEcho>(unused); };
  ServerOptions o;
  o.ssl = &tls;
  std::string what = "created";
  try {
    Ref<Server> server = co_await loop.create_server(factory, "127.0.0.1", 0, o);
    server->close();
  } catch (const std::system_error& e) {
    what = e.what();
  }
  unused.cancel();
  co_return what;
}

static Coro<std::string> tls_hello(EventLoop& loop, std::uint16_t port, const std::string& ca) {
  TlsContext tls{.ca_file = ca};
  auto c = std::make_shared<Collect>(loop);
  ProtocolFactory factory = [c] { return c; };
  ConnectionOptions o;
  o.ssl = &tls;
  std::string outcome;
  try {
    Connection conn = co_await loop.create_connection(factory, "localhost", port, o);
    c->want = 6;
    conn.first->write("hello\n");
    co_await c->lost;
    outcome = c->data;
  } catch (const std::system_error&) {
    outcome = "failed";
  }
  co_return outcome;
}

static Coro<void> certificate_goes_missing(EventLoop& loop, std::vector<std::string>* reported) {
  const std::string dir = "/tmp/eddy-tls-rotate-" + std::to_string(::getpid());
  REQUIRE(std::system(("mkdir -p " + dir + " && cp " + test_cert().cert + " " + dir +
                       "/cert.pem && cp " + test_cert().key + " " + dir + "/key.pem")
                          .c_str()) == 0);
  const std::string cert = dir + "/cert.pem", key = dir + "/key.pem";  // TlsContext has views
  TlsContext tls{.server = true, .cert_file = cert, .key_file = key};
  Future<void> unused = loop.create_future<void>();
  auto accepts = std::make_shared<int>(0);
  ProtocolFactory factory = [unused, accepts] {
    ++*accepts;
    return std::make_shared<TlsEcho>(unused);
  };
  ServerOptions o;
  o.ssl = &tls;
  Ref<Server> server = co_await loop.create_server(factory, "127.0.0.1", 0, o);
  const std::uint16_t port = server->sockets()[0].address.port;
  // (gcc 12: a co_await inside CHECK is run again by the macro's expansion: named results.)
  std::string before = co_await tls_hello(loop, port, test_cert().cert);
  CHECK(before == "hello\n");
  CHECK(*accepts == 1);
  ::rename(cert.c_str(), (dir + "/cert.moved").c_str());
  std::string missing = co_await tls_hello(loop, port, test_cert().cert);
  CHECK(missing == "failed");
  CHECK(*accepts == 2);
  CHECK(reported->size() == 1);
  ::rename((dir + "/cert.moved").c_str(), cert.c_str());
  std::string after = co_await tls_hello(loop, port, test_cert().cert);
  CHECK(after == "hello\n");  // still serving
  server->close();
  co_await server->wait_closed();
  unused.cancel();
  std::system(("rm -rf " + dir).c_str());
}

TEST_CASE_METHOD(NativeFixture, "TLS server: its certificate is loaded before it listens",
                 "[tls][server][faults]") {
  SECTION("a missing certificate file is named") {
    const std::string what = loop->run_until_complete(create_server_error(
        *loop,
        TlsContext{
            .server = true, .cert_file = "/nonexistent/cert.pem", .key_file = test_cert().key}));
    CHECK(what.find("load certificate /nonexistent/cert.pem") != std::string::npos);
  }
  SECTION("a key of another certificate is refused") {
    static TestCert other("tls-other");
    const std::string what = loop->run_until_complete(create_server_error(
        *loop, TlsContext{.server = true, .cert_file = test_cert().cert, .key_file = other.key}));
    CHECK(what.find("load private key " + other.key) != std::string::npos);
    CHECK(what.find("key values mismatch") != std::string::npos);
  }
  SECTION("a certificate that goes missing while serving fails that connection only") {
    std::vector<std::string> reported;
    loop->set_exception_handler(
        [&](EventLoop&, const ExceptionContext& c) { reported.push_back(c.message); });
    loop->run_until_complete(certificate_goes_missing(*loop, &reported));
    CHECK(reported ==
          std::vector<std::string>{"Error on transport creation for incoming connection"});
  }
}

// A plain-HTTP request to a TLS server: the handshake fails and the connection is dropped. As
// in asyncio (an SSLError is an OSError), that is logged in debug mode only, never sent to the
// exception handler (the fixture fails the test on any report).
static Coro<void> plain_request_to_tls(EventLoop& loop, std::string* answer) {
  TlsContext tls{.server = true, .cert_file = test_cert().cert, .key_file = test_cert().key};
  Future<void> unused = loop.create_future<void>();
  ProtocolFactory factory = [unused] { return std::make_shared<TlsEcho>(unused); };
  Ref<Server> server = co_await loop.create_server(factory, "127.0.0.1", 0, {.ssl = &tls});
  StreamPair pair = co_await open_connection("127.0.0.1", server->sockets()[0].address.port);
  pair.second->write("GET / HTTP/1.0\r\n\r\n");
  try {
    *answer = co_await pair.first->read();  // the server's TLS alert, if any, then EOF
    std::string more = co_await pair.first->read();
    while (!more.empty()) more = co_await pair.first->read();
  } catch (const std::system_error&) {  // or a reset
  }
  pair.second->close();
  co_await pair.second->wait_closed();
  server->close();
  co_await server->wait_closed();
  unused.cancel();
}

TEST_CASE_METHOD(
    NativeFixture,
    "TLS server: a failed handshake drops the connection and is only logged in debug mode",
    "[tls][faults][server]") {
  std::vector<std::string> logged;
  LogSink previous = set_log_sink([&](LogLevel level, std::string_view message) {
    if (level == LogLevel::debug) logged.emplace_back(message);
  });
  loop->set_debug(true);
  std::string answer;
  loop->run_until_complete(plain_request_to_tls(*loop, &answer));
  set_log_sink(previous);
  CHECK(reported.empty());
  CHECK(std::any_of(logged.begin(), logged.end(),
                    [](const std::string& m) { return m.rfind("SSL handshake failed", 0) == 0; }));
}

// sendfile on a TLS transport: no zero-copy (the bytes must be encrypted), so asyncio's
// RuntimeError without the fallback, and the fallback sends what the client expects back.
struct TlsFileSender : Protocol {
  TlsFileSender(EventLoop& loop, int file, Future<void> done)
      : loop(loop), file(file), done(std::move(done)) {}
  EventLoop& loop;
  int file;
  Future<void> done;
  Ref<Transport> transport;
  std::string refused;
  std::size_t sent = 0;
  void connection_made(Ref<Transport> t) override {
    transport = t;
    loop.create_task(send(this));
  }
  static Coro<void> send(TlsFileSender* self) {
    Ref<WriteTransport> w(self->transport.get());
    try {
      co_await self->loop.sendfile(w, self->file, 0, std::nullopt, false);
    } catch (const SendfileNotAvailableError&) {
      self->refused = "SendfileNotAvailableError";
    } catch (const RuntimeError& e) {
      self->refused = e.what();
    }
    self->sent = co_await self->loop.sendfile(w, self->file);
  }
  void connection_lost(std::exception_ptr) override {
    transport.reset();
    if (!done.done()) done.set_result();
  }
};

static Coro<void> tls_sendfile_server(EventLoop& loop, int file,
                                      std::shared_ptr<TlsFileSender>* proto, std::string* said) {
  TlsContext tls{.server = true, .cert_file = test_cert().cert, .key_file = test_cert().key};
  Future<void> done = loop.create_future<void>();
  ProtocolFactory factory = [&loop, file, done, proto] {
    return *proto = std::make_shared<TlsFileSender>(loop, file, done);
  };
  Ref<Server> server = co_await loop.create_server(factory, "127.0.0.1", 0, {.ssl = &tls});
  const std::uint16_t port = server->sockets()[0].address.port;
  PythonPeer peer(
      strings("tls-client", "tcp:127.0.0.1:" + std::to_string(port), "300000", test_cert().cert));
  co_await done;
  server->close();
  co_await server->wait_closed();
  *said = peer.finish();
}

TEST_CASE_METHOD(NativeFixture,
                 "sendfile on a TLS transport: the fallback, RuntimeError without it",
                 "[tls][peer][sendfile]") {
  const std::string content = peer_pattern(0, 300000);
  char path[] = "/tmp/eddy-tls-sendfile-XXXXXX";
  int file = ::mkstemp(path);
  ::unlink(path);
  REQUIRE(::write(file, content.data(), content.size()) == static_cast<ssize_t>(content.size()));
  std::shared_ptr<TlsFileSender> proto;
  std::string said;
  loop->run_until_complete(tls_sendfile_server(*loop, file, &proto, &said));
  REQUIRE(proto);
  CHECK(proto->refused ==
        "fallback is disabled and native sendfile is not supported for this transport");
  CHECK(proto->sent == content.size());
  CHECK(said.rfind("OK TLSv1.3", 0) == 0);  // the client got exactly the pattern it sent
  ::close(file);
}
// Echoes one line, then closes (so that s_client, which ignores its stdin's EOF, exits).
struct TlsLineEcho : Protocol {
  explicit TlsLineEcho(Future<void> done) : done(std::move(done)) {}
  Future<void> done;
  Ref<Transport> transport;
  std::string line;
  void connection_made(Ref<Transport> t) override { transport = t; }
  // After start_tls, which does not call connection_made: its result. The line may be here
  // already (data_received can come before start_tls's caller resumes, as in asyncio).
  void adopt(Ref<Transport> t) {
    transport = t;
    answer_if_complete();
  }
  void data_received(std::string_view d) override {
    line += d;
    answer_if_complete();
  }
  void answer_if_complete() {
    if (transport && !transport->is_closing() && line.find('\n') != std::string::npos) {
      transport->write("echo: " + line);
      transport->close();
    }
  }
  void connection_lost(std::exception_ptr) override {
    transport.reset();
    if (!done.done()) done.set_result();
  }
};

// `mutual`: the server requires a client certificate, and s_client presents one. `extra`: more
// s_client arguments.
static Coro<void> tls_server_for_s_client(EventLoop& loop, std::string* said, bool mutual = false,
                                          const std::vector<std::string>* extra = nullptr) {
  TlsContext tls{.server = true, .cert_file = test_cert().cert, .key_file = test_cert().key};
  if (mutual) {
    tls.ca_file = client_cert().cert;
    tls.client_certificates = TlsContext::ClientCertificates::required;
  }
  Future<void> done = loop.create_future<void>();
  ProtocolFactory factory = [done] { return std::make_shared<TlsLineEcho>(done); };
  Ref<Server> server = co_await loop.create_server(factory, "127.0.0.1", 0, {.ssl = &tls});
  const std::uint16_t port = server->sockets()[0].address.port;
  int in[2], out[2];
  ::pipe(in);
  ::pipe(out);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_addclose(&fa, in[1]);
  posix_spawn_file_actions_addclose(&fa, out[0]);
  std::vector<std::string> a = strings("openssl", "s_client", "-connect", "127.0.0.1:" + std::to_string(port),
                                       "-quiet", "-CAfile", test_cert().cert, "-verify_return_error",
                                       "-servername", "localhost");
  if (mutual) {
    for (const std::string& arg : strings("-cert", client_cert().cert, "-key", client_cert().key))
      a.push_back(arg);
  }
  if (extra) a.insert(a.end(), extra->begin(), extra->end());
  std::vector<char*> argv;
  for (auto& x : a) argv.push_back(x.data());
  argv.push_back(nullptr);
  pid_t pid;
  posix_spawnp(&pid, "openssl", &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(in[0]);
  ::close(out[1]);
  ::write(in[1], "ping\n", 5);
  bool served = true;
  try {
    co_await wait_for(done, 10.0);
  } catch (const TimeoutError&) {
    served = false;  // the handshake failed: s_client waits for nothing now
  }
  if (!served) ::kill(pid, SIGKILL);
  server->close();
  co_await server->wait_closed();
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) co_await sleep(0.01);
  char buf[256];
  ssize_t n;
  while ((n = ::read(out[0], buf, sizeof buf)) > 0) said->append(buf, static_cast<std::size_t>(n));
  ::close(in[1]);
  ::close(out[0]);
}

static Coro<void> starttls_client(EventLoop& loop, std::uint16_t port, std::string* plain, std::string* secure) {
  auto first = std::make_shared<Collect>(loop);
  ProtocolFactory f1 = [first] { return first; };
  Connection c = co_await loop.create_connection(f1, "127.0.0.1", port);
  c.first->write("STARTTLS\n");
  while (first->data.find('\n') == std::string::npos) co_await sleep(0.005);
  *plain = first->data;
  TlsContext tls{.ca_file = test_cert().cert};
  auto second = std::make_shared<Collect>(loop);
  CHECK_THROWS_AS(co_await loop.start_tls(c.first, second, &tls), ValueError);  // no server_hostname
  Ref<Transport> upgraded = co_await loop.start_tls(c.first, second, &tls, {.server_hostname = "localhost"});
  CHECK(c.first->is_closing());  // the plain transport is retired
  // As asyncio's (call_connection_made=False), the protocol is not told: the result is its transport.
  CHECK(second->transport == nullptr);
  second->transport = upgraded;
  CHECK_FALSE(std::any_cast<TlsCipher>(upgraded->get_extra_info("cipher")).name.empty());
  upgraded->write("hello\n");
  co_await second->lost;  // the server closes after answering
  *secure = second->data;
  CHECK(first->events_lost() == 0);
}

TEST_CASE_METHOD(NativeFixture, "start_tls: upgrade a plain connection (asyncio STARTTLS server)", "[tls][peer]") {
  PythonPeer peer(strings("starttls-server", "tcp:127.0.0.1:0", test_cert().cert, test_cert().key));
  const auto port = static_cast<std::uint16_t>(std::stoi(peer.ready()));
  std::string plain, secure;
  loop->run_until_complete(starttls_client(*loop, port, &plain, &secure));
  CHECK(plain == "GO\n");
  CHECK(secure == "secure: hello\n");
  peer.finish();
}

// The server writes 32 MiB in plain text and calls start_tls at once, while most of it is still
// buffered: the plain bytes go out first and in order, then the handshake (as asyncio's
// transport would send them); Python's client reads them all before it upgrades.
struct BulkThenUpgrade : Protocol {
  BulkThenUpgrade(EventLoop& loop, const TlsContext* tls, Future<void> done)
      : loop(loop), tls(tls), done(std::move(done)) {}
  static constexpr std::size_t kBulk = 32u << 20;  // more than loopback's socket buffers
  EventLoop& loop;
  const TlsContext* tls;
  Future<void> done;
  std::size_t buffered_at_upgrade = 0;
  Ref<Transport> plain;
  void connection_made(Ref<Transport> t) override {
    plain = t;
    plain->write(peer_pattern(0, kBulk));
    buffered_at_upgrade = plain->get_write_buffer_size();
    loop.create_task(upgrade(this));
  }
  static Coro<void> upgrade(BulkThenUpgrade* self) {
    auto secure = std::make_shared<TlsLineEcho>(self->done);
    Ref<Transport> upgraded = co_await self->loop.start_tls(self->plain, secure, self->tls);
    secure->adopt(upgraded);
    self->plain = nullptr;
  }
  void connection_lost(std::exception_ptr) override { plain = nullptr; }
};

static Coro<void> start_tls_with_buffered_data(EventLoop& loop, std::string* said, std::size_t* buffered) {
  TlsContext tls{.server = true, .cert_file = test_cert().cert, .key_file = test_cert().key};
  Future<void> done = loop.create_future<void>();
  std::shared_ptr<BulkThenUpgrade> proto;
  ProtocolFactory factory = [&loop, &tls, &proto, done] {
    return proto = std::make_shared<BulkThenUpgrade>(loop, &tls, done);
  };
  Ref<Server> server = co_await loop.create_server(factory, "127.0.0.1", 0);
  const std::uint16_t port = server->sockets()[0].address.port;
  PythonPeer peer(strings("starttls-after-bulk-client", "tcp:127.0.0.1:" + std::to_string(port),
                          std::to_string(BulkThenUpgrade::kBulk), test_cert().cert));
  co_await done;
  *buffered = proto->buffered_at_upgrade;
  server->close();
  co_await server->wait_closed();
  *said = peer.finish();
}

TEST_CASE_METHOD(NativeFixture, "start_tls with written data still buffered: plain bytes first, then TLS",
                 "[tls][peer][server]") {
  std::string said;
  std::size_t buffered = 0;
  loop->run_until_complete(start_tls_with_buffered_data(*loop, &said, &buffered));
  CHECK(buffered > 0);  // the upgrade really began with data queued
  CHECK(said.rfind("OK 33554432 -1", 0) == 0);
}

TEST_CASE_METHOD(NativeFixture, "TLS server: openssl s_client verifies us and gets its line back", "[tls][peer][server]") {
  std::string said;
  loop->run_until_complete(tls_server_for_s_client(*loop, &said));
  CHECK(said.find("echo: ping") != std::string::npos);
}

TEST_CASE_METHOD(NativeFixture,
                 "mutual TLS: openssl s_client presents its certificate to a server requiring one",
                 "[tls][peer][server]") {
  std::string said;
  loop->run_until_complete(tls_server_for_s_client(*loop, &said, true));
  CHECK(said.find("echo: ping") != std::string::npos);
}

// A client resuming its session with a server that verifies client certificates: OpenSSL used to
// refuse it with "session id context uninitialized" (the server's contexts had no session id
// context), which browsers and Python's session= run into.
TEST_CASE_METHOD(NativeFixture, "mutual TLS: a client resuming its session is served again",
                 "[tls][peer][server]") {
  const std::string session = "/tmp/eddy-tls-session-" + std::to_string(::getpid()) + ".pem";
  const std::vector<std::string> first = strings("-tls1_2", "-sess_out", session);
  const std::vector<std::string> resumed = strings("-tls1_2", "-sess_in", session);
  std::string said_first, said_resumed;
  loop->run_until_complete(tls_server_for_s_client(*loop, &said_first, true, &first));
  loop->run_until_complete(tls_server_for_s_client(*loop, &said_resumed, true, &resumed));
  std::remove(session.c_str());
  CHECK(said_first.find("echo: ping") != std::string::npos);
  CHECK(said_resumed.find("echo: ping") != std::string::npos);
}

// TLS on the other ways of connecting: a connected socket (sock=) and a Unix path. Before, both
// ignored `ssl` and sent plain text; the server here only speaks TLS, so each must handshake.
static Coro<void> tls_other_paths(EventLoop& loop, std::vector<std::string>* got) {
  TlsContext server_tls{.server = true, .cert_file = test_cert().cert, .key_file = test_cert().key};
  TlsContext client_tls{.ca_file = test_cert().cert};
  Future<void> unused = loop.create_future<void>();
  ProtocolFactory echo = [unused] { return std::make_shared<TlsEcho>(unused); };
  Ref<Server> tcp = co_await loop.create_server(echo, "127.0.0.1", 0, {.ssl = &server_tls});
  const std::string path = "/tmp/eddy-tls-" + std::to_string(::getpid()) + ".sock";
  Ref<Server> unix_server = co_await loop.create_unix_server(echo, path, {.ssl = &server_tls});

  // A TCP socket connected by hand, handed over with sock=.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(tcp->sockets()[0].address.port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0);
  auto by_sock = std::make_shared<Collect>(loop);
  ProtocolFactory f1 = [by_sock] { return by_sock; };
  Connection c1 = co_await loop.create_connection(
      f1, "", 0, {.sock = fd, .ssl = &client_tls, .server_hostname = "localhost"});
  got->push_back(std::any_cast<TlsCipher>(c1.first->get_extra_info("cipher")).name);
  by_sock->want = 5;
  c1.first->write("sock!");
  co_await by_sock->lost;
  got->push_back(by_sock->data);

  auto by_path = std::make_shared<Collect>(loop);
  ProtocolFactory f2 = [by_path] { return by_path; };
  Connection c2 = co_await loop.create_unix_connection(
      f2, path, {.ssl = &client_tls, .server_hostname = "localhost"});
  got->push_back(std::any_cast<TlsCipher>(c2.first->get_extra_info("cipher")).name);
  by_path->want = 5;
  c2.first->write("unix!");
  co_await by_path->lost;
  got->push_back(by_path->data);

  tcp->close();
  unix_server->close();
  co_await tcp->wait_closed();
  co_await unix_server->wait_closed();
}

TEST_CASE_METHOD(NativeFixture, "TLS over a connected socket (sock=) and over a Unix path",
                 "[tls][server]") {
  std::vector<std::string> got;
  loop->run_until_complete(tls_other_paths(*loop, &got));
  REQUIRE(got.size() == 4);
  CHECK_FALSE(got[0].empty());  // a cipher: the connection is TLS
  CHECK(got[1] == "sock!");
  CHECK_FALSE(got[2].empty());
  CHECK(got[3] == "unix!");
}

// asyncio's checks of the TLS options, made before anything connects.
static Coro<void> tls_option_errors(EventLoop& loop, std::vector<std::string>* errors) {
  TlsContext client_tls{.ca_file = test_cert().cert};
  ProtocolFactory f = [&loop] { return std::make_shared<Collect>(loop); };
  auto attempt = [&](ConnectionOptions options, bool unix_path) -> Coro<void> {
    try {
      if (unix_path)
        co_await loop.create_unix_connection(f, "/nonexistent/eddy.sock", options);
      else
        co_await loop.create_connection(f, "", 0, options);
      errors->push_back("connected");
    } catch (const ValueError& e) {
      errors->push_back(e.what());
    } catch (const std::exception& e) {
      errors->push_back(std::string("other: ") + e.what());
    }
  };
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  co_await attempt({.sock = fd, .server_hostname = "localhost"}, false);
  co_await attempt({.sock = fd, .ssl = &client_tls}, false);
  co_await attempt(
      {.sock = fd, .ssl = &client_tls, .server_hostname = "localhost", .ssl_handshake_timeout = 0},
      false);
  co_await attempt({.ssl = &client_tls}, true);
  co_await attempt({.server_hostname = "localhost"}, true);
  co_await attempt({.sock = fd, .ssl_shutdown_timeout = 1.0}, false);
  co_await attempt(
      {.sock = fd, .ssl = &client_tls, .server_hostname = "localhost", .ssl_shutdown_timeout = 0.0},
      false);
  // The value as Python's repr() writes it.
  static constexpr double kOdd[] = {-60.0,  -100000.0,          -1e-05,       -0.0001,
                                    -1e16,  -123456789012345.6, -(0.1 + 0.2), -9999999999999998.0,
                                    -5e-324};
  for (double v : kOdd)
    co_await attempt({.sock = fd,
                      .ssl = &client_tls,
                      .server_hostname = "localhost",
                      .ssl_handshake_timeout = v},
                     false);
  ::close(fd);
}

TEST_CASE_METHOD(NativeFixture,
                 "TLS options: asyncio's ValueErrors for server_hostname and the timeouts",
                 "[tls][errors]") {
  std::vector<std::string> errors;
  loop->run_until_complete(tls_option_errors(*loop, &errors));
  CHECK(errors ==
        std::vector<std::string>{"server_hostname is only meaningful with ssl",
                                 "You must set server_hostname when using ssl without a host",
                                 "ssl_handshake_timeout should be a positive number, got 0.0",
                                 "you have to pass server_hostname when using ssl",
                                 "server_hostname is only meaningful with ssl",
                                 "ssl_shutdown_timeout is only meaningful with ssl",
                                 "ssl_shutdown_timeout should be a positive number, got 0.0",
                                 "ssl_handshake_timeout should be a positive number, got -60.0",
                                 "ssl_handshake_timeout should be a positive number, got -100000.0",
                                 "ssl_handshake_timeout should be a positive number, got -1e-05",
                                 "ssl_handshake_timeout should be a positive number, got -0.0001",
                                 "ssl_handshake_timeout should be a positive number, got -1e+16",
                                 "ssl_handshake_timeout should be a positive number, got "
                                 "-123456789012345.6",
                                 "ssl_handshake_timeout should be a positive number, got "
                                 "-0.30000000000000004",
                                 "ssl_handshake_timeout should be a positive number, got "
                                 "-9999999999999998.0",
                                 "ssl_handshake_timeout should be a positive number, got -5e-324"});
}

// TLS has no half-close: a protocol whose eof_received() returns true is closed all the same
// (asyncio logs a warning). Before, the transport stopped reading and never reported the loss.
struct KeepOpenOnEof : Collect {
  using Collect::Collect;
  bool eof_received() override { return true; }
};

static Coro<void> tls_keep_open_on_eof(EventLoop& loop, bool* lost) {
  TlsContext server_tls{.server = true, .cert_file = test_cert().cert, .key_file = test_cert().key};
  TlsContext client_tls{.ca_file = test_cert().cert};
  struct CloseAtOnce : Protocol {
    void connection_made(Ref<Transport> t) override { t->close(); }  // close_notify, then FIN
  };
  ProtocolFactory closer = [] { return std::make_shared<CloseAtOnce>(); };
  Ref<Server> server = co_await loop.create_server(closer, "127.0.0.1", 0, {.ssl = &server_tls});
  auto client = std::make_shared<KeepOpenOnEof>(loop);
  ProtocolFactory f = [client] { return client; };
  Connection c = co_await loop.create_connection(f, "localhost", server->sockets()[0].address.port,
                                                 {.ssl = &client_tls});
  try {
    co_await wait_for(client->lost, 5.0);
    *lost = true;
  } catch (const TimeoutError&) {
    c.first->abort();
  }
  server->close();
  co_await server->wait_closed();
}

TEST_CASE_METHOD(NativeFixture, "TLS: eof_received() returning true still closes the connection",
                 "[tls]") {
  bool lost = false;
  loop->run_until_complete(tls_keep_open_on_eof(*loop, &lost));
  CHECK(lost);
}

// The server name (SNI) carries host names only (RFC 6066): connecting to an address sends none,
// as Python's ssl does; connecting by name sends the name. Python's server reports what it got.
static Coro<void> sni_client(EventLoop& loop, std::uint16_t port, std::string host,
                             std::string* line) {
  TlsContext tls{.verify_peer = false};
  auto c = std::make_shared<Collect>(loop);
  ProtocolFactory f = [c] { return c; };
  Connection conn = co_await loop.create_connection(f, host, port, {.ssl = &tls});
  co_await c->lost;
  *line = c->data;
}

TEST_CASE_METHOD(NativeFixture,
                 "TLS: no server name (SNI) for an address, the name for a host name",
                 "[tls][peer]") {
  for (const char* host : {"127.0.0.1", "localhost"}) {
    PythonPeer peer(strings("sni-server", "tcp:127.0.0.1:0", test_cert().cert, test_cert().key));
    const auto port = static_cast<std::uint16_t>(std::stoi(peer.ready()));
    std::string line;
    loop->run_until_complete(sni_client(*loop, port, host, &line));
    CHECK(line == (std::string(host) == "localhost" ? "sni: localhost\n" : "sni: None\n"));
    peer.finish();
  }
}
#endif  // __EMSCRIPTEN__

// ---- Closing a TLS connection -------------------------------------------------------------------
// Peers here are blocking Python ssl sockets: they tell a close_notify from a bare EOF.

#ifndef __EMSCRIPTEN__
namespace {

// Writes `size` bytes of the peers' pattern in connection_made and closes at once.
struct WriteAllThenClose : Protocol {
  WriteAllThenClose(std::size_t size, Future<void> done) : size(size), done(std::move(done)) {}
  std::size_t size;
  Future<void> done;
  std::exception_ptr lost_with;
  void connection_made(Ref<Transport> t) override {
    t->write(peer_pattern(0, size));
    t->close();
  }
  void connection_lost(std::exception_ptr exc) override {
    lost_with = exc;
    if (!done.done()) done.set_result();
  }
};

std::string lost_text(const std::exception_ptr& exc) {
  if (!exc) return "None";
  try {
    std::rethrow_exception(exc);
  } catch (const TimeoutError& e) {
    return std::string("TimeoutError: ") + e.what();
  } catch (const std::exception& e) {
    return std::string("other: ") + e.what();
  }
}

}  // namespace

static Coro<void> tls_big_write_then_close(EventLoop& loop, std::size_t size, std::string* said,
                                           std::string* lost) {
  TlsContext tls{.server = true, .cert_file = test_cert().cert, .key_file = test_cert().key};
  Future<void> done = loop.create_future<void>();
  std::shared_ptr<WriteAllThenClose> proto;
  ProtocolFactory factory = [&proto, size, done] {
    return proto = std::make_shared<WriteAllThenClose>(size, done);
  };
  Ref<Server> server = co_await loop.create_server(factory, "127.0.0.1", 0, {.ssl = &tls});
  PythonPeer peer(strings("tls-slow-read-client",
                          "tcp:127.0.0.1:" + std::to_string(server->sockets()[0].address.port),
                          test_cert().cert));
  co_await done;
  *lost = lost_text(proto->lost_with);
  server->close();
  co_await server->wait_closed();
  *said = peer.finish();
}

// Before, the TLS endpoint reported a write done once it was encrypted: close() then dropped
// the ciphertext the socket had not taken yet, close_notify with it.
TEST_CASE_METHOD(NativeFixture,
                 "TLS server: close() after a large write sends it all, then close_notify",
                 "[tls][peer][server][close]") {
  constexpr std::size_t size = 8u << 20;  // more than loopback's socket buffers
  std::string said, lost;
  loop->run_until_complete(tls_big_write_then_close(*loop, size, &said, &lost));
  CHECK(said == "GOT " + std::to_string(size) + " -1 close_notify\n");
  CHECK(lost == "None");
}

static Coro<void> tls_write_drain_close(EventLoop& loop, std::string version, std::size_t size,
                                        std::string* said, std::size_t* after_drain,
                                        std::size_t* low) {
  PythonPeer peer(strings("tls-slow-read-server", "tcp:127.0.0.1:0", test_cert().cert,
                          test_cert().key, version));
  const auto port = static_cast<std::uint16_t>(std::stoi(peer.ready()));
  TlsContext tls{.ca_file = test_cert().cert};
  StreamConnectionOptions options;
  options.connection.ssl = &tls;
  options.connection.server_hostname = "localhost";
  StreamPair pair = co_await open_connection("127.0.0.1", port, options);
  std::shared_ptr<StreamWriter> writer = pair.second;
  writer->write(peer_pattern(0, size));
  co_await writer->drain();
  *after_drain = writer->transport()->get_write_buffer_size();
  *low = writer->transport()->get_write_buffer_limits().first;
  writer->close();
  co_await writer->wait_closed();
  *said = peer.finish();
}

// drain() returned while ciphertext was still queued, and close() then lost it. With TLS 1.3 the
// server's session tickets were also left unread, so closing the socket sent a RST, which made
// the peer discard what it had not read yet.
TEST_CASE_METHOD(NativeFixture, "TLS client: write, drain, close, wait_closed delivers every byte",
                 "[tls][peer][close]") {
  constexpr std::size_t size = 4u << 20;
  for (const char* version : {"1.2", "1.3"}) {
    INFO("TLS " << version);
    std::string said;
    std::size_t after_drain = 0, low = 0;
    loop->run_until_complete(
        tls_write_drain_close(*loop, version, size, &said, &after_drain, &low));
    CHECK(after_drain <= low);
    CHECK(said == "GOT " + std::to_string(size) + " -1 close_notify\n");
  }
}

namespace {

// Sends a line; aborts once the server has answered it.
struct AbortAfterAnswer : Protocol {
  explicit AbortAfterAnswer(EventLoop& loop) : lost(loop.create_future<void>()) {}
  Future<void> lost;
  Ref<Transport> transport;
  void connection_made(Ref<Transport> t) override {
    transport = t;
    t->write("hello\n");
  }
  void data_received(std::string_view) override { transport->abort(); }
  void connection_lost(std::exception_ptr) override {
    transport.reset();
    lost.set_result();
  }
};

}  // namespace

static Coro<void> tls_abort(EventLoop& loop, std::string* said) {
  PythonPeer peer(
      strings("tls-line-then-read-server", "tcp:127.0.0.1:0", test_cert().cert, test_cert().key));
  const auto port = static_cast<std::uint16_t>(std::stoi(peer.ready()));
  TlsContext tls{.ca_file = test_cert().cert};
  auto client = std::make_shared<AbortAfterAnswer>(loop);
  ProtocolFactory factory = [client] { return client; };
  Connection c = co_await loop.create_connection(factory, "localhost", port, {.ssl = &tls});
  co_await client->lost;
  *said = peer.finish();
}

// asyncio's abort() closes the socket as it is: the peer sees the stream end without a
// close_notify (before, Eddy sent one, as for close()).
TEST_CASE_METHOD(NativeFixture, "TLS: abort() sends no close_notify", "[tls][peer][close]") {
  std::string said;
  loop->run_until_complete(tls_abort(*loop, &said));
  CHECK(said == "GOT 0 SSLEOFError\n");
}
#endif  // __EMSCRIPTEN__

#ifndef __EMSCRIPTEN__
namespace {

// Writes a line and closes at once.
struct LineThenClose : Protocol {
  explicit LineThenClose(EventLoop& loop) : lost(loop.create_future<void>()) {}
  Future<void> lost;
  std::exception_ptr lost_with;
  void connection_made(Ref<Transport> t) override {
    t->write("hello\n");
    t->close();
  }
  void connection_lost(std::exception_ptr exc) override {
    lost_with = exc;
    lost.set_result();
  }
};

}  // namespace

static Coro<void> tls_unanswered_close(EventLoop& loop, std::string* said, std::string* lost,
                                       double* waited) {
  PythonPeer peer(strings("tls-mute-server", "tcp:127.0.0.1:0", test_cert().cert, test_cert().key));
  const auto port = static_cast<std::uint16_t>(std::stoi(peer.ready()));
  TlsContext tls{.ca_file = test_cert().cert};
  auto client = std::make_shared<LineThenClose>(loop);
  ProtocolFactory factory = [client] { return client; };
  const double start = loop.time();
  Connection c = co_await loop.create_connection(factory, "localhost", port,
                                                 {.ssl = &tls, .ssl_shutdown_timeout = 1.0});
  co_await client->lost;
  *waited = loop.time() - start;
  *lost = lost_text(client->lost_with);
  *said = peer.finish();
}

// asyncio waits ssl_shutdown_timeout for the answer to its close_notify, keeping the socket
// open, then reports TimeoutError (before, Eddy closed the socket at once).
TEST_CASE_METHOD(NativeFixture,
                 "TLS: close() waits ssl_shutdown_timeout for the peer's close_notify",
                 "[tls][peer][close]") {
  std::string said, lost;
  double waited = 0;
  loop->run_until_complete(tls_unanswered_close(*loop, &said, &lost, &waited));
  CHECK(lost == "TimeoutError: SSL shutdown timed out");
  CHECK(waited >= 0.9);
  CHECK(waited < 20);
  // The peer got the line and our close_notify, and the socket stayed open for most of a second.
  INFO(said);
  const std::string prefix = "GOT 6 close_notify then EOF after ";
  REQUIRE(said.rfind(prefix, 0) == 0);
  CHECK(std::stod(said.substr(prefix.size())) >= 0.5);
}
#endif  // __EMSCRIPTEN__

#ifndef __EMSCRIPTEN__
namespace {

// Pauses reading at each delivery and resumes from a later callback; notes a delivery made
// inside resume_reading() (before, the TLS endpoint delivered what it held from there).
struct PauseAtEachDelivery : Protocol {
  PauseAtEachDelivery(EventLoop& loop, std::size_t want) : loop(loop), want(want) {}
  EventLoop& loop;
  std::size_t want;
  Ref<Transport> transport;
  std::string data;
  bool resuming = false;
  int inside_resume = 0;
  int deliveries = 0;
  std::size_t largest = 0;
  Future<void> lost = loop.create_future<void>();
  void connection_made(Ref<Transport> t) override {
    transport = t;
    t->pause_reading();  // the burst arrives meanwhile
    loop.call_later(0.3, [this] { resume(); });
  }
  void resume() {
    if (!transport) return;
    resuming = true;
    transport->resume_reading();
    resuming = false;
  }
  void data_received(std::string_view d) override {
    ++deliveries;
    largest = std::max(largest, d.size());
    if (resuming) ++inside_resume;
    data += d;
    if (data.size() >= want) {
      transport->close();
      return;
    }
    transport->pause_reading();
    loop.call_soon([this] { resume(); });
  }
  void connection_lost(std::exception_ptr) override {
    transport.reset();
    lost.set_result();
  }
};

}  // namespace

// A TLS connection to Python's burst server (20 records of 4000 bytes at once) with `client` as
// its protocol, until the connection is lost; `said` is what the server printed.
template <class P>
static Coro<void> tls_burst_to(EventLoop& loop, std::shared_ptr<P> client, std::string* said) {
  PythonPeer peer(
      strings("tls-burst-server", "tcp:127.0.0.1:0", test_cert().cert, test_cert().key));
  const auto port = static_cast<std::uint16_t>(std::stoi(peer.ready()));
  TlsContext tls{.ca_file = test_cert().cert};
  ProtocolFactory factory = [client] { return client; };
  Connection c = co_await loop.create_connection(factory, "localhost", port, {.ssl = &tls});
  co_await client->lost;
  *said = peer.finish();
}

TEST_CASE_METHOD(NativeFixture,
                 "TLS: resume_reading() delivers buffered records later, not inside it",
                 "[tls][peer]") {
  auto client = std::make_shared<PauseAtEachDelivery>(*loop, 80000);
  std::string said;
  loop->run_until_complete(tls_burst_to(*loop, client, &said));
  CHECK(client->data == peer_pattern(0, 80000));
  CHECK(client->deliveries > 1);
  CHECK(client->inside_resume == 0);
  // As asyncio's: the records that arrived together come in one data_received (a TLS record
  // carries 16 KiB at most).
  CHECK(client->largest > 16384);
  CHECK(said == "END close_notify\n");
}

// A BufferedProtocol over TLS: get_buffer's buffer is filled across records where it has room,
// and a buffer smaller than a record takes the record in pieces.
namespace {
struct BufferedTlsReader : BufferedProtocol {
  BufferedTlsReader(EventLoop& loop, std::size_t buffer_size, std::size_t want)
      : buffer(buffer_size), want(want), lost(loop.create_future<void>()) {}
  std::vector<char> buffer;
  std::size_t want;
  Ref<Transport> transport;
  std::string data;
  std::vector<std::size_t> updates;
  Future<void> lost;
  void connection_made(Ref<Transport> t) override { transport = t; }
  std::span<char> get_buffer(std::size_t) override { return buffer; }
  void buffer_updated(std::size_t n) override {
    updates.push_back(n);
    data.append(buffer.data(), n);
    if (data.size() >= want) transport->close();
  }
  void connection_lost(std::exception_ptr) override {
    transport.reset();
    lost.set_result();
  }
};
}  // namespace

TEST_CASE_METHOD(NativeFixture, "TLS: a BufferedProtocol's buffer is filled across records",
                 "[tls][peer][buffered]") {
  const std::size_t buffer_size = GENERATE(std::size_t(1000), std::size_t(65536));
  CAPTURE(buffer_size);
  auto reader = std::make_shared<BufferedTlsReader>(*loop, buffer_size, 80000);
  std::string said;
  loop->run_until_complete(tls_burst_to(*loop, reader, &said));
  CHECK(reader->data == peer_pattern(0, 80000));  // 20 records of 4000 bytes
  CHECK(said == "END close_notify\n");
  const std::size_t largest = *std::max_element(reader->updates.begin(), reader->updates.end());
  CHECK(largest <= buffer_size);
  CHECK(std::count(reader->updates.begin(), reader->updates.end(), std::size_t(0)) == 0);
  if (buffer_size < 4000)
    CHECK(reader->updates.size() >= 80);
  else
    CHECK(largest > 4000);  // more than one record in one buffer_updated
}

// ---- getpeercert() and cipher() as Python gives them ----

namespace {

// Python's repr() of the values getpeercert() returns (the test's texts need no escaping).
std::string py_str(const std::string& s) {
  return "'" + s + "'";
}
std::string py_tuple(const std::vector<std::string>& items) {
  std::string t = "(";
  for (std::size_t i = 0; i < items.size(); ++i) t += (i ? ", " : "") + items[i];
  return t + (items.size() == 1 ? ",)" : ")");
}
std::string py_attribute(const PeerCertificate::Attribute& a) {
  return py_tuple({py_str(a.first), py_str(a.second)});
}
std::string py_name(const PeerCertificate::Name& name) {
  std::vector<std::string> rdns;
  for (const auto& rdn : name) {
    std::vector<std::string> attributes;
    for (const auto& a : rdn) attributes.push_back(py_attribute(a));
    rdns.push_back(py_tuple(attributes));
  }
  return py_tuple(rdns);
}
std::string py_strings(const std::vector<std::string>& items) {
  std::vector<std::string> quoted;
  for (const auto& i : items) quoted.push_back(py_str(i));
  return py_tuple(quoted);
}
std::string py_dict(const PeerCertificate& c) {
  if (c.empty()) return "{}";
  std::string d = "{'subject': " + py_name(c.subject) + ", 'issuer': " + py_name(c.issuer) +
                  ", 'version': " + std::to_string(c.version) +
                  ", 'serialNumber': " + py_str(c.serial_number) +
                  ", 'notBefore': " + py_str(c.not_before) + ", 'notAfter': " + py_str(c.not_after);
  if (!c.subject_alt_name.empty()) {
    std::vector<std::string> names;
    for (const auto& a : c.subject_alt_name) names.push_back(py_attribute(a));
    d += ", 'subjectAltName': " + py_tuple(names);
  }
  if (!c.ocsp.empty()) d += ", 'OCSP': " + py_strings(c.ocsp);
  if (!c.ca_issuers.empty()) d += ", 'caIssuers': " + py_strings(c.ca_issuers);
  if (!c.crl_distribution_points.empty())
    d += ", 'crlDistributionPoints': " + py_strings(c.crl_distribution_points);
  return d + "}";
}

// What Python's ssl module makes of a certificate file (the same decoder as getpeercert()).
std::string python_decoded(const std::string& cert_file) {
  const std::string cmd =
      "python3 -c \"import ssl; print(ssl._ssl._test_decode_cert('" + cert_file + "'))\"";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return "";
  std::string out;
  char buf[1024];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  ::pclose(p);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

struct PeerInfo {
  std::any server_side;  // the server's view of a client that sent no certificate
  std::any verified, unverified;
  TlsCipher cipher;
  std::string version;
};

struct RecordServerSide : Protocol {
  explicit RecordServerSide(PeerInfo* info) : info(info) {}
  PeerInfo* info;
  void connection_made(Ref<Transport> t) override {
    info->server_side = t->get_extra_info("peercert");
  }
};

}  // namespace

static Coro<void> tls_peer_info(EventLoop& loop, PeerInfo* info) {
  TlsContext server_tls{.server = true, .cert_file = rich_cert().cert, .key_file = rich_cert().key};
  ProtocolFactory record = [info] { return std::make_shared<RecordServerSide>(info); };
  Ref<Server> server = co_await loop.create_server(record, "127.0.0.1", 0, {.ssl = &server_tls});
  const std::uint16_t port = server->sockets()[0].address.port;
  ProtocolFactory plain = [] { return std::make_shared<Protocol>(); };

  TlsContext verify{.ca_file = rich_cert().cert};
  Connection verified = co_await loop.create_connection(
      plain, "127.0.0.1", port, {.ssl = &verify, .server_hostname = "localhost"});
  info->verified = verified.first->get_extra_info("peercert");
  info->cipher = std::any_cast<TlsCipher>(verified.first->get_extra_info("cipher"));
  info->version = std::any_cast<std::string>(verified.first->get_extra_info("ssl_version"));
  verified.first->close();

  TlsContext trust_anything{.verify_peer = false};
  Connection unverified =
      co_await loop.create_connection(plain, "127.0.0.1", port, {.ssl = &trust_anything});
  info->unverified = unverified.first->get_extra_info("peercert");
  unverified.first->close();

  server->close();
  co_await server->wait_closed();
}

TEST_CASE_METHOD(NativeFixture,
                 "TLS: peercert and cipher hold what Python's getpeercert() and cipher() give",
                 "[tls][peer]") {
  PeerInfo info;
  loop->run_until_complete(tls_peer_info(*loop, &info));
  REQUIRE(info.verified.has_value());
  const auto& cert = std::any_cast<const PeerCertificate&>(info.verified);
  CHECK(py_dict(cert) == python_decoded(rich_cert().cert));
  CHECK(cert.subject_alt_name.at(2) ==
        PeerCertificate::Attribute{"IP Address", "2001:DB8:0:0:0:0:0:1"});
  // Not verified: Python's {}. No certificate at all (a server's client here): None.
  REQUIRE(info.unverified.has_value());
  CHECK(std::any_cast<const PeerCertificate&>(info.unverified).empty());
  CHECK_FALSE(info.server_side.has_value());
  CHECK_FALSE(info.cipher.name.empty());
  CHECK(info.cipher.protocol == info.version);
  CHECK(info.cipher.secret_bits >= 128);
}

// ---- One SSL_CTX per settings, read again when a file changes ----

namespace {
struct ContextSeen {
  std::vector<const void*> server_contexts, client_contexts;
  std::vector<std::string> server_serials;  // of the certificate the server presented
};
struct RecordContext : Protocol {
  explicit RecordContext(ContextSeen* seen) : seen(seen) {}
  ContextSeen* seen;
  void connection_made(Ref<Transport> t) override {
    SSL* ssl = static_cast<SSL*>(std::any_cast<void*>(t->get_extra_info("ssl_object")));
    seen->server_contexts.push_back(SSL_get_SSL_CTX(ssl));
    BIGNUM* serial = ASN1_INTEGER_to_BN(X509_get_serialNumber(SSL_get_certificate(ssl)), nullptr);
    char* hex = BN_bn2hex(serial);
    seen->server_serials.push_back(hex);
    OPENSSL_free(hex);
    BN_free(serial);
  }
};
}  // namespace

static Coro<void> tls_contexts(EventLoop& loop, const TestCert& rotated, const TestCert& next,
                               ContextSeen* seen) {
  TlsContext server_tls{.server = true, .cert_file = rotated.cert, .key_file = rotated.key};
  ProtocolFactory record = [seen] { return std::make_shared<RecordContext>(seen); };
  Ref<Server> server = co_await loop.create_server(record, "127.0.0.1", 0, {.ssl = &server_tls});
  const std::uint16_t port = server->sockets()[0].address.port;
  ProtocolFactory plain = [] { return std::make_shared<Protocol>(); };
  TlsContext client_tls{.verify_peer = false};
  // All kept open until the end, so that no context is freed and its address reused meanwhile.
  std::vector<Ref<Transport>> open;
  for (int i = 0; i < 3; ++i) {
    // Before the third connection the server's certificate is replaced on disk (same paths).
    if (i == 2) {
      const std::string copy =
          "cp " + next.cert + " " + rotated.cert + " && cp " + next.key + " " + rotated.key;
      REQUIRE(std::system(copy.c_str()) == 0);
    }
    Connection c = co_await loop.create_connection(plain, "127.0.0.1", port, {.ssl = &client_tls});
    SSL* ssl = static_cast<SSL*>(std::any_cast<void*>(c.first->get_extra_info("ssl_object")));
    seen->client_contexts.push_back(SSL_get_SSL_CTX(ssl));
    open.push_back(c.first);
  }
  for (auto& t : open) t->close();
  server->close();
  co_await server->wait_closed();
}

TEST_CASE_METHOD(NativeFixture,
                 "TLS: connections share a context until its certificate file changes",
                 "[tls][server]") {
  const TestCert rotated("tls-rotated"), next("tls-next");
  ContextSeen seen;
  loop->run_until_complete(tls_contexts(*loop, rotated, next, &seen));
  REQUIRE(seen.server_contexts.size() == 3);
  REQUIRE(seen.client_contexts.size() == 3);
  CHECK(seen.client_contexts[0] == seen.client_contexts[1]);
  CHECK(seen.client_contexts[1] == seen.client_contexts[2]);
  CHECK(seen.server_contexts[0] == seen.server_contexts[1]);
  CHECK(seen.server_serials[0] == seen.server_serials[1]);
  // The replaced certificate is read again: a new context, presenting the new certificate.
  CHECK(seen.server_contexts[2] != seen.server_contexts[1]);
  CHECK(seen.server_serials[2] != seen.server_serials[1]);
}

// ---- Mutual TLS: a server asking for client certificates ----

namespace {

struct MutualSeen {
  int server_connections = 0;
  std::vector<std::any> server_peercerts;
  bool client_lost_with_error = false;
};

struct RecordClientCert : Protocol {
  explicit RecordClientCert(MutualSeen* seen) : seen(seen) {}
  MutualSeen* seen;
  void connection_made(Ref<Transport> t) override {
    ++seen->server_connections;
    seen->server_peercerts.push_back(t->get_extra_info("peercert"));
    t->write("ok");
  }
};

struct WaitForAnswer : Protocol {
  explicit WaitForAnswer(EventLoop& loop) : done(loop.create_future<void>()) {}
  Future<void> done;
  std::exception_ptr error;
  std::string data;
  void data_received(std::string_view d) override {
    data += d;
    if (!done.done()) done.set_result();
  }
  void connection_lost(std::exception_ptr e) override {
    error = e;
    if (!done.done()) done.set_result();
  }
};
}  // namespace

// One client connection; false if it was refused (at connect, or cut before any answer).
static Coro<bool> mutual_client(EventLoop& loop, std::uint16_t port, const TlsContext* tls) {
  auto client = std::make_shared<WaitForAnswer>(loop);
  ProtocolFactory factory = [client] { return client; };
  try {
    Connection c = co_await loop.create_connection(factory, "127.0.0.1", port,
                                                   {.ssl = tls, .server_hostname = "localhost"});
    co_await wait_for(client->done, 10.0);
    c.first->close();
  } catch (const std::system_error&) {
    co_return false;
  }
  co_return client->data == "ok";
}

static Coro<void> mutual_tls(EventLoop& loop, TlsContext::ClientCertificates mode, MutualSeen* seen,
                             std::vector<bool>* answered) {
  TlsContext server_tls{.server = true,
                        .ca_file = client_cert().cert,
                        .cert_file = test_cert().cert,
                        .key_file = test_cert().key,
                        .client_certificates = mode};
  ProtocolFactory record = [seen] { return std::make_shared<RecordClientCert>(seen); };
  Ref<Server> server = co_await loop.create_server(record, "127.0.0.1", 0, {.ssl = &server_tls});
  const std::uint16_t port = server->sockets()[0].address.port;
  TlsContext with_cert{
      .ca_file = test_cert().cert, .cert_file = client_cert().cert, .key_file = client_cert().key};
  TlsContext without_cert{.ca_file = test_cert().cert};
  const bool first = co_await mutual_client(loop, port, &with_cert);
  answered->push_back(first);
  const bool second = co_await mutual_client(loop, port, &without_cert);
  answered->push_back(second);
  server->close();
  co_await server->wait_closed();
}

TEST_CASE_METHOD(NativeFixture,
                 "mutual TLS: a server asks for client certificates as verify_mode says",
                 "[tls][server]") {
  using Mode = TlsContext::ClientCertificates;
  for (const Mode mode : {Mode::none, Mode::optional, Mode::required}) {
    CAPTURE(static_cast<int>(mode));
    MutualSeen seen;
    std::vector<bool> answered;
    loop->run_until_complete(mutual_tls(*loop, mode, &seen, &answered));
    REQUIRE(answered.size() == 2);
    CHECK(answered[0]);  // a client with a trusted certificate is always served
    // CERT_REQUIRED refuses a client without one; the others serve it.
    CHECK(answered[1] == (mode != Mode::required));
    REQUIRE(seen.server_connections == (mode == Mode::required ? 1 : 2));
    const std::any& first = seen.server_peercerts[0];
    if (mode == Mode::none) {
      CHECK_FALSE(first.has_value());  // not asked for: None
    } else {
      REQUIRE(first.has_value());
      CHECK(std::any_cast<const PeerCertificate&>(first).subject ==
            PeerCertificate::Name{{PeerCertificate::Attribute{"commonName", "eddy-client"}}});
    }
    if (mode == Mode::optional) CHECK_FALSE(seen.server_peercerts[1].has_value());
  }
}

#endif  // __EMSCRIPTEN__
