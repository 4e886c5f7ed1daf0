// The tokenizer.json specification piece by piece (the tokenizers crate's
// behaviour for each normalizer, pre-tokenizer, decoder, BPE option, added
// token rule and post-processor), on small hand-made files: what the
// fixtures' four real tokenizers do not exercise. Expected values follow the
// crate's source.
#include "lora/hf_tokenizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "lora/internal/hf_bpe.h"
#include "lora/internal/hf_decoder.h"
#include "lora/internal/hf_normalizer.h"
#include "lora/internal/hf_pattern.h"
#include "lora/internal/hf_pre_tokenizer.h"
#include "lora/internal/unicode_text.h"
#include "tests/testing/status_matchers.h"

namespace openforce::lora {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using json = nlohmann::json;

std::vector<std::string> PreTokenize(const json& config,
                                     const std::string& text,
                                     bool starts_text = true) {
  absl::StatusOr<std::unique_ptr<internal::PreTokenizer>> pre =
      internal::ParsePreTokenizer(config);
  EXPECT_OK(pre);
  std::vector<std::string> pieces = {text};
  (*pre)->PreTokenize(&pieces, starts_text);
  return pieces;
}

std::string Normalize(const json& config, std::string text) {
  absl::StatusOr<std::unique_ptr<internal::Normalizer>> normalizer =
      internal::ParseNormalizer(config);
  EXPECT_OK(normalizer);
  EXPECT_OK((*normalizer)->Normalize(&text));
  return text;
}

std::vector<std::string> Decode(const json& config,
                                std::vector<std::string> tokens) {
  absl::StatusOr<std::unique_ptr<internal::Decoder>> decoder =
      internal::ParseDecoder(config);
  EXPECT_OK(decoder);
  (*decoder)->DecodeChain(&tokens);
  return tokens;
}

json SplitOn(const std::string& behavior, bool invert = false) {
  return {{"type", "Split"},
          {"pattern", {{"String", "-"}}},
          {"behavior", behavior},
          {"invert", invert}};
}

TEST(HfPreTokenizerTest, SplitBehavesAsEachBehaviourSays) {
  EXPECT_THAT(PreTokenize(SplitOn("Removed"), "a-b--c"),
              ElementsAre("a", "b", "c"));
  EXPECT_THAT(PreTokenize(SplitOn("Isolated"), "a-b--c"),
              ElementsAre("a", "-", "b", "-", "-", "c"));
  EXPECT_THAT(PreTokenize(SplitOn("MergedWithPrevious"), "a-b--c"),
              ElementsAre("a-", "b-", "-", "c"));
  EXPECT_THAT(PreTokenize(SplitOn("MergedWithNext"), "a-b--c"),
              ElementsAre("a", "-b", "-", "-c"));
  EXPECT_THAT(PreTokenize(SplitOn("Contiguous"), "a-b--c"),
              ElementsAre("a", "-", "b", "--", "c"));
  EXPECT_THAT(PreTokenize(SplitOn("Removed", /*invert=*/true), "a-b--c"),
              ElementsAre("-", "-", "-"));
  json regex = {{"type", "Split"},
                {"pattern", {{"Regex", "\\p{N}+"}}},
                {"behavior", "Isolated"},
                {"invert", false}};
  EXPECT_THAT(PreTokenize(regex, "ab١٢3cd"), ElementsAre("ab", "١٢3", "cd"));
}

TEST(HfPreTokenizerTest, MetaspaceFollowsItsPrependScheme) {
  json metaspace = {{"type", "Metaspace"},
                    {"replacement", "\u2581"},
                    {"prepend_scheme", "always"},
                    {"split", true}};
  EXPECT_THAT(PreTokenize(metaspace, "Hello  world"),
              ElementsAre("\u2581Hello", "\u2581", "\u2581world"));
  metaspace["prepend_scheme"] = "never";
  EXPECT_THAT(PreTokenize(metaspace, "Hello  world"),
              ElementsAre("Hello", "\u2581", "\u2581world"));
  metaspace["prepend_scheme"] = "first";
  EXPECT_THAT(PreTokenize(metaspace, "Hi", /*starts_text=*/true),
              ElementsAre("\u2581Hi"));
  EXPECT_THAT(PreTokenize(metaspace, "Hi", /*starts_text=*/false),
              ElementsAre("Hi"));
  metaspace["prepend_scheme"] = "always";
  metaspace["split"] = false;
  EXPECT_THAT(PreTokenize(metaspace, "a b"), ElementsAre("\u2581a\u2581b"));
  // Older files: add_prefix_space instead of prepend_scheme.
  EXPECT_THAT(PreTokenize({{"type", "Metaspace"},
                           {"replacement", "\u2581"},
                           {"add_prefix_space", false}},
                          "a b"),
              ElementsAre("a", "\u2581b"));
}

TEST(HfPreTokenizerTest, CharacterClassSplitters) {
  EXPECT_THAT(
      PreTokenize({{"type", "Digits"}, {"individual_digits", true}}, "ab123c"),
      ElementsAre("ab", "1", "2", "3", "c"));
  EXPECT_THAT(
      PreTokenize({{"type", "Digits"}, {"individual_digits", false}}, "ab123c"),
      ElementsAre("ab", "123", "c"));
  EXPECT_THAT(PreTokenize({{"type", "Punctuation"}}, "hi!?there\u3002"),
              ElementsAre("hi", "!", "?", "there", "\u3002"));
  EXPECT_THAT(PreTokenize({{"type", "Whitespace"}}, "Hello, world!  x_y"),
              ElementsAre("Hello", ",", "world", "!", "x_y"));
  EXPECT_THAT(PreTokenize({{"type", "WhitespaceSplit"}}, "a  b\tc\u3000d"),
              ElementsAre("a", "b", "c", "d"));
  EXPECT_THAT(PreTokenize({{"type", "ByteLevel"}, {"add_prefix_space", true}},
                          "Hello world"),
              ElementsAre("\u0120Hello", "\u0120world"));
  EXPECT_THAT(
      PreTokenize({{"type", "Sequence"},
                   {"pretokenizers",
                    {{{"type", "WhitespaceSplit"}},
                     {{"type", "Digits"}, {"individual_digits", true}}}}},
                  "x12 y"),
      ElementsAre("x", "1", "2", "y"));
}

TEST(HfNormalizerTest, EachNormalizer) {
  EXPECT_EQ(Normalize({{"type", "Lowercase"}}, "\u00C0B \u0130"),
            "\u00E0b i\u0307");
  EXPECT_EQ(
      Normalize(
          {{"type", "Strip"}, {"strip_left", true}, {"strip_right", true}},
          "  hi \u3000"),
      "hi");
  EXPECT_EQ(
      Normalize(
          {{"type", "Strip"}, {"strip_left", false}, {"strip_right", true}},
          " hi "),
      " hi");
  EXPECT_EQ(Normalize({{"type", "NFKC"}}, "\uFB01\u2460"), "fi1");
  EXPECT_EQ(Normalize({{"type", "NFD"}}, "\u00E9"), "e\u0301");
  EXPECT_EQ(Normalize({{"type", "NFC"}}, "e\u0301"), "\u00E9");
  EXPECT_EQ(Normalize({{"type", "NFKD"}}, "\u00B2"), "2");
  EXPECT_EQ(Normalize({{"type", "Replace"},
                       {"pattern", {{"Regex", " +"}}},
                       {"content", "_"}},
                      "a  b c"),
            "a_b_c");
  EXPECT_EQ(Normalize({{"type", "Prepend"}, {"prepend", "\u2581"}}, ""), "");
  EXPECT_EQ(Normalize({{"type", "Sequence"},
                       {"normalizers",
                        {{{"type", "Prepend"}, {"prepend", "\u2581"}},
                         {{"type", "Replace"},
                          {"pattern", {{"String", " "}}},
                          {"content", "\u2581"}}}}},
                      "a b"),
            "\u2581a\u2581b");
}

TEST(HfDecoderTest, EachDecoder) {
  EXPECT_THAT(
      Decode({{"type", "Sequence"},
              {"decoders", {{{"type", "ByteFallback"}}, {{"type", "Fuse"}}}}},
             {"<0xE2>", "<0x82>", "<0xAC>", "a", "<0xFF>"}),
      ElementsAre("\u20ACa\uFFFD"));
  EXPECT_THAT(
      Decode({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}},
             {"  hello", " x "}),
      ElementsAre(" hello", "x "));
  EXPECT_THAT(Decode({{"type", "Metaspace"},
                      {"replacement", "\u2581"},
                      {"prepend_scheme", "always"}},
                     {"\u2581Hello", "\u2581world"}),
              ElementsAre("Hello", " world"));
  EXPECT_THAT(
      Decode({{"type", "ByteLevel"}}, {"\u0120hi", "\u00E2\u0124\u00AC"}),
      ElementsAre(" hi\u20AC"));
  EXPECT_THAT(Decode({{"type", "Replace"},
                      {"pattern", {{"String", "_"}}},
                      {"content", " "}},
                     {"a_b"}),
              ElementsAre("a b"));
}

