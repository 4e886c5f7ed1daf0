// `openforce-worker tokenize` as people and scripts run it: the fixtures'
// tokenizer directories (tokenizer files only, no config.json or weights),
// whole files through one process with --jsonl, plain and --json modes, and
// errors that name the bad line.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace openforce {
namespace {

const std::string kTokenizers = OPENFORCE_FIXTURE_DIR "/tokenizers";

// Runs the worker through a shell so that `input` arrives on stdin.
testing::ProcessResult Tokenize(const testing::TempDir& dir,
                                const std::string& input,
                                const std::string& flags) {
  const std::string input_path = dir.WriteFile("input.txt", input);
  return testing::RunProcess({"/bin/sh", "-c",
                              std::string(OPENFORCE_WORKER_PATH) +
                                  " tokenize " + flags + " < " + input_path});
}

std::vector<nlohmann::json> Lines(const std::string& text) {
  std::vector<nlohmann::json> lines;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    lines.push_back(nlohmann::json::parse(line));
  }
  return lines;
}

TEST(TokenizeCliTest, EveryFixtureRowThroughOneProcessPerFamily) {
  for (const auto& entry : std::filesystem::directory_iterator(kTokenizers)) {
    const std::string dir = entry.path().string();
    if (!std::filesystem::exists(dir + "/encode.json")) continue;
    ASSERT_FALSE(std::filesystem::exists(dir + "/config.json"));
    absl::StatusOr<std::string> text = ReadFileToString(dir + "/encode.json");
    ASSERT_OK(text);
    const nlohmann::json rows = nlohmann::json::parse(*text);
    for (const bool special : {false, true}) {
      std::string encode_input, decode_input;
      std::vector<nlohmann::json> expected;
      for (const nlohmann::json& row : rows) {
        if (row["add_special_tokens"].get<bool>() != special) continue;
        encode_input += row["text"].dump() + "\n";
        decode_input += row["ids"].dump() + "\n";
        expected.push_back(row);
      }
      testing::TempDir temp;
      const std::string flags = "--model " + dir + " --jsonl" +
                                (special ? " --add-special-tokens" : "");
      testing::ProcessResult encoded = Tokenize(temp, encode_input, flags);
      ASSERT_EQ(encoded.exit_code, 0) << encoded.stderr_text;
      std::vector<nlohmann::json> results = Lines(encoded.stdout_text);
      ASSERT_EQ(results.size(), expected.size()) << dir;
      for (size_t i = 0; i < results.size(); ++i) {
        EXPECT_EQ(results[i]["ids"], expected[i]["ids"])
            << dir << " " << expected[i]["id"];
        EXPECT_EQ(results[i]["tokens"], expected[i]["tokens"])
            << dir << " " << expected[i]["id"];
      }
      testing::ProcessResult decoded =
          Tokenize(temp, decode_input, "--model " + dir + " --jsonl --decode");
      ASSERT_EQ(decoded.exit_code, 0) << decoded.stderr_text;
      results = Lines(decoded.stdout_text);
      ASSERT_EQ(results.size(), expected.size());
      for (size_t i = 0; i < results.size(); ++i) {
        EXPECT_EQ(results[i]["text"], expected[i]["decoded"])
            << dir << " " << expected[i]["id"];
      }
    }
  }
}

TEST(TokenizeCliTest, PlainAndJsonModes) {
  testing::TempDir temp;
  const std::string model = "--model " + kTokenizers + "/llama3";
  testing::ProcessResult plain =
      Tokenize(temp, "Hello world", model + " --add-special-tokens");
  ASSERT_EQ(plain.exit_code, 0) << plain.stderr_text;
  EXPECT_EQ(plain.stdout_text, "128000 9906 1917\n");
  testing::ProcessResult json =
      Tokenize(temp, "Hello world", model + " --json");
  ASSERT_EQ(json.exit_code, 0);
  EXPECT_EQ(nlohmann::json::parse(json.stdout_text),
            nlohmann::json::parse(
                R"({"ids": [9906, 1917], "tokens": ["Hello", "Ġworld"]})"));
  testing::ProcessResult decoded =
      Tokenize(temp, "128000, 9906 1917\n", model + " --decode");
  ASSERT_EQ(decoded.exit_code, 0);
  EXPECT_EQ(decoded.stdout_text, "<|begin_of_text|>Hello world");
  testing::ProcessResult skipped =
      Tokenize(temp, "128000 9906", model + " --decode --skip-special-tokens");
  EXPECT_EQ(skipped.stdout_text, "Hello");
}

