// LoRA training: a small learnable task on a tiny random model, exact resume
// from a checkpoint, the learning-rate schedule, and the data pipeline's
// masking and packing.
#include "lora/trainer.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/function.h>

#include <random>
#include <set>

#include "lora/generation.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tensor_matchers.h"
#include "tests/testing/tiny_llama.h"

namespace openforce::lora {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

// Key-to-value lookup behind a noisy prefix: "<0-3 digits><key>=" -> "<two
// letters>". The mapping is fixed; held-out examples have prefixes the training
// set never showed.
struct LookupTask {
  std::map<char, std::string> values;
  std::vector<TrainingRecord> Sample(int count, uint64_t seed) const {
    std::mt19937_64 rng(seed);
    std::vector<TrainingRecord> records;
    for (int i = 0; i < count; ++i) {
      std::string prompt;
      for (int n = static_cast<int>(rng() % 4); n > 0; --n)
        prompt += char('0' + rng() % 10);
      const char key = static_cast<char>('a' + rng() % values.size());
      prompt += key;
      prompt += '=';
      records.push_back({prompt, values.at(key)});
    }
    return records;
  }
};

LookupTask MakeTask(int keys, uint64_t seed) {
  LookupTask task;
  std::mt19937_64 rng(seed);
  for (int k = 0; k < keys; ++k) {
    task.values['a' + k] = {char('A' + rng() % 26), char('A' + rng() % 26)};
  }
  return task;
}

LlamaConfig TrainingConfig() {
  LlamaConfig config = testing::TinyLlamaConfig();
  config.hidden_size = 64;
  config.intermediate_size = 128;
  config.head_dim = 16;
  return config;
}

LoraConfig TrainingLora(double dropout = 0.0) {
  LoraConfig lora;
  lora.rank = 8;
  lora.alpha = 16;
  lora.dropout = dropout;
  lora.targets = {kAllProjections, kAllProjections + 7};
  return lora;
}

double ExactMatch(const LlamaModel& model, const LoraAdapter* adapter,
                  const std::vector<TrainingRecord>& records) {
  ByteTokenizer tokenizer;
  int correct = 0;
  for (const TrainingRecord& record : records) {
    GenerationOptions options;
    options.max_new_tokens = static_cast<int64_t>(record.completion.size());
    options.adapter = adapter;
    absl::StatusOr<GenerationResult> result =
        Generate(model, *tokenizer.Encode(record.prompt, true), options);
    correct +=
        result.ok() && *tokenizer.Decode(result->tokens) == record.completion;
  }
  return static_cast<double>(correct) / static_cast<double>(records.size());
}

TEST(TrainerTest, LearnsALookupTaskAndLeavesBaseWeightsUntouched) {
  const LlamaConfig config = TrainingConfig();
  // A random model initialised at std 0.02 cannot express a confident
  // prediction through its frozen lm_head (logits stay within about +-1); a
  // wider init stands in for the large-norm features of a pretrained model.
  LlamaModel model(config, RandomLlamaWeights(config, 31, at::kFloat, 0.1));
  std::vector<at::Tensor> base_before;
  for (const LayerWeights& layer : model.weights().layers) {
    for (Projection p : kAllProjections)
      base_before.push_back(layer[p].clone());
  }
  const LookupTask task = MakeTask(12, 5);
  const std::vector<TrainingRecord> train_records = task.Sample(384, 1);
  const std::vector<TrainingRecord> held_out_records = task.Sample(96, 2);
  ByteTokenizer tokenizer;
  TokenizeOptions tokenize;
  tokenize.sequence_length = 12;
  absl::StatusOr<std::vector<Example>> train =
      TokenizeRecords(train_records, tokenizer, tokenize);
  absl::StatusOr<std::vector<Example>> held_out =
      TokenizeRecords(held_out_records, tokenizer, tokenize);
  ASSERT_OK(train);
  ASSERT_OK(held_out);

  absl::StatusOr<LoraAdapter> adapter =
      LoraAdapter::Create(config, TrainingLora(0.05), 7);
  ASSERT_OK(adapter);
  absl::StatusOr<double> loss_before =
      EvaluateLoss(model, &*adapter, *held_out, 32);
  ASSERT_OK(loss_before);
  const double match_before = ExactMatch(model, &*adapter, held_out_records);

  TrainingOptions options;
  options.learning_rate = 1e-2;
  options.max_steps = 200;
  options.batch_size = 16;
  options.warmup_steps = 10;
  options.seed = 3;
  absl::StatusOr<std::unique_ptr<Trainer>> trainer =
      Trainer::Create(&model, &*adapter, *train, options);
  ASSERT_OK(trainer);
  StepMetrics last;
  for (int i = 0; i < options.max_steps; ++i) {
    absl::StatusOr<StepMetrics> metrics = (*trainer)->Step();
    ASSERT_OK(metrics);
    last = *metrics;
    if (std::getenv("OPENFORCE_VERBOSE") && i % 25 == 0) {
      std::cout << "step " << metrics->step << " loss " << metrics->loss
                << " grad " << metrics->grad_norm << " lr "
                << metrics->learning_rate << "\n";
    }
  }
  EXPECT_EQ(last.step, 200);
  EXPECT_GT(last.tokens, 0);

  absl::StatusOr<double> loss_after =
      EvaluateLoss(model, &*adapter, *held_out, 32);
  ASSERT_OK(loss_after);
  const double match_after = ExactMatch(model, &*adapter, held_out_records);
  std::cout << "held-out loss " << *loss_before << " -> " << *loss_after
            << ", exact match " << match_before << " -> " << match_after
            << "\n";
  EXPECT_LT(*loss_after, 0.5 * *loss_before);
  EXPECT_GT(match_after, match_before + 0.5);

  size_t i = 0;
  for (const LayerWeights& layer : model.weights().layers) {
    for (Projection p : kAllProjections) {
      EXPECT_TRUE(testing::TensorsEqual(layer[p], base_before[i++]));
      EXPECT_FALSE(layer[p].requires_grad());
    }
  }
}

TEST(TrainerTest, QloraLearnsOnAQuantizedBaseWithCheckpointing) {
  const LlamaConfig config = TrainingConfig();
  LlamaWeights weights = RandomLlamaWeights(config, 31, at::kFloat, 0.1);
  ASSERT_OK(QuantizeBaseProjections(&weights, WeightFormat::kNf4));
  LlamaModel model(config, std::move(weights));
  const LookupTask task = MakeTask(12, 5);
  const std::vector<TrainingRecord> held_out_records = task.Sample(96, 2);
  ByteTokenizer tokenizer;
  TokenizeOptions tokenize;
  tokenize.sequence_length = 12;
  absl::StatusOr<std::vector<Example>> train =
      TokenizeRecords(task.Sample(384, 1), tokenizer, tokenize);
  absl::StatusOr<std::vector<Example>> held_out =
      TokenizeRecords(held_out_records, tokenizer, tokenize);
  ASSERT_OK(train);
  ASSERT_OK(held_out);
  TrainingOptions options;
  options.learning_rate = 1e-2;
  options.max_steps = 200;
  options.batch_size = 16;
  options.warmup_steps = 10;
  options.seed = 3;
  options.gradient_checkpointing = true;

  // The same steps with and without checkpointing give the same adapter, and
  // a second run gives the same bytes (workers of a QLoRA job must agree).
  auto train_steps = [&](bool checkpointing, int steps) {
    LoraAdapter adapter = *LoraAdapter::Create(config, TrainingLora(), 7);
    TrainingOptions short_run = options;
    short_run.gradient_checkpointing = checkpointing;
    auto trainer = *Trainer::Create(&model, &adapter, *train, short_run);
    for (int i = 0; i < steps; ++i) EXPECT_OK(trainer->Step());
    return adapter;
  };
  const LoraAdapter a = train_steps(true, 3);
  const LoraAdapter b = train_steps(true, 3);
  const LoraAdapter c = train_steps(false, 3);
  for (size_t i = 0; i < a.Parameters().size(); ++i) {
    EXPECT_TRUE(testing::TensorsEqual(a.Parameters()[i], b.Parameters()[i]));
    EXPECT_TRUE(
        testing::TensorsNear(a.Parameters()[i], c.Parameters()[i], 1e-5));
  }

  absl::StatusOr<LoraAdapter> adapter =
      LoraAdapter::Create(config, TrainingLora(), 7);
  ASSERT_OK(adapter);
  const double loss_before = *EvaluateLoss(model, &*adapter, *held_out, 32);
  const double match_before = ExactMatch(model, &*adapter, held_out_records);
  auto trainer = *Trainer::Create(&model, &*adapter, *train, options);
  for (int i = 0; i < options.max_steps; ++i) ASSERT_OK(trainer->Step());
  const double loss_after = *EvaluateLoss(model, &*adapter, *held_out, 32);
  const double match_after = ExactMatch(model, &*adapter, held_out_records);
  std::cout << "QLoRA nf4 held-out loss " << loss_before << " -> " << loss_after
            << ", exact match " << match_before << " -> " << match_after
            << "\n";
  EXPECT_LT(loss_after, 0.5 * loss_before);
  EXPECT_GT(match_after, match_before + 0.5);
  // The base stayed quantized and frozen.
  EXPECT_TRUE(model.weights().layers[0].Quantized(Projection::kQ).defined());
  EXPECT_FALSE(model.weights().layers[0][Projection::kQ].defined());
}

class ResumeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = TrainingConfig();
    model_ =
        std::make_unique<LlamaModel>(config_, RandomLlamaWeights(config_, 41));
    ByteTokenizer tokenizer;
    TokenizeOptions tokenize;
    tokenize.sequence_length = 12;
    data_ = *TokenizeRecords(MakeTask(8, 9).Sample(40, 4), tokenizer, tokenize);
    options_.learning_rate = 5e-3;
    options_.max_steps = 10;
    options_.batch_size = 6;  // 40 examples: epochs turn over mid-run
    options_.gradient_accumulation = 2;
    options_.warmup_steps = 3;
    options_.seed = 17;
  }

  // Trains a fresh adapter for `steps` steps; returns the per-step losses.
  std::vector<double> Train(Trainer* trainer, int steps) {
    std::vector<double> losses;
    for (int i = 0; i < steps; ++i) {
      absl::StatusOr<StepMetrics> metrics = trainer->Step();
      EXPECT_OK(metrics);
      losses.push_back(metrics.ok() ? metrics->loss : -1);
    }
    return losses;
  }

  LlamaConfig config_;
  std::unique_ptr<LlamaModel> model_;
  std::vector<Example> data_;
  TrainingOptions options_;
  testing::TempDir dir_;
};

