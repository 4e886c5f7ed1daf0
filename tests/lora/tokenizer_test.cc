// Tokenizers: the byte-level tokenizer, and SentencePiece through
// libsentencepiece with a model trained here by SentencePiece's own trainer.
#include "lora/tokenizer.h"

#include <gtest/gtest.h>

#include <fstream>

#include "lora/internal/sentencepiece_bridge.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace openforce::lora {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::HasSubstr;

TEST(ByteTokenizerTest, RoundTripsAnyBytesWithLlamaByteIds) {
  ByteTokenizer tokenizer;
  const std::string text = "héllo\n\x01";
  absl::StatusOr<std::vector<int64_t>> ids = tokenizer.Encode(text, true);
  ASSERT_OK(ids);
  ASSERT_EQ(ids->size(), text.size() + 1);
  EXPECT_EQ((*ids)[0], ByteTokenizer::kBos);
  EXPECT_EQ((*ids)[1], 3 + 'h');
  absl::StatusOr<std::string> decoded = tokenizer.Decode(*ids);
  ASSERT_OK(decoded);
  EXPECT_EQ(*decoded, text);  // bos has no text
  EXPECT_THAT(
      tokenizer.Decode({-1}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("negative")));
}

class SentencePieceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ofstream corpus(dir_.Join("corpus.txt"));
    for (int i = 0; i < 300; ++i) {
      corpus << "the community fine-tunes a model together, round " << i
             << "\n";
    }
    corpus.close();
    ASSERT_OK(internal::TrainSentencePiece(
        "--input=" + dir_.Join("corpus.txt") +
        " --model_prefix=" + dir_.Join("tokenizer") +
        " --vocab_size=400 --model_type=bpe --byte_fallback=true "
        "--minloglevel=2"));
  }
  testing::TempDir dir_;
};

TEST_F(SentencePieceTest, EncodesAndDecodesLikeLlamaTokenizers) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      LoadSentencePieceTokenizer(dir_.Join("tokenizer.model"));
  ASSERT_OK(tokenizer);
  EXPECT_EQ((*tokenizer)->vocab_size(), 400);
  EXPECT_EQ((*tokenizer)->bos_id(), 1);
  EXPECT_EQ((*tokenizer)->eos_id(), 2);
  absl::StatusOr<std::vector<int64_t>> ids =
      (*tokenizer)->Encode("the community model", true);
  ASSERT_OK(ids);
  EXPECT_EQ(ids->front(), 1);
  EXPECT_LT(ids->size(), 10u);  // merged pieces, not 19 characters
  absl::StatusOr<std::string> text = (*tokenizer)->Decode(*ids);
  ASSERT_OK(text);
  EXPECT_EQ(*text, "the community model");
  // Unseen characters fall back to bytes and still round-trip.
  absl::StatusOr<std::vector<int64_t>> unseen =
      (*tokenizer)->Encode("Zürich", false);
  ASSERT_OK(unseen);
  EXPECT_EQ(*(*tokenizer)->Decode(*unseen), "Zürich");
  EXPECT_THAT(
      (*tokenizer)->Decode({5000}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("token 5000")));
}

TEST_F(SentencePieceTest, ModelDirectoriesFindTheirTokenizer) {
  testing::TempDir model;
  absl::StatusOr<std::unique_ptr<Tokenizer>> none = LoadTokenizer(model.path());
  EXPECT_THAT(none, StatusIs(absl::StatusCode::kNotFound,
                             HasSubstr("tokenizer.model")));
  ASSERT_OK(WriteByteTokenizerMarker(model.path()));
  absl::StatusOr<std::unique_ptr<Tokenizer>> bytes =
      LoadTokenizer(model.path());
  ASSERT_OK(bytes);
  EXPECT_EQ((*bytes)->vocab_size(), 259);
  model.WriteFile("tokenizer.model", "not a sentencepiece model");
  EXPECT_THAT(
      LoadTokenizer(model.path()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cannot load")));
}

}  // namespace
}  // namespace openforce::lora
