// `openforce-worker serve`; see serve_command.h. httplib's worker threads
// parse requests and wait; one generation thread takes queued requests in
// arrival order, so concurrent clients are served fairly and the model is
// never run by two threads at once.
#include "worker/serve_command.h"

#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/untrusted_json.h"
#include "lora/chat_template.h"
#include "lora/tokenizer.h"

namespace openforce::worker {
namespace {

using json = nlohmann::json;

// One queued generation. Pieces of text flow from the generation thread to
// the HTTP thread that answers the client.
struct Job {
  lora::GenerateCall call;
  std::vector<std::string> stop;  // stop strings
  std::mutex mutex;
  std::condition_variable changed;
  std::deque<std::string> pieces;
  std::string text;  // everything generated, stop strings cut
  bool done = false;
  absl::Status status;
  lora::InferenceResult result;
  std::string finish_reason = "length";
  std::atomic<bool> cancelled{false};
};

class Server {
 public:
  Server(const ServeOptions& options,
         std::unique_ptr<lora::InferenceSession> session)
      : options_(options),
        session_(std::move(session)),
        base_id_(std::filesystem::path(options.model.model_dir)
                     .filename()
                     .string()) {
    if (base_id_.empty()) base_id_ = "base";
  }

  absl::Status Run(
      const std::atomic<bool>& stop,
      const std::function<void(const std::string&)>& on_listening) {
    std::thread generator([this] { GenerateLoop(); });
    httplib::Server http;
    http.new_task_queue = [this] {
      return new httplib::ThreadPool(options_.http_threads);
    };
    http.set_payload_max_length(options_.max_request_bytes);
    http.set_pre_routing_handler(
        [this](const httplib::Request& request, httplib::Response& response) {
          if (Authorized(request))
            return httplib::Server::HandlerResponse::Unhandled;
          Error(response, 401,
                "invalid or missing API key (Authorization: Bearer ...)",
                "invalid_api_key");
          return httplib::Server::HandlerResponse::Handled;
        });
    http.Get("/health",
             [](const httplib::Request&, httplib::Response& response) {
               response.set_content(R"({"status":"ok"})", "application/json");
             });
    http.Get("/v1/models", [this](const httplib::Request&,
                                  httplib::Response& response) {
      json data = json::array();
      data.push_back(ModelEntry(base_id_));
      for (const auto& [name, dir] : options_.model.named_adapters) {
        data.push_back(ModelEntry(name));
      }
      response.set_content(json{{"object", "list"}, {"data", data}}.dump(),
                           "application/json");
    });
    http.Post("/v1/chat/completions", [this](const httplib::Request& request,
                                             httplib::Response& response) {
      Complete(request, response, /*chat=*/true);
    });
    http.Post("/v1/completions", [this](const httplib::Request& request,
                                        httplib::Response& response) {
      Complete(request, response, /*chat=*/false);
    });
    http.set_error_handler(
        [this](const httplib::Request&, httplib::Response& response) {
          if (!response.body.empty()) return;
          if (response.status == 413) {
            Error(response, 413, "request body too large", "request_too_large");
          } else if (response.status == 404) {
            Error(response, 404, "no such endpoint", "not_found");
          }
        });

    const size_t colon = options_.listen.rfind(':');
    int port = 0;
    if (colon == std::string::npos ||
        !absl::SimpleAtoi(options_.listen.substr(colon + 1), &port) ||
        port < 0 || port > 65535) {
      Shutdown(&generator);
      return absl::InvalidArgumentError(
          absl::StrCat("--listen '", options_.listen, "' is not host:port"));
    }
    const std::string host = options_.listen.substr(0, colon);
    if (port == 0) {
      port = http.bind_to_any_port(host);
    } else if (!http.bind_to_port(host, port)) {
      port = -1;
    }
    if (port <= 0) {
      Shutdown(&generator);
      return absl::UnavailableError(
          absl::StrCat("cannot listen on ", options_.listen));
    }
    std::thread listener([&http] { http.listen_after_bind(); });
    while (!http.is_running())
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (on_listening) on_listening(absl::StrCat(host, ":", port));
    while (!stop.load())
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    http.stop();
    listener.join();
    Shutdown(&generator);
    return absl::OkStatus();
  }

 private:
  static json ModelEntry(const std::string& id) {
    return {{"id", id},
            {"object", "model"},
            {"owned_by", "openforce"},
            {"created", 0}};
  }

  static void Error(httplib::Response& response, int status,
                    const std::string& message, const std::string& code) {
    response.status = status;
    response.set_content(
        json{{"error",
              {{"message", message},
               {"type",
                status >= 500 ? "server_error" : "invalid_request_error"},
               {"param", nullptr},
               {"code", code}}}}
            .dump(-1, ' ', false, json::error_handler_t::replace),
        "application/json");
  }

