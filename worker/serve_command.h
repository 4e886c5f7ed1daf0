// `openforce-worker serve`: an OpenAI-compatible HTTP server for local
// inference (POST /v1/chat/completions and /v1/completions, with streaming
// as server-sent events; GET /v1/models and /health). The base model and any
// number of named adapters are loaded once; a request's "model" picks one.
// Requests queue first-come first-served for the one generation thread; a
// client that disconnects stops its generation. Loopback by default; another
// address needs an API key, checked on every request in constant time.
#ifndef OPENFORCE_WORKER_SERVE_COMMAND_H_
#define OPENFORCE_WORKER_SERVE_COMMAND_H_

#include <atomic>
#include <functional>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "lora/inference.h"

namespace openforce::worker {

struct ServeOptions {
  lora::InferenceRequest model;  // model_dir, device, dtype, named_adapters
  std::string listen = "127.0.0.1:8080";  // host:port; port 0 picks one
  std::string api_key;                    // empty: none (loopback only)
  size_t max_request_bytes = 1u << 20;
  int http_threads = 8;
};

// Serves until `stop` becomes true (checked every 100 ms). `on_listening`
// receives the bound "host:port" once the socket accepts connections.
[[nodiscard]] absl::Status RunServer(
    const ServeOptions& options, const std::atomic<bool>& stop,
    const std::function<void(const std::string&)>& on_listening);

}  // namespace openforce::worker

#endif  // OPENFORCE_WORKER_SERVE_COMMAND_H_