// Decoded bytes that are not UTF-8 become U+FFFD as Rust's
// String::from_utf8_lossy makes them: one per maximal invalid prefix.
TEST(UnicodeTextTest, LossyDecodingMatchesRust) {
  EXPECT_EQ(internal::ToValidUtf8("a\xF0\x9F\x98"
                                  "b"),
            "a\uFFFD"
            "b");
  EXPECT_EQ(internal::ToValidUtf8("\xC0\x80"), "\uFFFD\uFFFD");
  EXPECT_EQ(internal::ToValidUtf8("\xED\xA0\x80"), "\uFFFD\uFFFD\uFFFD");
  EXPECT_EQ(internal::ToValidUtf8("ok \xE2\x82\xAC"), "ok \u20AC");
  EXPECT_FALSE(internal::IsValidUtf8("\xFF"));
  EXPECT_TRUE(internal::IsValidUtf8("\xF0\x9F\x98\x80"));
}

std::unique_ptr<internal::BpeModel> Bpe(
    std::vector<std::pair<std::string, int32_t>> vocab,
    std::vector<std::pair<std::string, std::string>> merges,
    internal::BpeOptions options = {}) {
  absl::StatusOr<std::unique_ptr<internal::BpeModel>> model =
      internal::BpeModel::Create(std::move(vocab), merges, std::move(options));
  EXPECT_OK(model);
  return *std::move(model);
}