TEST_F(ResumeTest, StoppingAndResumingIsBitIdenticalToTrainingStraight) {
  absl::StatusOr<LoraAdapter> straight =
      LoraAdapter::Create(config_, TrainingLora(0.1), 1);
  ASSERT_OK(straight);
  auto straight_trainer =
      *Trainer::Create(model_.get(), &*straight, data_, options_);
  const std::vector<double> straight_losses = Train(straight_trainer.get(), 10);

  absl::StatusOr<LoraAdapter> first =
      LoraAdapter::Create(config_, TrainingLora(0.1), 1);
  ASSERT_OK(first);
  std::vector<double> resumed_losses;
  {
    auto trainer = *Trainer::Create(model_.get(), &*first, data_, options_);
    resumed_losses = Train(trainer.get(), 4);
    ASSERT_OK(trainer->SaveCheckpoint(dir_.Join("checkpoint")));
    // Whatever happens after the checkpoint is lost with the process.
    Train(trainer.get(), 2);
  }
  // A new process: fresh adapter object, fresh trainer, state from disk.
  absl::StatusOr<LoraAdapter> second =
      LoraAdapter::Create(config_, TrainingLora(0.1), 99);
  ASSERT_OK(second);
  auto trainer = *Trainer::Create(model_.get(), &*second, data_, options_);
  ASSERT_OK(trainer->RestoreCheckpoint(dir_.Join("checkpoint")));
  EXPECT_EQ(trainer->step(), 4);
  const std::vector<double> rest = Train(trainer.get(), 6);
  resumed_losses.insert(resumed_losses.end(), rest.begin(), rest.end());

  EXPECT_EQ(resumed_losses, straight_losses);
  const auto expected = straight->NamedTensors();
  const auto actual = second->NamedTensors();
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_TRUE(testing::TensorsEqual(actual[i].second, expected[i].second))
        << expected[i].first;
  }
}

