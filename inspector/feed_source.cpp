// FeedSource: an in-process loop's Feed, encoded exactly as the agent would send it.
#include "model.hpp"

namespace eddy::inspector {

bool FeedSource::pump(Model& model) {
  if (!welcomed_) {
    welcomed_ = true;
    if (!model.apply_line(inspect::welcome_message("in-process"))) return false;
  }
  for (const auto& s : feed_->since(last_seq_)) {
    const std::uint64_t skipped = last_seq_ && s->seq > last_seq_ + 1 ? s->seq - last_seq_ - 1 : 0;
    last_seq_ = s->seq;
    const std::string line = encoder_.update(*s, skipped);
    if (!model.feed(line)) return false;
  }
  return !feed_->closed();
}

}  // namespace eddy::inspector