std::vector<int32_t> Tokenize(const internal::BpeModel& model,
                              const std::string& word) {
  std::vector<int32_t> ids;
  EXPECT_OK(model.Tokenize(word, &ids));
  return ids;
}

TEST(HfBpeTest, MergesApplyLowestRankFirst) {
  auto model =
      Bpe({{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}, {"abc", 5}},
          {{"b", "c"}, {"a", "b"}, {"a", "bc"}});
  EXPECT_THAT(Tokenize(*model, "abc"), ElementsAre(5));  // a + bc, not ab + c
  EXPECT_THAT(Tokenize(*model, "ab"), ElementsAre(3));
  EXPECT_THAT(Tokenize(*model, "cab"), ElementsAre(2, 3));
}

TEST(HfBpeTest, ByteFallbackUnknownsAndAffixes) {
  internal::BpeOptions fallback;
  fallback.byte_fallback = true;
  fallback.unk_token = "<unk>";
  auto bytes =
      Bpe({{"<unk>", 0}, {"<0xC3>", 1}, {"<0xA9>", 2}, {"a", 3}}, {}, fallback);
  EXPECT_THAT(Tokenize(*bytes, "a\u00E9"), ElementsAre(3, 1, 2));

  internal::BpeOptions fused;
  fused.unk_token = "<unk>";
  fused.fuse_unk = true;
  auto fuse = Bpe({{"<unk>", 0}, {"a", 1}}, {}, fused);
  EXPECT_THAT(Tokenize(*fuse, "xyza"), ElementsAre(0, 1));
  fused.fuse_unk = false;
  auto separate = Bpe({{"<unk>", 0}, {"a", 1}}, {}, fused);
  EXPECT_THAT(Tokenize(*separate, "xyza"), ElementsAre(0, 0, 0, 1));
  // No unknown token: unknown characters are dropped.
  auto dropping = Bpe({{"a", 0}}, {});
  EXPECT_THAT(Tokenize(*dropping, "xa"), ElementsAre(0));
  // An unknown token the vocabulary lacks is an error, not a wrong id.
  internal::BpeOptions missing;
  missing.unk_token = "<unk>";
  auto broken = Bpe({{"a", 0}}, {}, missing);
  std::vector<int32_t> ids;
  EXPECT_THAT(
      broken->Tokenize("x", &ids),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("<unk>")));

  internal::BpeOptions prefix;
  prefix.continuing_subword_prefix = "##";
  auto word_piece_like =
      Bpe({{"a", 0}, {"##b", 1}, {"ab", 2}}, {{"a", "##b"}}, prefix);
  EXPECT_THAT(Tokenize(*word_piece_like, "ab"), ElementsAre(2));

  internal::BpeOptions suffix;
  suffix.end_of_word_suffix = "</w>";
  auto end_of_word =
      Bpe({{"a", 0}, {"b</w>", 1}, {"ab</w>", 2}}, {{"a", "b</w>"}}, suffix);
  EXPECT_THAT(Tokenize(*end_of_word, "ab"), ElementsAre(2));

  internal::BpeOptions ignore;
  ignore.ignore_merges = true;
  auto whole = Bpe({{"a", 0}, {"b", 1}, {"ab", 2}}, {}, ignore);
  EXPECT_THAT(Tokenize(*whole, "ab"), ElementsAre(2));
  auto pieces = Bpe({{"a", 0}, {"b", 1}, {"ab", 2}}, {});
  EXPECT_THAT(Tokenize(*pieces, "ab"), ElementsAre(0, 1));
}

