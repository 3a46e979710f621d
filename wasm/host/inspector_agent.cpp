// The inspector agent in WebAssembly: a page cannot listen on a port, so serve() says so. The
// browser inspector (web/inspector) reads an in-page loop's Feed directly instead.
#include "eddy/inspector_agent.hpp"

#include "eddy/errors.hpp"
#include "eddy/loop.hpp"

namespace eddy::inspector {

std::unique_ptr<Agent> serve(EventLoop& loop, ServeOptions) {
  throw NotSupportedError(
      "inspector::serve", loop.capabilities().target,
      "a page cannot accept connections; inspect the page's own loop in web/inspector");
}

}  // namespace eddy::inspector