TEST_F(ResumeTest, SameSeedSameResultOtherSeedOtherResult) {
  auto run = [&](uint64_t seed) {
    TrainingOptions options = options_;
    options.seed = seed;
    LoraAdapter adapter = *LoraAdapter::Create(config_, TrainingLora(0.1), 1);
    auto trainer = *Trainer::Create(model_.get(), &adapter, data_, options);
    return Train(trainer.get(), 3);
  };
  EXPECT_EQ(run(5), run(5));
  EXPECT_NE(run(5), run(6));
}

TEST_F(ResumeTest, RefusesACheckpointFromAnotherRun) {
  LoraAdapter adapter = *LoraAdapter::Create(config_, TrainingLora(), 1);
  auto trainer = *Trainer::Create(model_.get(), &adapter, data_, options_);
  ASSERT_OK(trainer->Step());
  ASSERT_OK(trainer->SaveCheckpoint(dir_.Join("checkpoint")));
  TrainingOptions other = options_;
  other.seed = 18;
  auto other_trainer = *Trainer::Create(model_.get(), &adapter, data_, other);
  EXPECT_THAT(other_trainer->RestoreCheckpoint(dir_.Join("checkpoint")),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("another seed")));
  EXPECT_THAT(
      trainer->RestoreCheckpoint(dir_.Join("absent")),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("trainer_state.json")));
}

