// `openforce-worker infer --interactive`: prompts from standard input, replies
// streamed with their token rate, no network; and the refusal of an adapter
// recorded as trained on another base model.
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/model_manifest.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lora/lora_adapter.h"
#include "nlohmann/json.hpp"
#include "tests/testing/demo_task.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_llama.h"

namespace openforce::testing {
namespace {

using ::testing::HasSubstr;

class ChatTest : public ::testing::Test {
 protected:
  void SetUp() override {
    task_ = WriteDemoTask(dir_.path() + "/task", 8, 2);
    auto adapter =
        lora::LoraAdapter::Create(DemoModelConfig(), lora::LoraConfig{}, 3);
    ASSERT_OK(adapter);
    adapter_dir_ = dir_.path() + "/adapter";
    ASSERT_OK(adapter->Save(adapter_dir_));
  }

  void RecordBaseModel(const std::string& hash) {
    ASSERT_OK(WriteFileAtomically(
        adapter_dir_ + "/openforce_adapter.json",
        nlohmann::json{{"job_id", "job-x"}, {"base_model_hash", hash}}.dump()));
  }

  // Runs the worker binary with `input` on standard input.
  ProcessResult Run(const std::vector<std::string>& args,
                    const std::string& input) {
    const std::string input_path = dir_.path() + "/input.txt";
    EXPECT_OK(WriteFileAtomically(input_path, input));
    std::string command = std::string("exec '") + OPENFORCE_WORKER_PATH + "'";
    for (const std::string& arg : args) absl::StrAppend(&command, " '", arg, "'");
    absl::StrAppend(&command, " < '", input_path, "'");
    return RunProcess({"/bin/sh", "-c", command});
  }

  TempDir dir_;
  DemoTaskFiles task_;
  std::string adapter_dir_;
};

TEST_F(ChatTest, AnswersEachPromptLineWithTheSameTextAsOneShotInference) {
  auto hash = ModelDirectoryHash(task_.model_dir);
  ASSERT_OK(hash);
  RecordBaseModel(*hash);
  ProcessResult chat =
      Run({"infer", "--model", task_.model_dir, "--adapter", adapter_dir_,
           "--interactive", "--greedy", "--max-new-tokens", "3", "--threads",
           "1"},
          "ab\n\ncd\n/quit\nnever read\n");
  ASSERT_EQ(chat.exit_code, 0) << chat.stderr_text;
  // Two replies (the blank line is skipped, nothing after /quit).
  const std::string& out = chat.stdout_text;
  size_t replies = 0;
  for (size_t at = out.find("[3 tokens, "); at != std::string::npos;
       at = out.find("[3 tokens, ", at + 1)) {
    ++replies;
  }
  EXPECT_EQ(replies, 2u) << out;
  EXPECT_THAT(out, HasSubstr(" tokens/s]"));
  // The first reply is what a one-shot run prints for the same prompt.
  ProcessResult once = Run({"infer", "--model", task_.model_dir, "--adapter",
                            adapter_dir_, "--prompt", "ab", "--greedy",
                            "--max-new-tokens", "3", "--threads", "1"},
                           "");
  ASSERT_EQ(once.exit_code, 0) << once.stderr_text;
  const std::string first_reply = out.substr(0, out.find("\n[3 tokens"));
  EXPECT_EQ(first_reply + "\n", once.stdout_text);
}

TEST_F(ChatTest, RefusesAnAdapterTrainedOnAnotherBaseModel) {
  RecordBaseModel(std::string(64, 'a'));
  for (const std::vector<std::string>& mode :
       {std::vector<std::string>{"--interactive"},
        std::vector<std::string>{"--prompt", "ab"}}) {
    std::vector<std::string> args = {"infer", "--model", task_.model_dir,
                                     "--adapter", adapter_dir_};
    args.insert(args.end(), mode.begin(), mode.end());
    ProcessResult refused = Run(args, "ab\n");
    EXPECT_EQ(refused.exit_code, 1);
    EXPECT_THAT(refused.stderr_text,
                HasSubstr("was trained on base model aaaaaaaaaaaaaaaa"));
    EXPECT_THAT(refused.stderr_text, HasSubstr("FAILED_PRECONDITION"));
  }
}

TEST_F(ChatTest, InteractiveTakesNoPromptFlags) {
  ProcessResult both = Run({"infer", "--model", task_.model_dir,
                            "--interactive", "--prompt", "x"},
                           "");
  EXPECT_EQ(both.exit_code, 1);
  EXPECT_THAT(both.stderr_text, HasSubstr("reads prompts from standard input"));
}

}  // namespace
}  // namespace openforce::testing