TEST(HfBpeTest, RefusesMergesOutsideTheVocabulary) {
  EXPECT_THAT(
      internal::BpeModel::Create({{"a", 0}, {"b", 1}}, {{"a", "b"}}, {}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'ab'")));
  EXPECT_THAT(
      internal::BpeModel::Create({{"a", 0}, {"b", 0}}, {}, {}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("used by both")));
}

// A character-level tokenizer.json for end-to-end rules.
json CharTokenizer() {
  json vocab = json::object();
  int id = 0;
  for (const char* c : {"<s>", "</s>", "x", "y", "c", "a", "b", "h", "e", "l",
                        "o", " ", "ab", "he", "hel", "hell", "hello"}) {
    vocab[c] = id++;
  }
  return {
      {"version", "1.0"},
      {"added_tokens",
       {{{"id", 0}, {"content", "<s>"}, {"special", true}},
        {{"id", 1}, {"content", "</s>"}, {"special", true}},
        {{"id", 17},
         {"content", "<m>"},
         {"special", false},
         {"lstrip", true},
         {"rstrip", true},
         {"normalized", false}},
        {{"id", 18},
         {"content", "ab"},
         {"special", false},
         {"single_word", true},
         {"normalized", false}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer", nullptr},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single",
         {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
          {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}}},
        {"special_tokens",
         {{"<s>", {{"id", "<s>"}, {"ids", {0}}, {"tokens", {"<s>"}}}},
          {"</s>", {{"id", "</s>"}, {"ids", {1}}, {"tokens", {"</s>"}}}}}}}},
      {"decoder", {{"type", "Fuse"}}},
      {"model",
       {{"type", "BPE"},
        {"vocab", vocab},
        {"merges", {"h e", "he l", "hel l", "hell o"}}}}};
}

std::vector<int64_t> Encode(const Tokenizer& tokenizer, const std::string& text,
                            bool special) {
  absl::StatusOr<std::vector<int64_t>> ids = tokenizer.Encode(text, special);
  EXPECT_OK(ids);
  return *ids;
}

TEST(HfTokenizerTest, AddedTokenRulesAndTemplate) {
  absl::StatusOr<std::unique_ptr<HfTokenizer>> tokenizer =
      HfTokenizer::Parse(CharTokenizer().dump(), "", "t.json");
  ASSERT_OK(tokenizer);
  const Tokenizer& t = **tokenizer;
  // lstrip and rstrip swallow the spaces around <m>.
  EXPECT_THAT(Encode(t, "x <m> y", false), ElementsAre(2, 17, 3));
  // single_word: "ab" alone is the added token; inside "cab" it is not.
  EXPECT_THAT(Encode(t, "ab cab", false), ElementsAre(18, 11, 4, 5, 6));
  // The template adds <s> ... </s>; merges still apply between.
  EXPECT_THAT(Encode(t, "hello", true), ElementsAre(0, 16, 1));
  EXPECT_EQ(*t.DecodeTokens({0, 16, 1}, false), "<s>hello</s>");
  EXPECT_EQ(*t.DecodeTokens({0, 16, 1}, true), "hello");
  EXPECT_EQ(t.bos_id(), 0);
  EXPECT_TRUE(t.IsSpecial(1));
  EXPECT_FALSE(t.IsSpecial(17));
  EXPECT_EQ(t.IdToToken(16), "hello");
  EXPECT_EQ(t.IdToToken(1000), std::nullopt);
  // Unknown ids are skipped as the crate skips them; negative ones refused.
  EXPECT_EQ(*t.DecodeTokens({16, 5000}, false), "hello");
  EXPECT_THAT(
      t.DecodeTokens({-1}, false),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("negative")));
}

TEST(HfTokenizerTest, NormalizedAddedTokensMatchAfterTheNormalizer) {
  json config = CharTokenizer();
  config["normalizer"] = {{"type", "Lowercase"}};
  config["added_tokens"].push_back({{"id", 19},
                                    {"content", "hey"},
                                    {"special", false},
                                    {"normalized", true}});
  absl::StatusOr<std::unique_ptr<HfTokenizer>> tokenizer =
      HfTokenizer::Parse(config.dump(), "", "t.json");
  ASSERT_OK(tokenizer);
  EXPECT_THAT(Encode(**tokenizer, "HEYhello", false), ElementsAre(19, 16));
}

TEST(HfTokenizerTest, TokenizerConfigNamesBosAndEos) {
  absl::StatusOr<std::unique_ptr<HfTokenizer>> tokenizer = HfTokenizer::Parse(
      CharTokenizer().dump(),
      R"({"bos_token": {"content": "<s>"}, "eos_token": "</s>"})", "t.json");
  ASSERT_OK(tokenizer);
  EXPECT_EQ((*tokenizer)->bos_id(), 0);
  EXPECT_EQ((*tokenizer)->eos_id(), 1);
}

TEST(HfTokenizerTest, RefusesWhatItCannotDoByName) {
  auto parse = [](const json& config) {
    return HfTokenizer::Parse(config.dump(), "", "t.json").status();
  };
  json config = CharTokenizer();
  config["model"]["type"] = "WordPiece";
  EXPECT_THAT(parse(config), StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr("'WordPiece'")));
  config["model"]["type"] = "Unigram";
  EXPECT_THAT(parse(config), StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr("'Unigram'")));
  config = CharTokenizer();
  config["normalizer"] = {{"type", "BertNormalizer"}};
  EXPECT_THAT(parse(config), StatusIs(absl::StatusCode::kInvalidArgument,
                                      AllOf(HasSubstr("'BertNormalizer'"),
                                            HasSubstr("NFKC"))));
  config = CharTokenizer();
  config["pre_tokenizer"] = {{"type", "UnicodeScripts"}};
  EXPECT_THAT(parse(config), StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr("'UnicodeScripts'")));
  config = CharTokenizer();
  config["decoder"] = {{"type", "WordPiece"}};
  EXPECT_THAT(parse(config), StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr("'WordPiece'")));
  config = CharTokenizer();
  config["pre_tokenizer"] = {{"type", "Split"},
                             {"pattern", {{"Regex", "(unclosed"}}},
                             {"behavior", "Isolated"}};
  EXPECT_THAT(parse(config), StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr("(unclosed")));
  config = CharTokenizer();
  config["model"]["merges"] = {"x q"};
  EXPECT_THAT(parse(config), StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr("'x' 'q'")));
  EXPECT_THAT(
      HfTokenizer::Parse(R"({"model": {"vocab": {"a": 0})", "", "t.json")
          .status(),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("t.json"), HasSubstr("malformed"))));
  std::string deep =
      "{\"a\":" + std::string(100, '[') + std::string(100, ']') + "}";
  EXPECT_THAT(
      HfTokenizer::Parse(deep, "", "t.json").status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("deeper")));
}

}  // namespace
}  // namespace openforce::lora
