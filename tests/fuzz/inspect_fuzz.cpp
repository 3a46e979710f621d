// libFuzzer target for the inspector's decoders: the JSON reader, the agent's hello parser, and
// the client model fed arbitrary bytes as if from an agent (after a valid welcome). Anything may
// be rejected; nothing may crash, hang, leak or trip ASan/UBSan.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "eddy/inspect_wire.hpp"
#include "model.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)eddy::inspect::json::parse(text);
  (void)eddy::inspect::parse_client_hello(text);
  eddy::inspector::Model model;
  model.max_frames = 8;
  if (!model.feed(eddy::inspect::welcome_message("fuzz"))) __builtin_trap();
  model.feed(text);
  if (model.frame_count()) (void)model.chrome_trace();
  (void)model.summary_json();
  return 0;
}