TEST(ScheduleTest, WarmsUpLinearlyThenDecaysAlongACosine) {
  TrainingOptions options;
  options.learning_rate = 1.0;
  options.max_steps = 110;
  options.warmup_steps = 10;
  EXPECT_DOUBLE_EQ(ScheduledLearningRate(options, 0), 0.1);
  EXPECT_DOUBLE_EQ(ScheduledLearningRate(options, 9), 1.0);
  EXPECT_DOUBLE_EQ(ScheduledLearningRate(options, 10), 1.0);
  EXPECT_NEAR(ScheduledLearningRate(options, 60), 0.5, 1e-12);
  EXPECT_NEAR(ScheduledLearningRate(options, 110), 0.0, 1e-12);
}

TEST(DatasetTest, MasksPromptsAndPadding) {
  ByteTokenizer tokenizer;
  TokenizeOptions options;
  options.sequence_length = 10;
  absl::StatusOr<std::vector<Example>> examples =
      TokenizeRecords({{"ab", "cd"}, {"", "xyz"}}, tokenizer, options);
  ASSERT_OK(examples);
  const Example& prompted = (*examples)[0];
  EXPECT_EQ(prompted.input_ids,
            (std::vector<int64_t>{1, 3 + 'a', 3 + 'b', 3 + 'c', 3 + 'd', 2, 0,
                                  0, 0, 0}));
  EXPECT_EQ(prompted.labels,
            (std::vector<int64_t>{-100, -100, -100, 3 + 'c', 3 + 'd', 2, -100,
                                  -100, -100, -100}));
  const Example& text = (*examples)[1];
  EXPECT_EQ(text.labels[0], -100);  // bos
  EXPECT_EQ(text.labels[1], 3 + 'x');
}

TEST(DatasetTest, PacksIntoFullSequences) {
  ByteTokenizer tokenizer;
  TokenizeOptions options;
  options.sequence_length = 4;
  options.packing = true;
  // Two records of 1 + 3 + 1 = 5 tokens: 10 tokens make two full sequences
  // of 4.
  absl::StatusOr<std::vector<Example>> examples =
      TokenizeRecords({{"", "abc"}, {"", "def"}}, tokenizer, options);
  ASSERT_OK(examples);
  ASSERT_EQ(examples->size(), 2u);
  EXPECT_EQ((*examples)[1].input_ids,
            (std::vector<int64_t>{2, 1, 3 + 'd', 3 + 'e'}));
}

