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
    for (const std::string& arg : args)
      absl::StrAppend(&command, " '", arg, "'");
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
  ProcessResult chat = Run({"infer", "--model", task_.model_dir, "--adapter",
                            adapter_dir_, "--interactive", "--raw", "--greedy",
                            "--max-new-tokens", "3", "--threads", "1"},
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
  ProcessResult once = Run(
      {"infer", "--model", task_.model_dir, "--adapter", adapter_dir_,
       "--prompt", "ab", "--greedy", "--max-new-tokens", "3", "--threads", "1"},
      "");
  ASSERT_EQ(once.exit_code, 0) << once.stderr_text;
  const std::string first_reply = out.substr(0, out.find("\n[3 tokens"));
  EXPECT_EQ(first_reply + "\n", once.stdout_text);
}

// With a chat template the conversation is what the model reads: the
// first reply equals a one-shot run on the rendered prompt's ids, and a long
// conversation drops its oldest turns instead of overflowing the context.
TEST_F(ChatTest, AppliesTheChatTemplateAndTrimsTheHistory) {
  const std::string model = task_.model_dir;
  ASSERT_OK(WriteFileAtomically(
      model + "/chat_template.jinja",
      "{% for m in messages %}[{{ m.role }}]{{ m.content }}\n{% endfor %}"
      "{% if add_generation_prompt %}[assistant]{% endif %}"));
  ProcessResult chat =
      Run({"infer", "--model", model, "--interactive", "--system", "Be brief.",
           "--greedy", "--max-new-tokens", "3", "--threads", "1"},
          "ab\n/quit\n");
  ASSERT_EQ(chat.exit_code, 0) << chat.stderr_text;
  const std::string rendered = "[system]Be brief.\n[user]ab\n[assistant]";
  std::string ids;
  for (unsigned char c : rendered) {
    absl::StrAppend(&ids, ids.empty() ? "" : ",", 3 + c);  // byte tokenizer
  }
  ProcessResult once =
      Run({"infer", "--model", model, "--prompt-ids", ids, "--greedy",
           "--max-new-tokens", "3", "--threads", "1"},
          "");
  ASSERT_EQ(once.exit_code, 0) << once.stderr_text;
  EXPECT_EQ(
      chat.stdout_text.substr(0, chat.stdout_text.find("\n[3 tokens")) + "\n",
      once.stdout_text);

  // 256 positions, 3 for the reply: six 40-character turns overflow it.
  std::string input;
  for (int i = 0; i < 6; ++i) input += std::string(40, 'a' + i) + "\n";
  input += std::string(400, 'z') + "\n";
  ProcessResult long_chat =
      Run({"infer", "--model", model, "--interactive", "--greedy",
           "--max-new-tokens", "3", "--threads", "1"},
          input);
  ASSERT_EQ(long_chat.exit_code, 0) << long_chat.stderr_text;
  EXPECT_THAT(long_chat.stdout_text, HasSubstr("[context full: dropped the"));
  EXPECT_THAT(long_chat.stdout_text,
              HasSubstr("prompt tokens; the context leaves room for 253]"));
  // --system without a template is refused rather than ignored.
  ProcessResult raw_system = Run(
      {"infer", "--model", model, "--interactive", "--raw", "--system", "x"},
      "ab\n");
  EXPECT_EQ(raw_system.exit_code, 1);
  EXPECT_THAT(raw_system.stderr_text, HasSubstr("--system needs"));
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
  ProcessResult both = Run(
      {"infer", "--model", task_.model_dir, "--interactive", "--prompt", "x"},
      "");
  EXPECT_EQ(both.exit_code, 1);
  EXPECT_THAT(both.stderr_text, HasSubstr("reads prompts from standard input"));
}

}  // namespace
}  // namespace openforce::testing