  bool Authorized(const httplib::Request& request) const {
    if (options_.api_key.empty()) return true;
    const std::string header = request.get_header_value("Authorization");
    const std::string expected = "Bearer " + options_.api_key;
    // Constant time in the key's length: no early exit on a mismatch.
    unsigned char diff = header.size() == expected.size() ? 0 : 1;
    for (size_t i = 0; i < expected.size(); ++i) {
      diff |= static_cast<unsigned char>((i < header.size() ? header[i] : 0) ^
                                         expected[i]);
    }
    return diff == 0;
  }

  void Shutdown(std::thread* generator) {
    {
      std::lock_guard<std::mutex> lock(queue_mutex_);
      stopping_ = true;
    }
    queue_changed_.notify_all();
    generator->join();
  }

  void GenerateLoop() {
    while (true) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(queue_mutex_);
        queue_changed_.wait(lock,
                            [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        job = queue_.front();
        queue_.pop_front();
      }
      Run(*job);
    }
  }

  void Run(Job& job) {
    if (job.cancelled.load()) {
      Finish(job, absl::CancelledError("client went away"));
      return;
    }
    lora::GenerateCall call = job.call;
    std::string pending;  // text held back while it could start a stop string
    call.on_text = [&job, &pending](absl::string_view piece) {
      if (job.cancelled.load()) return false;
      pending.append(piece.data(), piece.size());
      for (const std::string& stop : job.stop) {
        const size_t at = pending.find(stop);
        if (at != std::string::npos) {
          pending.resize(at);
          job.finish_reason = "stop";
          Emit(job, pending);
          pending.clear();
          return false;
        }
      }
      // Keep what could be the start of a stop string.
      size_t keep = 0;
      for (const std::string& stop : job.stop) {
        for (size_t n = std::min(stop.size() - 1, pending.size()); n > keep;
             --n) {
          if (pending.compare(pending.size() - n, n, stop, 0, n) == 0) {
            keep = n;
            break;
          }
        }
      }
      Emit(job, pending.substr(0, pending.size() - keep));
      pending.erase(0, pending.size() - keep);
      return true;
    };
    absl::StatusOr<lora::InferenceResult> result = session_->Generate(call);
    if (result.ok()) {
      if (job.finish_reason != "stop") {
        Emit(job, pending);
        job.finish_reason =
            result->stop_reason == "max_new_tokens" ? "length" : "stop";
      }
      job.result = *std::move(result);
      Finish(job, absl::OkStatus());
    } else {
      Finish(job, result.status());
    }
  }

  static void Emit(Job& job, const std::string& piece) {
    if (piece.empty()) return;
    std::lock_guard<std::mutex> lock(job.mutex);
    job.pieces.push_back(piece);
    job.text += piece;
    job.changed.notify_all();
  }

  static void Finish(Job& job, absl::Status status) {
    std::lock_guard<std::mutex> lock(job.mutex);
    job.status = std::move(status);
    job.done = true;
    job.changed.notify_all();
  }

  void Enqueue(const std::shared_ptr<Job>& job) {
    {
      std::lock_guard<std::mutex> lock(queue_mutex_);
      queue_.push_back(job);
    }
    queue_changed_.notify_one();
  }

