// TLS for native builds: an endpoint that wraps another (TCP, Unix, or a connection on the
// virtual-clock loop's virtual network) with OpenSSL over memory BIOs. Ciphertext moves through
// the inner endpoint; the core's StreamTransport sees plaintext and is otherwise unchanged. The
// handshake's outcome is reported once; after that, an outer write completes when the inner
// endpoint has handed its records to the kernel, and close() is preceded by TLS's closing
// handshake (close_notify both ways).
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <sys/stat.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <deque>
#include <memory>
#include <mutex>
#include <string>

#include "eddy/detail/tls.hpp"
#include "eddy/errors.hpp"
#include "eddy/io_options.hpp"

namespace eddy::native {

namespace {

const std::error_category& tls_category() {
  struct Category final : std::error_category {
    const char* name() const noexcept override { return "ssl"; }
    std::string message(int code) const override {
      char buf[256];
      ERR_error_string_n(static_cast<unsigned long>(code), buf, sizeof buf);
      return buf;
    }
  };
  static const Category c;
  return c;
}

bool is_ip_literal(const std::string& name) {
  unsigned char address[16];
  return ::inet_pton(AF_INET, name.c_str(), address) == 1 ||
         ::inet_pton(AF_INET6, name.c_str(), address) == 1;
}

std::error_code last_tls_error(std::string* why) {
  unsigned long e = ERR_get_error();
  if (e == 0) e = ERR_PACK(ERR_LIB_SSL, 0, SSL_R_UNEXPECTED_MESSAGE);
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  if (why) *why = buf;
  ERR_clear_error();
  return {static_cast<int>(e & 0x7fffffff), tls_category()};
}

// ---- getpeercert() and cipher(), with Python's texts ----

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string text(data, n > 0 ? static_cast<std::size_t>(n) : 0);
  BIO_free(bio);
  return text;
}

std::string asn1_utf8(const ASN1_STRING* value) {
  unsigned char* utf8 = nullptr;
  const int n = ASN1_STRING_to_UTF8(&utf8, value);
  if (n < 0) return {};
  std::string text(reinterpret_cast<char*>(utf8), static_cast<std::size_t>(n));
  OPENSSL_free(utf8);
  return text;
}

// An attribute's long name ("commonName"), or its dotted number when OpenSSL has no name for it.
std::string object_name(const ASN1_OBJECT* object) {
  char name[256];
  const int n = OBJ_obj2txt(name, sizeof name, object, 0);
  return n > 0 ? std::string(name,
                             std::min<std::size_t>(static_cast<std::size_t>(n), sizeof name - 1))
               : "";
}

PeerCertificate::Name name_of(const X509_NAME* name) {
  PeerCertificate::Name rdns;
  int current_set = -1;
  for (int i = 0; i < X509_NAME_entry_count(name); ++i) {
    const X509_NAME_ENTRY* entry = X509_NAME_get_entry(name, i);
    const int set = X509_NAME_ENTRY_set(entry);
    if (set != current_set || rdns.empty()) rdns.emplace_back();  // a new RDN
    current_set = set;
    rdns.back().emplace_back(object_name(X509_NAME_ENTRY_get_object(entry)),
                             asn1_utf8(X509_NAME_ENTRY_get_data(entry)));
  }
  return rdns;
}

std::string ip_text(const ASN1_OCTET_STRING* ip) {
  const unsigned char* b = ASN1_STRING_get0_data(ip);
  char text[64];
  if (ASN1_STRING_length(ip) == 4) {
    std::snprintf(text, sizeof text, "%d.%d.%d.%d", b[0], b[1], b[2], b[3]);
  } else if (ASN1_STRING_length(ip) == 16) {  // Python's form: eight groups, no "::"
    std::string groups;
    for (int g = 0; g < 8; ++g) {
      std::snprintf(text, sizeof text, g ? ":%X" : "%X", b[2 * g] << 8 | b[2 * g + 1]);
      groups += text;
    }
    return groups;
  } else {
    return "<invalid>";
  }
  return text;
}

std::vector<PeerCertificate::Attribute> alt_names_of(X509* cert) {
  std::vector<PeerCertificate::Attribute> names;
  auto* general =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (!general) return names;
  for (int i = 0; i < sk_GENERAL_NAME_num(general); ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(general, i);
    switch (n->type) {
      case GEN_DNS:
        names.emplace_back("DNS", asn1_utf8(n->d.dNSName));
        break;
      case GEN_EMAIL:
        names.emplace_back("email", asn1_utf8(n->d.rfc822Name));
        break;
      case GEN_URI:
        names.emplace_back("URI", asn1_utf8(n->d.uniformResourceIdentifier));
        break;
      case GEN_IPADD:
        names.emplace_back("IP Address", ip_text(n->d.iPAddress));
        break;
      case GEN_RID:
        names.emplace_back("Registered ID", object_name(n->d.registeredID));
        break;
      case GEN_DIRNAME: {
        char text[512];
        X509_NAME_oneline(n->d.directoryName, text, sizeof text);
        names.emplace_back("DirName", text);
        break;
      }
      default:
        names.emplace_back(n->type == GEN_OTHERNAME ? "othername" : "unsupported", "<unsupported>");
    }
  }
  GENERAL_NAMES_free(general);
  return names;
}

// The OCSP responders and CA issuer URLs (authority information access), as Python lists them.
void access_urls_of(X509* cert, PeerCertificate& c) {
  auto* info = static_cast<AUTHORITY_INFO_ACCESS*>(
      X509_get_ext_d2i(cert, NID_info_access, nullptr, nullptr));
  if (!info) return;
  for (int i = 0; i < sk_ACCESS_DESCRIPTION_num(info); ++i) {
    const ACCESS_DESCRIPTION* ad = sk_ACCESS_DESCRIPTION_value(info, i);
    if (ad->location->type != GEN_URI) continue;
    const int method = OBJ_obj2nid(ad->method);
    if (method == NID_ad_OCSP)
      c.ocsp.push_back(asn1_utf8(ad->location->d.uniformResourceIdentifier));
    else if (method == NID_ad_ca_issuers)
      c.ca_issuers.push_back(asn1_utf8(ad->location->d.uniformResourceIdentifier));
  }
  AUTHORITY_INFO_ACCESS_free(info);
}

void crl_urls_of(X509* cert, PeerCertificate& c) {
  auto* points = static_cast<CRL_DIST_POINTS*>(
      X509_get_ext_d2i(cert, NID_crl_distribution_points, nullptr, nullptr));
  if (!points) return;
  for (int i = 0; i < sk_DIST_POINT_num(points); ++i) {
    const DIST_POINT* dp = sk_DIST_POINT_value(points, i);
    if (!dp->distpoint || dp->distpoint->type != 0) continue;  // full names only, as Python
    const GENERAL_NAMES* names = dp->distpoint->name.fullname;
    for (int j = 0; j < sk_GENERAL_NAME_num(names); ++j) {
      const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, j);
      if (n->type == GEN_URI)
        c.crl_distribution_points.push_back(asn1_utf8(n->d.uniformResourceIdentifier));
    }
  }
  CRL_DIST_POINTS_free(points);
}

