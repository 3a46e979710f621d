// TLS for stream endpoints: the platform's TLS library (OpenSSL natively, native/src/tls.cpp;
// none in WebAssembly, wasm/host/tls.cpp). Every backend's wrap_tls goes through it, so a
// connection on the virtual network of a native build is encrypted just as a TCP one.
#pragma once

#include <string_view>

#include "eddy/backend.hpp"

namespace eddy::platform {
// Whether this build has a TLS library (the capability tables' start_tls and ssl= rows).
bool has_tls() noexcept;
// Loads `context`'s files now (as Python's load_cert_chain does when the SSLContext is made), so
// that a server refuses to start on a certificate it cannot use: std::system_error naming the
// file, or a key that does not match its certificate. Nothing to do without TLS.
void check_tls_context(const TlsContext& context);
// Wraps a connected endpoint, as Backend::wrap_tls documents; NotSupportedError without TLS.
StreamEndpointPtr wrap_tls(StreamEndpointPtr inner, const TlsContext& context,
                           std::string_view server_hostname, Backend::HandshakeDone done);
}  // namespace eddy::platform