TEST(DatasetTest, ConversationRecordsAreCheckedAndNeedATemplate) {
  const std::string good =
      R"({"messages": [{"role": "user", "content": "hi"}, )"
      R"({"role": "assistant", "content": "hello"}]})";
  absl::StatusOr<std::vector<TrainingRecord>> records =
      ParseJsonl("{\"text\": \"a\"}\n" + good + "\n", "chat.jsonl");
  ASSERT_OK(records);
  ASSERT_EQ(records->size(), 2u);
  EXPECT_FALSE((*records)[1].conversation.empty());
  EXPECT_EQ((*records)[1].line, 2);
  EXPECT_THAT(
      ParseJsonl(R"({"messages": [{"role": "user", "content": "hi"}]})",
                 "chat.jsonl"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("chat.jsonl:1:"), HasSubstr("no assistant"))));
  EXPECT_THAT(
      ParseJsonl("\n" + std::string(R"({"messages": [{"role": "robot", )"
                                    R"("content": "x"}]})"),
                 "chat.jsonl"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("chat.jsonl:2:"), HasSubstr("'robot'"))));
  EXPECT_THAT(ParseJsonl(R"({"messages": [{"role": "user"}]})", "chat.jsonl"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("message 1 needs a string \"content\"")));
  EXPECT_THAT(ParseJsonl(R"({"messages": []})", "chat.jsonl"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("non-empty list")));
  // Without the model's chat template a conversation cannot be rendered.
  ByteTokenizer tokenizer;
  EXPECT_THAT(
      TokenizeRecords(*records, tokenizer, TokenizeOptions()),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               AllOf(HasSubstr("line 2"), HasSubstr("no chat template"))));
  // With one, only the assistant's text (and eos) carries labels.
  absl::StatusOr<ChatTemplate> chat = ChatTemplate::Parse(
      "{% for m in messages %}<{{ m.role }}>{{ m.content }}"
      "{% if m.role == 'assistant' %}</s>{% endif %}{% endfor %}",
      R"({"eos_token": "</s>"})", "template");
  ASSERT_OK(chat);
  absl::StatusOr<Example> example =
      TokenizeConversation((*records)[1].conversation, *chat, tokenizer);
  ASSERT_OK(example);
  std::string learned;
  for (size_t i = 0; i < example->labels.size(); ++i) {
    if (example->labels[i] != kIgnoreLabel) {
      learned += *tokenizer.DecodeTokens({example->labels[i]}, false);
    }
  }
  // The byte tokenizer's eos is its id 2, "</s>"; the template's "</s>" text
  // is bytes, so the learned part is the content followed by those bytes.
  EXPECT_EQ(learned, "hello</s>");
  EXPECT_EQ(*tokenizer.Decode(example->input_ids),
            "<user>hi<assistant>hello</s>");
}