PeerCertificate decode_certificate(X509* cert) {
  PeerCertificate c;
  c.subject = name_of(X509_get_subject_name(cert));
  c.issuer = name_of(X509_get_issuer_name(cert));
  c.version = static_cast<int>(X509_get_version(cert)) + 1;
  BIO* bio = BIO_new(BIO_s_mem());
  i2a_ASN1_INTEGER(bio, X509_get_serialNumber(cert));
  c.serial_number = bio_text(bio);
  bio = BIO_new(BIO_s_mem());
  ASN1_TIME_print(bio, X509_get0_notBefore(cert));
  c.not_before = bio_text(bio);
  bio = BIO_new(BIO_s_mem());
  ASN1_TIME_print(bio, X509_get0_notAfter(cert));
  c.not_after = bio_text(bio);
  c.subject_alt_name = alt_names_of(cert);
  access_urls_of(cert, c);
  crl_urls_of(cert, c);
  return c;
}

struct SslCtxDeleter {
  void operator()(SSL_CTX* c) const noexcept { SSL_CTX_free(c); }
};

std::unique_ptr<SSL_CTX, SslCtxDeleter> make_context(const TlsContext& config) {
  std::unique_ptr<SSL_CTX, SslCtxDeleter> ctx(SSL_CTX_new(config.server ? TLS_server_method() : TLS_client_method()));
  if (!ctx) throw std::system_error(last_tls_error(nullptr), "SSL_CTX_new");
  SSL_CTX_set_min_proto_version(ctx.get(), config.min_version);
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  std::string why;
  auto fail = [&](const char* what) -> void {
    std::error_code ec = last_tls_error(&why);
    throw std::system_error(ec, std::string(what) + ": " + why);
  };
  const std::string cert_file(config.cert_file), key_file(config.key_file);
  if (!cert_file.empty() && SSL_CTX_use_certificate_chain_file(ctx.get(), cert_file.c_str()) != 1)
    fail(("load certificate " + cert_file).c_str());
  if (!key_file.empty() &&
      SSL_CTX_use_PrivateKey_file(ctx.get(), key_file.c_str(), SSL_FILETYPE_PEM) != 1)
    fail(("load private key " + key_file).c_str());  // also a key of another certificate
  using ClientCertificates = TlsContext::ClientCertificates;
  const bool verify =
      config.server ? config.client_certificates != ClientCertificates::none : config.verify_peer;
  // A server's sessions are tied to its settings: without this, OpenSSL refuses a client that
  // resumes a session with a server verifying client certificates ("session id context
  // uninitialized"), as browsers and Python's session= do. Python names its contexts too.
  if (config.server) {
    static const unsigned char kSessionContext[] = "eddy";
    SSL_CTX_set_session_id_context(ctx.get(), kSessionContext, sizeof kSessionContext - 1);
  }
  if (verify) {
    int mode = SSL_VERIFY_PEER;
    if (config.server && config.client_certificates == ClientCertificates::required)
      mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(ctx.get(), mode, nullptr);
    int ok = config.ca_file.empty() ? SSL_CTX_set_default_verify_paths(ctx.get())
                                    : SSL_CTX_load_verify_locations(ctx.get(), std::string(config.ca_file).c_str(), nullptr);
    if (ok != 1) fail("load trust anchors");
  }
  return ctx;
}

