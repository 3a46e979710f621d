// TLS echo: `eddy_tls_echo [--cert CERT --key KEY] [--serve PORT]`. A Protocol-based echo server
// with `ssl=` on 127.0.0.1, and a streams client (`open_connection` with `ssl=`, verifying the
// server's certificate against CERT for the name "localhost") that sends three lines and prints
// what came back and the negotiated TLS version and cipher; exits 0 if every line was echoed.
// Without --cert/--key a throwaway self-signed certificate is made with the `openssl` command.
// With --serve the server stays up for other clients: `openssl s_client -connect 127.0.0.1:PORT`.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "eddy/eddy.hpp"
#include "example_main.hpp"

using namespace eddy;

struct TlsEcho final : Protocol {
  Ref<Transport> transport;
  void connection_made(Ref<Transport> t) override {
    transport = std::move(t);
    const auto version = std::any_cast<std::string>(transport->get_extra_info("ssl_version"));
    std::printf(
        "server: %s connection from %s\n", version.c_str(),
        std::any_cast<SocketAddress>(transport->get_extra_info("peername")).to_string().c_str());
  }
  void data_received(std::string_view data) override { transport->write(data); }
  bool eof_received() override { return false; }  // TLS has no half-close: close
  void connection_lost(std::exception_ptr) override { transport.reset(); }
};

static Coro<int> client(std::uint16_t port, const TlsContext* tls) {
  StreamConnectionOptions options;
  options.connection.ssl = tls;
  options.connection.server_hostname = "localhost";
  auto [reader, writer] = co_await open_connection("127.0.0.1", port, options);
  const auto cipher = std::any_cast<TlsCipher>(writer->get_extra_info("cipher"));
  const auto cert = std::any_cast<PeerCertificate>(writer->get_extra_info("peercert"));
  std::printf("client: %s, cipher %s (%d bits), server certificate for %s, valid until %s\n",
              cipher.protocol.c_str(), cipher.name.c_str(), cipher.secret_bits,
              cert.subject.empty() ? "?" : cert.subject.back().front().second.c_str(),
              cert.not_after.c_str());
  int echoed = 0;
  for (const char* line : {"hello\n", "over TLS\n", "from eddy\n"}) {
    writer->write(line);
    co_await writer->drain();
    std::string back = co_await reader->readline();
    std::printf("client: echo %s", back.c_str());
    echoed += back == line;
  }
  writer->close();
  co_await writer->wait_closed();
  co_return echoed == 3 ? 0 : 1;
}

static Coro<int> tls_echo(std::string cert, std::string key, int serve_port) {
  EventLoop& loop = get_running_loop();
  TlsContext server_tls{.server = true, .cert_file = cert, .key_file = key};
  ProtocolFactory factory = [] { return std::make_shared<TlsEcho>(); };
  Ref<Server> server = co_await loop.create_server(
      factory, "127.0.0.1", static_cast<std::uint16_t>(serve_port), {.ssl = &server_tls});
  const std::uint16_t port = server->sockets()[0].address.port;
  std::printf("listening on 127.0.0.1:%u (TLS)\n", port);
  if (serve_port) {
    co_await server->serve_forever();
    co_return 0;
  }
  TlsContext client_tls{.ca_file = cert};  // trust exactly our self-signed certificate
  const int status = co_await client(port, &client_tls);
  server->close();
  co_await server->wait_closed();
  co_return status;
}

int main(int argc, char** argv) {
  std::string cert, key;
  std::string serve_port = "0";
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--cert") == 0 && i + 1 < argc)
      cert = argv[++i];
    else if (std::strcmp(argv[i], "--key") == 0 && i + 1 < argc)
      key = argv[++i];
    else if (std::strcmp(argv[i], "--serve") == 0 && i + 1 < argc)
      serve_port = argv[++i];
    else {
      std::fprintf(stderr, "usage: %s [--cert CERT --key KEY] [--serve PORT]\n", argv[0]);
      return 2;
    }
  }
  std::string dir;
  if (cert.empty() != key.empty()) {
    std::fprintf(stderr, "--cert and --key go together\n");
    return 2;
  }
  if (cert.empty()) {
    char tmp[] = "/tmp/eddy-tls-echo-XXXXXX";
    if (!::mkdtemp(tmp)) return 1;
    dir = tmp;
    cert = dir + "/cert.pem";
    key = dir + "/key.pem";
    const std::string make =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
        " -subj /CN=localhost -addext subjectAltName=DNS:localhost -keyout " +
        key + " -out " + cert + " 2>/dev/null";
    if (std::system(make.c_str()) != 0) {
      std::fprintf(stderr, "could not make a certificate with the openssl command\n");
      std::system(("rm -rf " + dir).c_str());
      return 1;
    }
  }
  // The temporary key is removed however the run ends (an error, Ctrl-C).
  const int status = examples::run_example(
      [&] { return eddy::run(tls_echo(cert, key, examples::parse_port(serve_port))); });
  if (!dir.empty()) std::system(("rm -rf " + dir).c_str());
  return status;
}