TEST(TokenizeCliTest, BadInputNamesTheLineAndKeepsTheRest) {
  testing::TempDir temp;
  const std::string model = "--model " + kTokenizers + "/qwen3";
  testing::ProcessResult result =
      Tokenize(temp, "\"a\"\n[1]\n{broken\n\"b\"\n", model + " --jsonl");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.stderr_text.find("2 of 4 lines failed"), std::string::npos)
      << result.stderr_text;
  std::vector<nlohmann::json> lines = Lines(result.stdout_text);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_TRUE(lines[0].contains("ids"));
  EXPECT_EQ(lines[1]["line"], 2);
  EXPECT_EQ(lines[2]["line"], 3);
  EXPECT_TRUE(lines[3].contains("ids"));
  testing::ProcessResult bad_ids = Tokenize(temp, "12 x3", model + " --decode");
  EXPECT_EQ(bad_ids.exit_code, 1);
  EXPECT_NE(bad_ids.stderr_text.find("\"x3\" is not a token id"),
            std::string::npos)
      << bad_ids.stderr_text;
  testing::ProcessResult missing =
      Tokenize(temp, "x", "--model " + temp.path());
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.stderr_text.find("has no tokenizer.json"),
            std::string::npos);
}

// `chat-template` renders a fixture conversation with the family's own
// template and prints the reference ids; a template's own refusal reaches
// the user with its message and line.
TEST(ChatTemplateCliTest, RendersFixtureConversationsAndReportsRefusals) {
  for (const char* family : {"llama3", "qwen3", "gemma3"}) {
    const std::string dir = kTokenizers + "/" + family;
    absl::StatusOr<std::string> text = ReadFileToString(dir + "/chat.json");
    ASSERT_OK(text);
    const nlohmann::ordered_json row =
        nlohmann::ordered_json::parse(*text).at(4);  // multi-turn
    nlohmann::ordered_json conversation = {
        {"messages", row["messages"]},
        {"add_generation_prompt", row["add_generation_prompt"]}};
    for (const auto& [key, value] : row["template_vars"].items()) {
      conversation[key] = value;
    }
    testing::TempDir temp;
    const std::string path =
        temp.WriteFile("conversation.json", conversation.dump());
    testing::ProcessResult result =
        testing::RunProcess({OPENFORCE_WORKER_PATH, "chat-template", "--model",
                             dir, "--conversation", path, "--json"});
    ASSERT_EQ(result.exit_code, 0) << family << ": " << result.stderr_text;
    const nlohmann::json json = nlohmann::json::parse(result.stdout_text);
    EXPECT_EQ(json["rendered"].get<std::string>(),
              row["rendered"].get<std::string>())
        << family;
    EXPECT_EQ(json["ids"].get<std::vector<int64_t>>(),
              row["ids"].get<std::vector<int64_t>>())
        << family;
  }
  testing::TempDir temp;
  const std::string path =
      temp.WriteFile("conversation.json",
                     R"({"messages": [{"role": "user", "content": "a"},
                       {"role": "user", "content": "b"}]})");
  testing::ProcessResult refused =
      testing::RunProcess({OPENFORCE_WORKER_PATH, "chat-template", "--model",
                           kTokenizers + "/gemma3", "--conversation", path});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.stderr_text.find("roles must alternate"), std::string::npos)
      << refused.stderr_text;
  EXPECT_NE(refused.stderr_text.find("template line"), std::string::npos);
  testing::ProcessResult no_template =
      testing::RunProcess({OPENFORCE_WORKER_PATH, "chat-template", "--model",
                           kTokenizers + "/mistral", "--conversation", path});
  EXPECT_EQ(no_template.exit_code, 1);
  EXPECT_NE(no_template.stderr_text.find("has no chat template"),
            std::string::npos)
      << no_template.stderr_text;
}

}  // namespace
}  // namespace openforce