// An SSL_CTX is built once for the same settings and files, as a Python program builds its
// SSLContext once: reading a certificate chain and key takes about 0.7 ms, and loading the
// system's trust store about 20 ms, which every connection used to pay. A certificate or trust
// file that changed on disk (another inode, size or modification time) is read again, so a
// rotated certificate is picked up by the next connection.
class ContextCache {
 public:
  static std::shared_ptr<SSL_CTX> get(const TlsContext& config) {
    Key key{config.server,
            config.verify_peer,
            config.client_certificates,
            config.min_version,
            {file_of(config.ca_file), file_of(config.cert_file), file_of(config.key_file)}};
    static ContextCache cache;
    {
      std::lock_guard<std::mutex> lock(cache.mutex_);
      for (auto& entry : cache.entries_)
        if (entry.first == key) return entry.second;
    }
    std::shared_ptr<SSL_CTX> ctx(make_context(config).release(),
                                 SslCtxDeleter{});  // throws: not kept
    std::lock_guard<std::mutex> lock(cache.mutex_);
    if (cache.entries_.size() == kMaxContexts) cache.entries_.erase(cache.entries_.begin());
    cache.entries_.emplace_back(std::move(key), ctx);
    return ctx;
  }

 private:
  static constexpr std::size_t kMaxContexts = 16;
  struct File {
    std::string path;
    dev_t device = 0;
    ino_t inode = 0;
    off_t size = 0;
    std::int64_t modified_ns = 0;
    bool operator==(const File&) const = default;
  };
  struct Key {
    bool server, verify_peer;
    TlsContext::ClientCertificates client_certificates;
    int min_version;
    File files[3];
    bool operator==(const Key& o) const {
      return server == o.server && verify_peer == o.verify_peer &&
             client_certificates == o.client_certificates && min_version == o.min_version &&
             std::equal(std::begin(files), std::end(files), std::begin(o.files));
    }
  };
  static File file_of(std::string_view path) {
    File f{std::string(path)};
    struct stat st;
    if (!path.empty() && ::stat(f.path.c_str(), &st) == 0) {
      f.device = st.st_dev;
      f.inode = st.st_ino;
      f.size = st.st_size;
      f.modified_ns = std::int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    }
    return f;
  }
  std::mutex mutex_;
  std::vector<std::pair<Key, std::shared_ptr<SSL_CTX>>> entries_;  // oldest first
};

