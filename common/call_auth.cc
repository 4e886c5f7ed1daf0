// Call signatures and the replay window; see call_auth.h.
#include "common/call_auth.h"

namespace openforce {

std::string CallAuthMessage(absl::string_view method,
                            absl::string_view worker_id,
                            absl::string_view session_id, uint64_t counter,
                            absl::string_view request_digest) {
  std::string message("openforce/call/v1");
  message.push_back('\0');
  message.append(method.data(), method.size());
  message.push_back('\0');
  message.append(worker_id.data(), worker_id.size());
  message.push_back('\0');
  message.append(session_id.data(), session_id.size());
  for (int shift = 56; shift >= 0; shift -= 8)
    message.push_back(static_cast<char>((counter >> shift) & 0xff));
  message.append(request_digest.data(), request_digest.size());
  return message;
}

bool ReplayWindow::Accept(uint64_t counter) {
  if (counter == 0) return false;
  if (counter > highest_) {
    if (counter - highest_ >= kWindow) {
      seen_.reset();
    } else {
      for (uint64_t c = highest_ + 1; c < counter; ++c)
        seen_.reset(c % kWindow);
    }
    seen_.set(counter % kWindow);
    highest_ = counter;
    return true;
  }
  if (highest_ - counter >= kWindow) return false;
  if (seen_.test(counter % kWindow)) return false;
  seen_.set(counter % kWindow);
  return true;
}

}  // namespace openforce