TEST(DatasetTest, JsonlErrorsNameTheLine) {
  EXPECT_OK(ParseJsonl(
      "{\"text\": \"a\"}\n\n{\"prompt\": \"q\", \"completion\": \"a\"}\n",
      "d"));
  EXPECT_THAT(
      ParseJsonl("{\"text\": \"a\"}\n{\"txt\": \"b\"}\n", "data.jsonl"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("data.jsonl:2:")));
  EXPECT_THAT(ParseJsonl("{\"text\": \"a\"}\nnot json\n", "data.jsonl"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("data.jsonl:2: not valid JSON")));
  EXPECT_THAT(ParseJsonl("[1]\n", "data.jsonl"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("data.jsonl:1: not a JSON object")));
  // A line nested 400k deep is refused before anything recurses over it.
  EXPECT_THAT(ParseJsonl("{\"text\": " + std::string(400'000, '[') +
                             std::string(400'000, ']') + "}\n",
                         "data.jsonl"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("data.jsonl:1: JSON nests deeper than 64")));
  EXPECT_THAT(ParseJsonl("{\"prompt\": \"q\", \"completion\": \"\"}", "d"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("nothing to learn")));
  EXPECT_THAT(
      ParseJsonl("\n", "d"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no records")));
}

}  // namespace
}  // namespace openforce::lora

namespace openforce::lora {
namespace {

// Gradient checkpointing changes memory, not results: the same steps with and
// without it (dropout on, so the recomputation must redraw the same masks)
// give the same loss, gradient norm and adapter, for a plain Llama and for a
// Gemma-style model with sliding windows and its extra norms.
TEST(TrainerTest, GradientCheckpointingGivesTheSameSteps) {
  for (const char* family : {"llama", "gemma3_text"}) {
    LlamaConfig config = TrainingConfig();
    config.model_type = family;
    ApplyFamilyDefaults(&config);
    config.head_dim = 16;
    config.layer_is_sliding.assign(config.num_hidden_layers, false);
    if (config.gemma_norms) {
      config.sliding_window = 4;
      config.layer_is_sliding[0] = true;
    }
    const LlamaModel model(config,
                           RandomLlamaWeights(config, 31, at::kFloat, 0.1));
    const std::vector<TrainingRecord> records = MakeTask(6, 5).Sample(32, 1);
    ByteTokenizer tokenizer;
    TokenizeOptions tokenize;
    tokenize.sequence_length = 12;
    absl::StatusOr<std::vector<Example>> data =
        TokenizeRecords(records, tokenizer, tokenize);
    ASSERT_OK(data);
    std::vector<std::vector<StepMetrics>> metrics(2);
    std::vector<LoraAdapter> adapters;
    for (const bool checkpointing : {false, true}) {
      absl::StatusOr<LoraAdapter> adapter =
          LoraAdapter::Create(config, TrainingLora(0.1), 7);
      ASSERT_OK(adapter);
      TrainingOptions options;
      options.learning_rate = 1e-2;
      options.max_steps = 3;
      options.batch_size = 8;
      options.seed = 3;
      options.gradient_checkpointing = checkpointing;
      absl::StatusOr<std::unique_ptr<Trainer>> trainer =
          Trainer::Create(&model, &*adapter, *data, options);
      ASSERT_OK(trainer);
      for (int step = 0; step < options.max_steps; ++step) {
        absl::StatusOr<StepMetrics> step_metrics = (*trainer)->Step();
        ASSERT_OK(step_metrics);
        metrics[checkpointing].push_back(*step_metrics);
      }
      adapters.push_back(adapter->Clone());
    }
    for (size_t step = 0; step < metrics[0].size(); ++step) {
      EXPECT_NEAR(metrics[0][step].loss, metrics[1][step].loss, 1e-6) << family;
      EXPECT_NEAR(metrics[0][step].grad_norm, metrics[1][step].grad_norm, 1e-5)
          << family;
      EXPECT_GT(metrics[0][step].grad_norm, 0) << family;
    }
    const std::vector<at::Tensor> plain = adapters[0].Parameters();
    const std::vector<at::Tensor> checkpointed = adapters[1].Parameters();
    ASSERT_EQ(plain.size(), checkpointed.size());
    for (size_t i = 0; i < plain.size(); ++i) {
      EXPECT_TRUE(testing::TensorsNear(plain[i], checkpointed[i], 1e-6))
          << family << " parameter " << i;
    }
  }
}

}  // namespace
}  // namespace openforce::lora

namespace openforce::lora {
namespace {

// With checkpointing, each decoder layer is one recomputing node in the
// autograd graph instead of its dozens of saved operations.
TEST(TrainerTest, CheckpointedForwardRecordsOneNodePerLayer) {
  const LlamaConfig config = TrainingConfig();
  const LlamaModel model(config, RandomLlamaWeights(config, 31));
  absl::StatusOr<LoraAdapter> adapter =
      LoraAdapter::Create(config, TrainingLora(), 7);
  ASSERT_OK(adapter);
  // As the trainer marks them.
  for (at::Tensor parameter : adapter->Parameters())
    parameter.requires_grad_(true);
  for (const bool checkpointing : {false, true}) {
    ForwardOptions options;
    options.adapter = &*adapter;
    options.gradient_checkpointing = checkpointing;
    at::Tensor logits =
        model.Forward(at::arange(8, at::kLong).unsqueeze(0), options);
    std::vector<std::shared_ptr<torch::autograd::Node>> pending = {
        logits.grad_fn()};
    std::set<torch::autograd::Node*> seen;
    int recomputing = 0, nodes = 0;
    while (!pending.empty()) {
      std::shared_ptr<torch::autograd::Node> node = pending.back();
      pending.pop_back();
      if (node == nullptr || !seen.insert(node.get()).second) continue;
      ++nodes;
      recomputing += node->name() == "CheckpointBackward";
      for (const torch::autograd::Edge& edge : node->next_edges()) {
        pending.push_back(edge.function);
      }
    }
    EXPECT_EQ(recomputing, checkpointing ? config.num_hidden_layers : 0);
    if (checkpointing) {
      EXPECT_LT(nodes, 60);
    }
  }
}

}  // namespace
}  // namespace openforce::lora
