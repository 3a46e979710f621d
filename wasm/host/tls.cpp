// TLS in WebAssembly: there is none. No TLS library is built for Emscripten here, so the virtual
// network carries plain streams only; a page reaches a TLS server through a wss:// WebSocket,
// whose encryption is the browser's. The capability table's start_tls row says so up front.
#include "eddy/detail/tls.hpp"

#include "eddy/errors.hpp"

namespace eddy::platform {

bool has_tls() noexcept {
  return false;
}

void check_tls_context(const TlsContext&) {}

StreamEndpointPtr wrap_tls(StreamEndpointPtr, const TlsContext&, std::string_view,
                           Backend::HandshakeDone) {
  throw NotSupportedError("start_tls", "WebAssembly",
                          "no TLS library in this build (a page reaches TLS servers through a "
                          "wss:// WebSocket)");
}

}  // namespace eddy::platform
