// `openforce-worker serve` as OpenAI clients use it, over real HTTP on
// loopback: models, plain and streamed chat completions (server-sent events
// ending in [DONE]), completions, two adapters whose answers differ as their
// weights do, and OpenAI-style errors with the right status (bad JSON,
// unknown model, missing or wrong API key, oversize body, refusal to listen
// off loopback without a key).
#include <ATen/ATen.h>
#include <httplib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lora/lora_adapter.h"
#include "nlohmann/json.hpp"
#include "tests/testing/demo_task.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace openforce::testing {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

class ServeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    task_ = WriteDemoTask(dir_.path() + "/task", 8, 2);
    ASSERT_OK(WriteFileAtomically(
        task_.model_dir + "/chat_template.jinja",
        "{% for m in messages %}[{{ m.role }}]{{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant]{% endif %}"));
    // Two adapters with different (non-zero) weights.
    for (const char* name : {"alpha", "beta"}) {
      lora::LoraConfig config;
      config.targets = {lora::Projection::kQ, lora::Projection::kV,
                        lora::Projection::kDown};
      auto adapter = lora::LoraAdapter::Create(DemoModelConfig(), config,
                                               name[0] == 'a' ? 11 : 12);
      ASSERT_OK(adapter);
      // Seeded: an unseeded draw sometimes made an adapter whose greedy
      // answer ends with EOS within the tests' few tokens.
      at::manual_seed(name[0] == 'a' ? 11 : 12);
      for (at::Tensor tensor : adapter->Parameters()) {
        tensor.normal_(0, 0.5);
      }
      ASSERT_OK(adapter->Save(dir_.Join(name)));
    }
    // Key files must not be readable by others.
    ASSERT_OK(WriteFileAtomically(dir_.Join("key.txt"), "s3cret-key\n"));
    std::filesystem::permissions(dir_.Join("key.txt"),
                                 std::filesystem::perms::owner_read |
                                     std::filesystem::perms::owner_write);
  }

  // Starts the server; its address from the "listening on" line.
  std::string Start(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {
        OPENFORCE_WORKER_PATH,
        "serve",
        "--model",
        task_.model_dir,
        "--adapters",
        "alpha=" + dir_.Join("alpha") + ",beta=" + dir_.Join("beta"),
        "--listen",
        "127.0.0.1:0",
        "--threads",
        "1"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    server_ = std::make_unique<ChildProcess>(argv, dir_.Join("serve.log"));
    const std::regex listening("listening on http://([0-9.]+):([0-9]+)");
    for (int i = 0; i < 300; ++i) {
      std::smatch match;
      const std::string log = server_->Log();
      if (std::regex_search(log, match, listening)) {
        port_ = std::stoi(match[2]);
        return match[1];
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << "server did not start: " << server_->Log();
    return "";
  }

  httplib::Client Client(const std::string& host) {
    httplib::Client client(host, port_);
    client.set_read_timeout(60, 0);
    return client;
  }

  static json Chat(const std::string& model, bool stream) {
    return {{"model", model},
            {"messages", {{{"role", "user"}, {"content", "3a="}}}},
            {"max_tokens", 6},
            {"temperature", 0},
            {"stream", stream}};
  }

  TempDir dir_;
  DemoTaskFiles task_;
  std::unique_ptr<ChildProcess> server_;
  int port_ = 0;
};

TEST_F(ServeTest, ChatCompletionsPlainStreamedAndPerAdapter) {
  const std::string host = Start();
  httplib::Client client = Client(host);
  auto health = client.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto models = client.Get("/v1/models");
  ASSERT_TRUE(models);
  const json model_list = json::parse(models->body);
  ASSERT_EQ(model_list["data"].size(), 3u);
  EXPECT_EQ(model_list["data"][1]["id"], "alpha");

  std::map<std::string, std::string> answers;
  for (const char* model : {"model", "alpha", "beta"}) {
    auto plain = client.Post("/v1/chat/completions", Chat(model, false).dump(),
                             "application/json");
    ASSERT_TRUE(plain);
    ASSERT_EQ(plain->status, 200) << plain->body;
    const json body = json::parse(plain->body);
    EXPECT_EQ(body["object"], "chat.completion");
    EXPECT_EQ(body["model"], model);
    EXPECT_EQ(body["choices"][0]["message"]["role"], "assistant");
    EXPECT_EQ(body["usage"]["completion_tokens"].get<int>() +
                  body["usage"]["prompt_tokens"].get<int>(),
              body["usage"]["total_tokens"].get<int>());
    // "[user]3a=\n[assistant]" in bytes: the template was applied.
    EXPECT_EQ(body["usage"]["prompt_tokens"], 21);
    answers[model] = body["choices"][0]["message"]["content"];

    // The streamed answer is the same text, in chunks, then [DONE].
    auto streamed = client.Post("/v1/chat/completions",
                                Chat(model, true).dump(), "application/json");
    ASSERT_TRUE(streamed);
    ASSERT_EQ(streamed->status, 200);
    EXPECT_THAT(streamed->get_header_value("Content-Type"),
                HasSubstr("text/event-stream"));
    std::string text, finish;
    bool done = false;
    for (absl::string_view event :
         absl::StrSplit(streamed->body, "\n\n", absl::SkipEmpty())) {
      ASSERT_TRUE(absl::StartsWith(event, "data: ")) << event;
      event.remove_prefix(6);
      if (event == "[DONE]") {
        done = true;
        continue;
      }
      const json chunk = json::parse(event);
      EXPECT_EQ(chunk["object"], "chat.completion.chunk");
      const json& choice = chunk["choices"][0];
      if (choice["delta"].contains("content"))
        text += choice["delta"]["content"].get<std::string>();
      if (!choice["finish_reason"].is_null()) finish = choice["finish_reason"];
    }
    EXPECT_TRUE(done);
    EXPECT_EQ(finish, body["choices"][0]["finish_reason"]);
    EXPECT_EQ(text, answers[model]) << model;
  }
  // Each adapter answers as its own weights do, without reloading the base.
  EXPECT_NE(answers["alpha"], answers["beta"]);
  EXPECT_NE(answers["alpha"], answers["model"]);

  auto completion = client.Post(
      "/v1/completions",
      json{{"prompt", "ab"}, {"max_tokens", 3}, {"temperature", 0}}.dump(),
      "application/json");
  ASSERT_TRUE(completion);
  ASSERT_EQ(completion->status, 200);
  EXPECT_EQ(json::parse(completion->body)["object"], "text_completion");
}

// OpenAI's official Node client (npm "openai", installed into the build tree
// by scripts/test.sh) talks to the server: models, a plain and a streamed
// chat with each adapter, the streamed text equal to the plain one.
TEST_F(ServeTest, OpenAisNodeClientChatsWithEachAdapter) {
  const std::string host = Start({"--api-key-file", dir_.Join("key.txt")});
  const std::string base_url = absl::StrCat("http://", host, ":", port_, "/v1");
  ProcessResult result =
      RunProcess({"/usr/bin/env", "node",
                  OPENFORCE_SOURCE_DIR "/tests/integration/openai_client.js",
                  base_url, "s3cret-key", "alpha", "beta"},
                 {"NODE_PATH=" OPENFORCE_NODE_MODULES});
  ASSERT_EQ(result.exit_code, 0) << result.stderr_text;
  const json out = json::parse(result.stdout_text);
  EXPECT_EQ(out["models"], json({"model", "alpha", "beta"}));
  for (const char* model : {"alpha", "beta"}) {
    const json& answer = out["answers"][model];
    EXPECT_EQ(answer["plain"], answer["streamed"]) << model;
    EXPECT_EQ(answer["finish"], "length") << model;
    EXPECT_EQ(answer["usage"]["prompt_tokens"], 21) << model;
  }
  EXPECT_NE(out["answers"]["alpha"]["plain"], out["answers"]["beta"]["plain"]);
}

// A client that goes away mid-stream stops its generation: the next request
// in the queue is answered at once instead of after a long reply nobody
// reads (100k tokens would take the tiny model well over a minute).
TEST_F(ServeTest, AClientThatDisconnectsStopsItsGeneration) {
  const std::string host = Start();
  httplib::Client reader = Client(host);
  json endless = Chat("model", true);
  endless["max_tokens"] = 100000;
  endless["temperature"] = 1.0;
  httplib::Request request;
  request.method = "POST";
  request.path = "/v1/chat/completions";
  request.body = endless.dump();
  request.set_header("Content-Type", "application/json");
  int chunks = 0;
  request.content_receiver = [&chunks](const char*, size_t, uint64_t,
                                       uint64_t) { return ++chunks < 3; };
  reader.send(request);  // returns once the receiver hangs up
  EXPECT_GE(chunks, 3);
  const auto start = std::chrono::steady_clock::now();
  httplib::Client next = Client(host);
  auto answered = next.Post("/v1/chat/completions", Chat("model", false).dump(),
                            "application/json");
  ASSERT_TRUE(answered);
  EXPECT_EQ(answered->status, 200);
  EXPECT_LT(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count(),
      30.0);
}

TEST_F(ServeTest, ErrorsAreOpenAiJsonWithTheirStatus) {
  const std::string host = Start({"--api-key-file", dir_.Join("key.txt")});
  httplib::Client client = Client(host);
  auto missing = client.Post("/v1/chat/completions",
                             Chat("model", false).dump(), "application/json");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 401);
  EXPECT_EQ(json::parse(missing->body)["error"]["code"], "invalid_api_key");
  httplib::Headers wrong = {{"Authorization", "Bearer s3cret-kez"}};
  auto bad_key = client.Post("/v1/models", wrong, "", "application/json");
  ASSERT_TRUE(bad_key);
  EXPECT_EQ(bad_key->status, 401);

  client.set_bearer_token_auth("s3cret-key");
  auto bad_json =
      client.Post("/v1/chat/completions", "{oops", "application/json");
  ASSERT_TRUE(bad_json);
  EXPECT_EQ(bad_json->status, 400);
  EXPECT_THAT(
      json::parse(bad_json->body)["error"]["message"].get<std::string>(),
      HasSubstr("not valid JSON"));
  auto unknown = client.Post("/v1/chat/completions",
                             Chat("gamma", false).dump(), "application/json");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  EXPECT_EQ(json::parse(unknown->body)["error"]["code"], "model_not_found");
  json no_messages = Chat("model", false);
  no_messages.erase("messages");
  auto invalid = client.Post("/v1/chat/completions", no_messages.dump(),
                             "application/json");
  ASSERT_TRUE(invalid);
  EXPECT_EQ(invalid->status, 400);
  EXPECT_THAT(invalid->body, HasSubstr("messages"));
  auto oversize = client.Post("/v1/completions", std::string(2 << 20, 'a'),
                              "application/json");
  ASSERT_TRUE(oversize);
  EXPECT_EQ(oversize->status, 413);
  auto good = client.Post("/v1/chat/completions", Chat("beta", false).dump(),
                          "application/json");
  ASSERT_TRUE(good);
  EXPECT_EQ(good->status, 200) << good->body;
}

TEST_F(ServeTest, RefusesToListenOffLoopbackWithoutAKey) {
  ProcessResult refused =
      RunProcess({OPENFORCE_WORKER_PATH, "serve", "--model", task_.model_dir,
                  "--listen", "0.0.0.0:0"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.stderr_text, HasSubstr("--api-key-file"));
}

}  // namespace
}  // namespace openforce::testing