  // Builds the job from an OpenAI request body; an error names the field.
  absl::StatusOr<std::shared_ptr<Job>> ParseRequest(const std::string& body,
                                                    bool chat,
                                                    std::string* model,
                                                    bool* stream) {
    ASSIGN_OR_RETURN(json request, ParseUntrustedJson(body, "request body"));
    if (!request.is_object())
      return absl::InvalidArgumentError("the body is not a JSON object");
    auto job = std::make_shared<Job>();
    *model = request.value("model", base_id_);
    if (!request.contains("model") || !request["model"].is_string())
      *model = base_id_;
    if (*model != base_id_) {
      if (!session_->HasAdapter(*model)) {
        return absl::NotFoundError(
            absl::StrCat("The model '", *model, "' does not exist"));
      }
      job->call.adapter = *model;
    }
    job->call.base_only = true;
    *stream = request.contains("stream") && request["stream"].is_boolean() &&
              request["stream"].get<bool>();
    for (const char* key : {"max_completion_tokens", "max_tokens"}) {
      if (request.contains(key) && !request[key].is_null()) {
        if (!request[key].is_number_integer() ||
            request[key].get<int64_t>() <= 0 ||
            request[key].get<int64_t>() > 1 << 20) {
          return absl::InvalidArgumentError(
              absl::StrCat("'", key, "' must be a positive integer"));
        }
        job->call.max_new_tokens = request[key].get<int64_t>();
        break;
      }
    }
    lora::SamplingOptions sampling;
    const double temperature =
        request.contains("temperature") && request["temperature"].is_number()
            ? request["temperature"].get<double>()
            : 1.0;
    if (temperature < 0 || temperature > 2) {
      return absl::InvalidArgumentError("'temperature' must be in [0, 2]");
    }
    sampling.greedy = temperature == 0;
    sampling.temperature = temperature > 0 ? temperature : 1.0;
    if (request.contains("top_p") && request["top_p"].is_number()) {
      sampling.top_p = request["top_p"].get<double>();
    }
    if (request.contains("seed") && request["seed"].is_number_integer()) {
      sampling.seed = request["seed"].get<uint64_t>();
    }
    RETURN_IF_ERROR(lora::ValidateSamplingOptions(sampling));
    job->call.sampling = sampling;
    if (request.contains("stop") && !request["stop"].is_null()) {
      const json& stop = request["stop"];
      if (stop.is_string()) {
        job->stop.push_back(stop.get<std::string>());
      } else if (stop.is_array() && stop.size() <= 4) {
        for (const json& item : stop) {
          if (!item.is_string())
            return absl::InvalidArgumentError("'stop' must hold strings");
          job->stop.push_back(item.get<std::string>());
        }
      } else {
        return absl::InvalidArgumentError(
            "'stop' must be a string or up to 4 strings");
      }
      for (const std::string& s : job->stop) {
        if (s.empty())
          return absl::InvalidArgumentError("'stop' strings must not be empty");
      }
    }
    if (chat) {
      if (!request.contains("messages") || !request["messages"].is_array() ||
          request["messages"].empty()) {
        return absl::InvalidArgumentError(
            "'messages' must be a non-empty list");
      }
      if (session_->chat_template() == nullptr ||
          session_->tokenizer() == nullptr) {
        return absl::FailedPreconditionError(
            "the model has no chat template; use /v1/completions");
      }
      nlohmann::ordered_json conversation = {
          {"messages",
           nlohmann::ordered_json::parse(request["messages"].dump())},
          {"add_generation_prompt", true}};
      if (request.contains("tools") && !request["tools"].is_null()) {
        conversation["tools"] =
            nlohmann::ordered_json::parse(request["tools"].dump());
      }
      ASSIGN_OR_RETURN(std::string prompt,
                       session_->chat_template()->Render(conversation));
      ASSIGN_OR_RETURN(job->call.prompt_ids, session_->tokenizer()->Encode(
                                                 prompt, /*add_bos=*/false));
    } else {
      if (!request.contains("prompt") || !request["prompt"].is_string()) {
        return absl::InvalidArgumentError("'prompt' must be a string");
      }
      if (session_->tokenizer() == nullptr) {
        return absl::FailedPreconditionError("the model has no tokenizer");
      }
      ASSIGN_OR_RETURN(job->call.prompt_ids,
                       session_->tokenizer()->Encode(
                           request["prompt"].get<std::string>(), true));
    }
    if (job->call.prompt_ids.empty())
      return absl::InvalidArgumentError("the prompt is empty");
    return job;
  }

  static int HttpStatus(const absl::Status& status) {
    switch (status.code()) {
      case absl::StatusCode::kNotFound:
        return 404;
      case absl::StatusCode::kInvalidArgument:
      case absl::StatusCode::kFailedPrecondition:
      case absl::StatusCode::kOutOfRange:
        return 400;
      default:
        return 500;
    }
  }