class TlsEndpoint final : public StreamEndpoint, private StreamEvents {
 public:
  TlsEndpoint(StreamEndpointPtr inner, const TlsContext& config, std::string_view hostname,
              Backend::HandshakeDone done)
      : inner_(std::move(inner)), ctx_(ContextCache::get(config)), done_(std::move(done)) {
    ssl_ = SSL_new(ctx_.get());
    BIO* rbio = BIO_new(BIO_s_mem());
    BIO* wbio = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl_, rbio, wbio);
    rbio_ = rbio;
    wbio_ = wbio;
    if (config.server) {
      SSL_set_accept_state(ssl_);
    } else {
      SSL_set_connect_state(ssl_);
      const std::string name(hostname);
      if (!name.empty()) {
        // RFC 6066: no address in the server name; Python sends none for one either.
        if (!is_ip_literal(name)) SSL_set_tlsext_host_name(ssl_, name.c_str());
        if (config.verify_peer) SSL_set1_host(ssl_, name.c_str());
      }
    }
    inner_->set_events(this);
  }

  void begin() {
    Dispatch guard(this);
    inner_->read_start();
    advance_handshake();
  }

  // StreamEndpoint (what the transport sees)
  void set_events(StreamEvents* events) noexcept override { events_ = events; }
  void read_start() override {
    outer_reading_ = true;
    if (handshaken_ && inner_ && !closing_) {
      inner_->read_start();
      deliver_plaintext();
    }
  }
  void read_stop() noexcept override {
    outer_reading_ = false;
    if (handshaken_ && inner_ && !closing_) inner_->read_stop();
  }
  // Nothing goes to the kernel as it is: write() makes the records and hands them over.
  std::size_t try_write(std::string_view, std::error_code&) noexcept override { return 0; }
  void write(WriteBuffers data) override {
    std::error_code ec;
    for (const std::string& piece : data)
      if (!seal(piece, ec)) throw std::system_error(ec, "SSL_write");
    if (!send_records(ec)) throw std::system_error(ec, "SSL_write");
    // Done once the inner write that carries its last record is.
    outer_writes_.push_back(inner_writes_sent_);
  }
  std::size_t queued_bytes() const noexcept override { return inner_ ? inner_->queued_bytes() : 0; }
  void shutdown() override {}  // TLS has no half-close (asyncio: can_write_eof() is false)
  bool can_shutdown() const noexcept override { return false; }
  // close_notify after what is queued, then the peer's answer (asyncio's SSLProtocol shutdown:
  // unwrap(), application data discarded). After the peer's EOF there is nobody to tell.
  bool start_closing_handshake() noexcept override {
    if (closed_ || closing_ || !handshaken_ || !inner_ || inner_eof_) return false;
    ERR_clear_error();
    if (SSL_shutdown(ssl_) < 0) {  // a broken session: no close_notify to send
      ERR_clear_error();
      return false;
    }
    std::error_code ec;
    if (!send_records(ec)) return false;
    closing_ = true;
    try {
      inner_->read_start();
    } catch (const std::system_error&) {
      return false;
    }
    take_closing_input();  // records that came while the transport was not reading
    // Over already (or failed): the transport closes at once. Else the end is reported from
    // poll(), at the latest by the write_done of our close_notify.
    return !closing_error_ && !(peer_closed_ && inner_writes_done_ >= inner_writes_sent_);
  }
  // No close_notify here: close() has made the closing handshake already, and abort() must not
  // send one (asyncio's abort() just closes the socket: the peer sees the stream cut short).
  void close(bool reset) noexcept override {
    if (closed_) return;
    closed_ = true;
    events_ = nullptr;
    if (inner_) inner_.release()->close(reset);
    if (depth_ == 0) delete this;  // else when the current event returns
  }
  std::any extra_info(std::string_view name) const override {
    if (name == "ssl_object") return static_cast<void*>(ssl_);
    if (name == "cipher") {
      const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl_);
      if (!cipher) return {};
      return TlsCipher{SSL_CIPHER_get_name(cipher), SSL_CIPHER_get_version(cipher),
                       SSL_CIPHER_get_bits(cipher, nullptr)};
    }
    if (name == "ssl_version") return std::string(SSL_get_version(ssl_));
    if (name == "peercert") {
      X509* cert = SSL_get1_peer_certificate(ssl_);
      if (!cert) return {};
      // As Python: only a certificate this side asked to verify is decoded.
      PeerCertificate decoded = (SSL_get_verify_mode(ssl_) & SSL_VERIFY_PEER)
                                    ? decode_certificate(cert)
                                    : PeerCertificate{};
      X509_free(cert);
      return decoded;
    }
    if (name == "compression") return {};
    return inner_ ? inner_->extra_info(name) : std::any();
  }

 private:
  ~TlsEndpoint() override { SSL_free(ssl_); }

  // Keeps this alive while an event is being handled: the transport may close us from inside.
  struct Dispatch {
    TlsEndpoint* t;
    explicit Dispatch(TlsEndpoint* t) : t(t) { ++t->depth_; }
    ~Dispatch() {
      if (--t->depth_ == 0 && t->closed_) delete t;
    }
  };

  // Inner endpoint events (ciphertext).
  std::span<char> read_buffer(std::size_t) override { return {cipher_in_, sizeof cipher_in_}; }
  void read_done(std::size_t n) override {
    Dispatch guard(this);
    BIO_write(rbio_, cipher_in_, static_cast<int>(n));
    if (!handshaken_) {
      advance_handshake();
      if (!handshaken_ || closed_) return;
    }
    if (closing_) {
      take_closing_input();
      finish_closing_if_done();
    } else {
      deliver_plaintext();
    }
  }
  void read_eof() override {
    Dispatch guard(this);
    inner_eof_ = true;
    if (!handshaken_) return fail_handshake(std::make_error_code(std::errc::connection_reset), "EOF during the handshake");
    if (closing_) return finish_closing_if_done();
    if (events_) events_->read_eof();
  }
  void read_failed(std::error_code ec) override {
    Dispatch guard(this);
    if (!handshaken_) return fail_handshake(ec, ec.message());
    if (closing_) {
      if (!closing_error_) closing_error_ = ec;
      return finish_closing_if_done();
    }
    if (events_) events_->read_failed(ec);
  }
  void write_done(std::error_code ec) override {
    Dispatch guard(this);
    ++inner_writes_done_;
    if (ec) {
      if (!handshaken_) return fail_handshake(ec, ec.message());
      if (closing_) {
        if (!closing_error_) closing_error_ = ec;
        return finish_closing_if_done();
      }
      if (events_ && !outer_writes_.empty()) {
        outer_writes_.clear();
        events_->write_done(ec);
      }
      return;
    }
    while (events_ && !outer_writes_.empty() && outer_writes_.front() <= inner_writes_done_) {
      outer_writes_.pop_front();
      events_->write_done({});
    }
    if (closing_) finish_closing_if_done();
  }
  void shutdown_done(std::error_code) override {}

  // Turns `data` into TLS records, kept in the write BIO until send_records().
  bool seal(std::string_view data, std::error_code& error) noexcept {
    while (!data.empty()) {
      int r = SSL_write(ssl_, data.data(), static_cast<int>(std::min<std::size_t>(data.size(), 1 << 30)));
      if (r <= 0) {
        std::string why;
        error = last_tls_error(&why);
        return false;
      }
      data.remove_prefix(static_cast<std::size_t>(r));
    }
    return true;
  }

  // Hands the records made so far to the inner endpoint as one write. Its write_done comes from
  // poll(), so an outer write never completes inside write(), and what is still queued counts in
  // queued_bytes() (the transport's flow control and close() wait for it).
  bool send_records(std::error_code& error) noexcept {
    const std::size_t pending = BIO_ctrl_pending(wbio_);
    if (pending == 0 || !inner_) return true;
    try {
      std::string records(pending, '\0');
      std::size_t got = 0;
      while (got < pending) {
        const int n = BIO_read(wbio_, records.data() + got,
                               static_cast<int>(std::min<std::size_t>(pending - got, 1 << 30)));
        if (n <= 0) break;
        got += static_cast<std::size_t>(n);
      }
      records.resize(got);
      WriteBuffers one;
      one.push_back(std::move(records));
      inner_->write(std::move(one));
      ++inner_writes_sent_;
      return true;
    } catch (const std::system_error& e) {
      error = e.code();
    } catch (const std::bad_alloc&) {
      error = std::make_error_code(std::errc::not_enough_memory);
    }
    return false;
  }

  void advance_handshake() {
    int r = SSL_do_handshake(ssl_);
    std::error_code ec;
    if (!send_records(ec)) return fail_handshake(ec, ec.message());
    if (r == 1) {
      handshaken_ = true;
      if (!outer_reading_ && inner_) inner_->read_stop();
      auto done = std::move(done_);
      done_ = nullptr;
      if (done) done({}, {});
      return;
    }
    int err = SSL_get_error(ssl_, r);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return;
    std::string why;
    std::error_code tls_ec = last_tls_error(&why);
    long verify = SSL_get_verify_result(ssl_);
    if (verify != X509_V_OK) why += std::string(" (certificate verify failed: ") + X509_verify_cert_error_string(verify) + ")";
    fail_handshake(tls_ec, why);
  }

  void fail_handshake(std::error_code ec, std::string why) {
    auto done = std::move(done_);
    done_ = nullptr;
    if (inner_) inner_->read_stop();
    if (done) done(ec, why);
  }

  static constexpr std::size_t kPlaintextHint = 65536;  // get_buffer's hint, as on plain sockets

  // As asyncio's SSL protocol: the records decrypted so far reach the protocol in one call (as
  // many as fit the buffer it lends: 256 KiB for data_received), not one call per record. What
  // ended the reading (the peer's close_notify, an error) is reported after that data.
  void deliver_plaintext() {
    while (events_ && outer_reading_ && !closed_ && !closing_) {
      std::span<char> buf = events_->read_buffer(kPlaintextHint);
      if (buf.empty()) {
        events_->read_failed(std::make_error_code(std::errc::no_buffer_space));
        return;
      }
      std::size_t filled = 0;
      int r = 1;
      while (filled < buf.size()) {
        const std::size_t room = std::min<std::size_t>(buf.size() - filled, INT_MAX);
        r = SSL_read(ssl_, buf.data() + filled, static_cast<int>(room));
        if (r <= 0) break;
        filled += static_cast<std::size_t>(r);
      }
      if (r > 0) {  // the buffer is full: more may be waiting
        events_->read_done(filled);
        continue;
      }
      const int err = SSL_get_error(ssl_, r);
      std::error_code tls_ec;
      if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_ZERO_RETURN)
        tls_ec = last_tls_error(nullptr);  // before anything else touches OpenSSL's error queue
      std::error_code ec;
      send_records(ec);  // TLS 1.3 may answer (key updates)
      if (filled > 0) events_->read_done(filled);
      if (!events_ || closed_ || err == SSL_ERROR_WANT_READ) return;
      if (err == SSL_ERROR_ZERO_RETURN)
        events_->read_eof();
      else
        events_->read_failed(tls_ec);
      return;
    }
  }

  // During the closing handshake: reads until the peer's close_notify, dropping application
  // data (the transport has stopped reading; asyncio's unwrap() drops it too).
  void take_closing_input() {
    char sink[16384];
    while (!closed_ && !peer_closed_ && !closing_error_) {
      int r = SSL_read(ssl_, sink, sizeof sink);
      if (r > 0) continue;
      int err = SSL_get_error(ssl_, r);
      std::error_code ec;
      send_records(ec);
      if (err == SSL_ERROR_WANT_READ) break;
      if (err == SSL_ERROR_ZERO_RETURN)
        peer_closed_ = true;
      else
        closing_error_ = last_tls_error(nullptr);
    }
  }

  // The closing handshake is over once the peer has answered (or ended the stream) and our
  // close_notify has left, or once something failed.
  void finish_closing_if_done() {
    if (!closing_ || closing_reported_ || !events_) return;
    const bool answered = (peer_closed_ || inner_eof_) && inner_writes_done_ >= inner_writes_sent_;
    if (!answered && !closing_error_) return;
    closing_reported_ = true;
    if (inner_) inner_->read_stop();
    events_->closing_handshake_done(closing_error_);
  }

  StreamEndpointPtr inner_;
  std::shared_ptr<SSL_CTX> ctx_;  // shared with other connections of the same settings
  SSL* ssl_ = nullptr;
  BIO* rbio_ = nullptr;
  BIO* wbio_ = nullptr;
  Backend::HandshakeDone done_;
  StreamEvents* events_ = nullptr;
  // Inner writes counted as they are made and as they complete (in order); each outer write
  // waits for the inner write numbered here.
  std::uint64_t inner_writes_sent_ = 0;
  std::uint64_t inner_writes_done_ = 0;
  std::deque<std::uint64_t> outer_writes_;
  std::error_code closing_error_;
  bool handshaken_ = false;
  bool outer_reading_ = false;
  bool inner_eof_ = false;    // the peer ended the TCP stream
  bool closing_ = false;      // close_notify sent: the closing handshake is on
  bool peer_closed_ = false;  // the peer's close_notify came
  bool closing_reported_ = false;
  bool closed_ = false;
  int depth_ = 0;
  char cipher_in_[65536];
};

}  // namespace

}  // namespace eddy::native

namespace eddy::platform {

bool has_tls() noexcept {
  return true;
}

void check_tls_context(const TlsContext& context) {
  (void)native::ContextCache::get(context);
}

StreamEndpointPtr wrap_tls(StreamEndpointPtr inner, const TlsContext& context,
                           std::string_view hostname, Backend::HandshakeDone done) {
  using native::TlsEndpoint;
  auto* t = new TlsEndpoint(std::move(inner), context, hostname, std::move(done));
  StreamEndpointPtr owned(t);
  t->begin();
  return owned;
}

}  // namespace eddy::platform
