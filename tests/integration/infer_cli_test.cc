// `openforce-worker infer` as people run it: reproducing the conformance
// fixture's greedy tokens with and without its PEFT adapter, streaming text
// from a byte-level model, and clear errors for bad requests.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_llama.h"

namespace openforce {
namespace {

using ::openforce::testing::RunProcess;
using ::testing::HasSubstr;

constexpr char kWorker[] = OPENFORCE_WORKER_PATH;
const std::string kFixture = OPENFORCE_FIXTURE_DIR "/hf-llama-tiny";

std::string JoinIds(const nlohmann::json& ids) {
  std::string out;
  for (const auto& id : ids)
    out += (out.empty() ? "" : ",") + std::to_string(id.get<int64_t>());
  return out;
}

TEST(InferCliTest, ReproducesTheFixtureGreedyTokens) {
  const nlohmann::json expected =
      nlohmann::json::parse(*ReadFileToString(kFixture + "/expected.json"));
  const std::string prompt = JoinIds(expected["prompt"]);
  testing::ProcessResult base = RunProcess(
      {kWorker, "infer", "--model", kFixture, "--prompt-ids", prompt,
       "--max-new-tokens", "12", "--greedy", "--json", "--threads=1"});
  ASSERT_EQ(base.exit_code, 0) << base.stderr_text;
  const nlohmann::json base_json = nlohmann::json::parse(base.stdout_text);
  EXPECT_EQ(base_json["generated_ids"], expected["greedy_base"]);
  EXPECT_EQ(base_json["prompt_ids"], expected["prompt"]);
  EXPECT_EQ(base_json["dtype"], "float32");

  for (const char* merge : {"--merge-adapter=false", "--merge-adapter=true"}) {
    testing::ProcessResult adapted =
        RunProcess({kWorker, "infer", "--model", kFixture, "--adapter",
                    kFixture + "/adapter", "--prompt-ids", prompt,
                    "--max-new-tokens", "12", "--greedy", "--json", merge});
    ASSERT_EQ(adapted.exit_code, 0) << adapted.stderr_text;
    EXPECT_EQ(nlohmann::json::parse(adapted.stdout_text)["generated_ids"],
              expected["greedy_adapter"])
        << merge;
  }
}

TEST(InferCliTest, AQuantizedCacheIsWrittenOnceAndMappedAfter) {
  testing::TempDir dir;
  const std::string model =
      testing::WriteTinyLlama(dir.Join("model"), testing::TinyLlamaConfig(), 5);
  auto infer = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {
        kWorker,        "infer",    "--model",          model,
        "--prompt-ids", "1,72,101", "--max-new-tokens", "6",
        "--greedy",     "--json",   "--quantize",       "nf4"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    testing::ProcessResult result = RunProcess(argv);
    EXPECT_EQ(result.exit_code, 0) << result.stderr_text;
    return nlohmann::json::parse(result.stdout_text, nullptr, false);
  };
  const nlohmann::json first = infer({"--quantized-cache"});
  EXPECT_EQ(first["quantized_cache"], "written");
  EXPECT_EQ(first["quantized_sha256"].get<std::string>().size(), 64u);
  EXPECT_TRUE(
      std::filesystem::exists(model + "/openforce-quantized-nf4.safetensors"));
  const nlohmann::json second = infer({});
  EXPECT_EQ(second["quantized_cache"], "read");
  EXPECT_EQ(second["quantized_sha256"], first["quantized_sha256"]);
  EXPECT_EQ(second["generated_ids"], first["generated_ids"]);
  EXPECT_EQ(second["quantized_embeddings"], false);
  // Embeddings and head too: their own cache file and a different base hash.
  const nlohmann::json head =
      infer({"--quantize-embeddings", "--quantized-cache"});
  EXPECT_EQ(head["quantized_embeddings"], true);
  EXPECT_EQ(head["quantized_cache"], "written");
  EXPECT_NE(head["quantized_sha256"], first["quantized_sha256"]);
  EXPECT_TRUE(std::filesystem::exists(
      model + "/openforce-quantized-nf4-embeddings.safetensors"));
  EXPECT_EQ(infer({"--quantize-embeddings"})["quantized_cache"], "read");
}

TEST(InferCliTest, QuantizingEmbeddingsNeedsAQuantizedBase) {
  testing::TempDir dir;
  const std::string model =
      testing::WriteTinyLlama(dir.Join("model"), testing::TinyLlamaConfig(), 5);
  testing::ProcessResult run =
      RunProcess({kWorker, "infer", "--model", model, "--prompt-ids", "1,72",
                  "--max-new-tokens", "2", "--quantize-embeddings"});
  EXPECT_NE(run.exit_code, 0);
  EXPECT_THAT(run.stderr_text,
              HasSubstr("--quantize-embeddings needs --quantize"));
}

TEST(InferCliTest, StreamsTextFromATokenizedModel) {
  testing::TempDir dir;
  const std::string model =
      testing::WriteTinyLlama(dir.Join("model"), testing::TinyLlamaConfig(), 5);
  testing::ProcessResult run =
      RunProcess({kWorker, "infer", "--model", model, "--prompt", "Hello",
                  "--max-new-tokens", "8", "--json"});
  ASSERT_EQ(run.exit_code, 0) << run.stderr_text;
  const nlohmann::json json = nlohmann::json::parse(run.stdout_text);
  EXPECT_EQ(json["prompt_ids"],
            nlohmann::json({1, 75, 104, 111, 111, 114}));  // bos + bytes
  EXPECT_LE(json["generated_ids"].size(), 8u);

  testing::ProcessResult text =
      RunProcess({kWorker, "infer", "--model", model, "--prompt", "Hello",
                  "--max-new-tokens", "8"});
  ASSERT_EQ(text.exit_code, 0) << text.stderr_text;
  // A random model emits arbitrary bytes: the stream carries them as they are
  // (JSON output replaces invalid UTF-8), byte b being token 3 + b.
  std::string expected_bytes;
  for (const auto& id : json["generated_ids"]) {
    const int64_t token = id.get<int64_t>();
    if (token >= 3 && token < 259)
      expected_bytes.push_back(static_cast<char>(token - 3));
  }
  EXPECT_EQ(text.stdout_text, expected_bytes + "\n");

  // Sampling with a seed is reproducible from the command line too.
  std::vector<std::string> sample = {
      kWorker,   "infer",         "--model", model,     "--prompt",
      "Hi",      "--temperature", "1.2",     "--top-k", "50",
      "--top-p", "0.9",           "--seed",  "7",       "--json"};
  EXPECT_EQ(
      nlohmann::json::parse(RunProcess(sample).stdout_text)["generated_ids"],
      nlohmann::json::parse(RunProcess(sample).stdout_text)["generated_ids"]);
}

TEST(InferCliTest, BadRequestsFailWithClearMessages) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  testing::TempDir dir;
  const std::vector<Case> cases = {
      {{"infer", "--prompt", "x"}, "--model is required"},
      {{"infer", "--model", kFixture},
       "exactly one of --prompt or --prompt-ids"},
      {{"infer", "--model", kFixture, "--prompt-ids", "1,x"},
       "'x' is not a token id"},
      {{"infer", "--model", kFixture, "--prompt-ids", "1,999"}, "token 999"},
      {{"infer", "--model", kFixture, "--prompt", "hi"},
       "no tokenizer.json, tokenizer.model"},
      {{"infer", "--model", kFixture, "--prompt-ids", "1", "--greedy",
        "--temperature", "1"},
       "--greedy cannot be combined"},
      {{"infer", "--model", kFixture, "--prompt-ids", "1", "--top-k", "5"},
       "--temperature > 0"},
      {{"infer", "--model", dir.path(), "--prompt-ids", "1"}, "config.json"},
      {{"infer", "--model", kFixture, "--adapter", dir.path(), "--prompt-ids",
        "1"},
       "adapter_config.json"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {kWorker};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    testing::ProcessResult run = RunProcess(argv);
    EXPECT_EQ(run.exit_code, 1) << c.message;
    EXPECT_THAT(run.stderr_text, HasSubstr(c.message));
  }
}

// A byte-level tokenizer.json (GPT-2's byte-to-character table, token id =
// byte value, no merges), as small models can use: it fits every fixture's
// vocabulary.
std::string ByteLevelTokenizerJson() {
  nlohmann::json vocab = nlohmann::json::object();
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool kept =
        (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    const int code_point = kept ? b : next++;
    std::string utf8;
    if (code_point < 0x80) {
      utf8.push_back(static_cast<char>(code_point));
    } else {
      utf8.push_back(static_cast<char>(0xC0 | (code_point >> 6)));
      utf8.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
    }
    vocab[utf8] = b;
  }
  const nlohmann::json byte_level = {{"type", "ByteLevel"},
                                     {"add_prefix_space", false},
                                     {"trim_offsets", false},
                                     {"use_regex", true}};
  return nlohmann::json{{"version", "1.0"},
                        {"added_tokens", nlohmann::json::array()},
                        {"normalizer", {{"type", "NFC"}}},
                        {"pre_tokenizer", byte_level},
                        {"post_processor", byte_level},
                        {"decoder", byte_level},
                        {"model",
                         {{"type", "BPE"},
                          {"vocab", vocab},
                          {"merges", nlohmann::json::array()}}}}
      .dump();
}

// Every family the fixtures hold answers a text prompt through a
// tokenizer.json, and stops at any of generation_config.json's eos ids.
TEST(InferCliTest, EveryFamilyAnswersTextThroughTokenizerJson) {
  for (const char* family : {"hf-llama3-rope-scaling", "hf-qwen3",
                             "hf-mistral-sliding-window", "hf-gemma3-text"}) {
    testing::TempDir dir;
    const std::string source =
        std::string(OPENFORCE_FIXTURE_DIR) + "/" + family;
    for (const char* file : {"config.json", "model.safetensors"}) {
      std::filesystem::copy_file(source + "/" + file, dir.Join(file));
    }
    dir.WriteFile("tokenizer.json", ByteLevelTokenizerJson());
    testing::ProcessResult run = RunProcess(
        {kWorker, "infer", "--model", dir.path(), "--prompt", "hi there",
         "--max-new-tokens", "6", "--json", "--threads=1"});
    ASSERT_EQ(run.exit_code, 0) << family << ": " << run.stderr_text;
    const nlohmann::json json = nlohmann::json::parse(run.stdout_text);
    EXPECT_EQ(json["prompt_ids"],
              nlohmann::json({104, 105, 32, 116, 104, 101, 114, 101}))
        << family;
    const std::vector<int64_t> generated =
        json["generated_ids"].get<std::vector<int64_t>>();
    ASSERT_EQ(generated.size(), 6u) << family;

    // The third token becomes an eos id (in a list, as Llama 3 instruct
    // writes it): generation stops right there.
    size_t stop_at = 2;
    while (stop_at < generated.size() &&
           std::find(generated.begin(), generated.begin() + stop_at,
                     generated[stop_at]) != generated.begin() + stop_at) {
      ++stop_at;
    }
    if (stop_at == generated.size()) continue;  // every token repeats
    dir.WriteFile(
        "generation_config.json",
        nlohmann::json{{"eos_token_id", {9999, generated[stop_at]}}}.dump());
    testing::ProcessResult stopped = RunProcess(
        {kWorker, "infer", "--model", dir.path(), "--prompt", "hi there",
         "--max-new-tokens", "6", "--json", "--threads=1"});
    ASSERT_EQ(stopped.exit_code, 0) << stopped.stderr_text;
    const nlohmann::json stopped_json =
        nlohmann::json::parse(stopped.stdout_text);
    EXPECT_EQ(stopped_json["generated_ids"].size(), stop_at + 1) << family;
    EXPECT_EQ(stopped_json["stop_reason"], "stop_token") << family;
  }
}

}  // namespace
}  // namespace openforce