  void Complete(const httplib::Request& request, httplib::Response& response,
                bool chat) {
    std::string model;
    bool stream = false;
    absl::StatusOr<std::shared_ptr<Job>> parsed =
        ParseRequest(request.body, chat, &model, &stream);
    if (!parsed.ok()) {
      Error(response, HttpStatus(parsed.status()),
            std::string(parsed.status().message()),
            absl::IsNotFound(parsed.status()) ? "model_not_found"
                                              : "invalid_request");
      return;
    }
    std::shared_ptr<Job> job = *std::move(parsed);
    const std::string id =
        absl::StrCat(chat ? "chatcmpl-" : "cmpl-", ++next_id_);
    const int64_t created =
        std::chrono::duration_cast<std::chrono::seconds>(
            std::chrono::system_clock::now().time_since_epoch())
            .count();
    Enqueue(job);
    if (!stream) {
      std::unique_lock<std::mutex> lock(job->mutex);
      job->changed.wait(lock, [&job] { return job->done; });
      if (!job->status.ok()) {
        Error(response, HttpStatus(job->status),
              std::string(job->status.message()), "generation_failed");
        return;
      }
      json choice = {{"index", 0}, {"finish_reason", job->finish_reason}};
      if (chat) {
        choice["message"] = {{"role", "assistant"}, {"content", job->text}};
      } else {
        choice["text"] = job->text;
      }
      response.set_content(
          json{{"id", id},
               {"object", chat ? "chat.completion" : "text_completion"},
               {"created", created},
               {"model", model},
               {"choices", json::array({choice})},
               {"usage", Usage(*job)}}
              .dump(-1, ' ', false, json::error_handler_t::replace),
          "application/json");
      return;
    }
    response.set_header("Cache-Control", "no-cache");
    auto chunk = [id, created, model, chat](const json& delta_or_text,
                                            const json& finish) {
      json choice = {{"index", 0}, {"finish_reason", finish}};
      if (chat) {
        choice["delta"] = delta_or_text;
      } else {
        choice["text"] = delta_or_text;
      }
      return "data: " +
             json{
                 {"id", id},
                 {"object", chat ? "chat.completion.chunk" : "text_completion"},
                 {"created", created},
                 {"model", model},
                 {"choices", json::array({choice})}}
                 .dump(-1, ' ', false, json::error_handler_t::replace) +
             "\n\n";
    };
    response.set_chunked_content_provider(
        "text/event-stream",
        [job, chunk, chat, started = false](size_t,
                                            httplib::DataSink& sink) mutable {
          auto write = [&sink, &job](const std::string& text) {
            if (!sink.write(text.data(), text.size())) {
              job->cancelled = true;
              return false;
            }
            return true;
          };
          if (!started) {
            started = true;
            if (chat &&
                !write(chunk(json{{"role", "assistant"}, {"content", ""}},
                             nullptr))) {
              return false;
            }
          }
          std::unique_lock<std::mutex> lock(job->mutex);
          job->changed.wait_for(lock, std::chrono::milliseconds(200), [&job] {
            return job->done || !job->pieces.empty();
          });
          std::deque<std::string> pieces;
          pieces.swap(job->pieces);
          const bool done = job->done;
          const absl::Status status = job->status;
          const std::string finish = job->finish_reason;
          lock.unlock();
          for (const std::string& piece : pieces) {
            if (!write(chunk(chat ? json{{"content", piece}} : json(piece),
                             nullptr))) {
              return false;
            }
          }
          if (!done) {
            if (!sink.is_writable()) {
              job->cancelled = true;
              return false;
            }
            return true;
          }
          if (!status.ok()) {
            write("data: " +
                  json{{"error",
                        {{"message", std::string(status.message())},
                         {"type", "server_error"}}}}
                      .dump() +
                  "\n\n");
          } else {
            write(chunk(chat ? json::object() : json(""), finish));
          }
          write("data: [DONE]\n\n");
          sink.done();
          return true;
        },
        [job](bool success) {
          if (!success) job->cancelled = true;
        });
  }

  static json Usage(const Job& job) {
    const int64_t prompt = static_cast<int64_t>(job.result.prompt_ids.size());
    const int64_t completion =
        static_cast<int64_t>(job.result.generated_ids.size());
    return {{"prompt_tokens", prompt},
            {"completion_tokens", completion},
            {"total_tokens", prompt + completion}};
  }

  const ServeOptions& options_;
  std::unique_ptr<lora::InferenceSession> session_;
  std::string base_id_;
  std::atomic<int64_t> next_id_{0};
  std::mutex queue_mutex_;
  std::condition_variable queue_changed_;
  std::deque<std::shared_ptr<Job>> queue_;  // guarded by queue_mutex_
  bool stopping_ = false;                   // guarded by queue_mutex_
};

bool IsLoopback(const std::string& listen) {
  const std::string host = listen.substr(0, listen.rfind(':'));
  return host == "127.0.0.1" || host == "localhost" || host == "::1" ||
         host == "[::1]";
}

}  // namespace

absl::Status RunServer(
    const ServeOptions& options, const std::atomic<bool>& stop,
    const std::function<void(const std::string&)>& on_listening) {
  if (!IsLoopback(options.listen) && options.api_key.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen ", options.listen,
                     " is not loopback: give --api-key-file so that only key "
                     "holders can use it"));
  }
  lora::InferenceRequest request = options.model;
  ASSIGN_OR_RETURN(std::unique_ptr<lora::InferenceSession> session,
                   lora::InferenceSession::Open(request));
  Server server(options, std::move(session));
  return server.Run(stop, on_listening);
}

}  // namespace openforce::worker
