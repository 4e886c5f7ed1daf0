// The quantized-base cache next to a model and the quantized base's hash: a
// written cache is mapped on the next load with the same codes and hash; the
// hash depends on the values, format and embeddings choice, not on the file's
// dtype; a rewritten model, a damaged cache, a cache for other weights or
// settings, and a cache that cannot be written are each handled by name.
#include "lora/quantized_cache.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "lora/checkpoint.h"
#include "lora/llama_model.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_llama.h"

namespace openforce::lora {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::StartsWith;

class QuantizedCacheTest : public ::testing::Test {
 protected:
  QuantizedCacheTest() {
    config_ = testing::TinyLlamaConfig();
    // 96 columns: whole q8/q4 blocks and 1.5 NF4 blocks.
    config_.hidden_size = 96;
    config_.intermediate_size = 160;
    config_.head_dim = 24;
    model_dir_ = testing::WriteTinyLlama(dir_.Join("model"), config_, 5);
  }

  LlamaWeights Load(WeightFormat format, bool write, bool read = true,
                    bool embeddings = false) {
    LoadOptions options;
    options.quantization = format;
    options.quantize_embeddings = embeddings;
    options.write_quantized_cache = write;
    options.read_quantized_cache = read;
    absl::StatusOr<LlamaWeights> weights =
        LoadLlamaWeights(model_dir_, config_, options);
    EXPECT_TRUE(weights.ok()) << weights.status();
    return weights.ok() ? *std::move(weights) : LlamaWeights();
  }

  // Pretends the weights file was rewritten later (same size).
  void TouchWeights() {
    const std::filesystem::path file = model_dir_ + "/model.safetensors";
    std::filesystem::last_write_time(
        file, std::filesystem::last_write_time(file) + std::chrono::seconds(7));
  }

  QuantizedCacheKey KeyFor(WeightFormat format) {
    QuantizedCacheKey key;
    key.format = format;
    key.source = *SourceFingerprint(model_dir_, {"model.safetensors"});
    return key;
  }

  std::map<std::string, std::vector<int64_t>> ProjectionShapes() {
    std::map<std::string, std::vector<int64_t>> shapes;
    for (const auto& [name, shape] : ExpectedTensors(config_)) {
      if (name.find("_proj.weight") != std::string::npos) shapes[name] = shape;
    }
    return shapes;
  }

  testing::TempDir dir_;
  LlamaConfig config_;
  std::string model_dir_;
};

TEST_F(QuantizedCacheTest, AWrittenCacheIsMappedWithTheSameCodesAndHash) {
  for (WeightFormat format :
       {WeightFormat::kQ8, WeightFormat::kQ4, WeightFormat::kNf4}) {
    SCOPED_TRACE(WeightFormatName(format));
    const LlamaWeights fresh = Load(format, /*write=*/false, /*read=*/false);
    EXPECT_EQ(fresh.quantized_cache, "off");
    ASSERT_EQ(fresh.quantized_sha256.size(), 64u);
    EXPECT_EQ(Load(format, /*write=*/false).quantized_cache, "none");

    const LlamaWeights written = Load(format, /*write=*/true);
    EXPECT_EQ(written.quantized_cache, "written");
    EXPECT_EQ(written.quantized_sha256, fresh.quantized_sha256);
    EXPECT_TRUE(std::filesystem::exists(
        QuantizedCachePath(model_dir_, format, /*embeddings=*/false)));

    const LlamaWeights read = Load(format, /*write=*/true);
    EXPECT_EQ(read.quantized_cache, "read");
    EXPECT_EQ(read.quantized_sha256, fresh.quantized_sha256);
    for (size_t layer = 0; layer < fresh.layers.size(); ++layer) {
      for (Projection p : kAllProjections) {
        const QuantizedMatrix& a = fresh.layers[layer].Quantized(p);
        const QuantizedMatrix& b = read.layers[layer].Quantized(p);
        EXPECT_TRUE(at::equal(a.codes, b.codes));
        EXPECT_TRUE(at::equal(a.scales, b.scales));
        EXPECT_EQ(a.absmax_mean, b.absmax_mean);
        EXPECT_EQ(a.cols, b.cols);
      }
    }
    // The same model either way.
    const at::Tensor ids =
        at::tensor({1, 70, 80, 90, 100}, at::kLong).unsqueeze(0);
    ForwardOptions options;
    EXPECT_TRUE(at::equal(LlamaModel(config_, fresh).Forward(ids, options),
                          LlamaModel(config_, read).Forward(ids, options)));
  }
  // Embeddings quantized too: another file and another hash.
  const LlamaWeights with_embeddings =
      Load(WeightFormat::kQ8, /*write=*/true, /*read=*/true,
           /*embeddings=*/true);
  EXPECT_EQ(with_embeddings.quantized_cache, "written");
  const LlamaWeights mapped = Load(WeightFormat::kQ8, /*write=*/false,
                                   /*read=*/true, /*embeddings=*/true);
  EXPECT_EQ(mapped.quantized_cache, "read");
  EXPECT_TRUE(at::equal(mapped.embed_tokens_quantized.codes,
                        with_embeddings.embed_tokens_quantized.codes));
  EXPECT_NE(mapped.quantized_sha256,
            Load(WeightFormat::kQ8, false, false).quantized_sha256);
}

TEST_F(QuantizedCacheTest, HashFollowsValuesAndFormatNotTheFileDtype) {
  // The same values (representable in bf16) stored as F32 and as BF16.
  LlamaWeights values = RandomLlamaWeights(config_, 11, at::kBFloat16);
  ASSERT_OK(SaveLlamaCheckpoint(dir_.Join("bf16"), config_, values));
  for (LayerWeights& layer : values.layers) {
    for (Projection p : kAllProjections) layer[p] = layer[p].to(at::kFloat);
  }
  values.embed_tokens = values.embed_tokens.to(at::kFloat);
  values.lm_head = values.lm_head.to(at::kFloat);
  values.final_norm = values.final_norm.to(at::kFloat);
  for (LayerWeights& layer : values.layers) {
    layer.input_norm = layer.input_norm.to(at::kFloat);
    layer.post_attention_norm = layer.post_attention_norm.to(at::kFloat);
  }
  ASSERT_OK(SaveLlamaCheckpoint(dir_.Join("f32"), config_, values));
  std::map<WeightFormat, std::string> hashes;
  for (WeightFormat format :
       {WeightFormat::kQ8, WeightFormat::kQ4, WeightFormat::kNf4}) {
    LoadOptions options;
    options.quantization = format;
    absl::StatusOr<LlamaWeights> from_bf16 =
        LoadLlamaWeights(dir_.Join("bf16"), config_, options);
    absl::StatusOr<LlamaWeights> from_f32 =
        LoadLlamaWeights(dir_.Join("f32"), config_, options);
    ASSERT_OK(from_bf16);
    ASSERT_OK(from_f32);
    EXPECT_EQ(from_bf16->quantized_sha256, from_f32->quantized_sha256);
    // Quantizing in memory gives the same base.
    LlamaWeights in_memory = RandomLlamaWeights(config_, 11, at::kBFloat16);
    ASSERT_OK(QuantizeBaseProjections(&in_memory, format));
    EXPECT_EQ(in_memory.quantized_sha256, from_f32->quantized_sha256);
    hashes[format] = from_f32->quantized_sha256;
  }
  EXPECT_NE(hashes[WeightFormat::kQ8], hashes[WeightFormat::kQ4]);
  EXPECT_NE(hashes[WeightFormat::kQ4], hashes[WeightFormat::kNf4]);
  // Other weights, another hash.
  EXPECT_NE(Load(WeightFormat::kQ8, false, false).quantized_sha256,
            hashes[WeightFormat::kQ8]);
  // Full precision has none.
  EXPECT_EQ(Load(WeightFormat::kNone, false).quantized_sha256, "");
}

TEST_F(QuantizedCacheTest, ARewrittenModelMakesTheCacheStale) {
  ASSERT_EQ(Load(WeightFormat::kQ4, /*write=*/true).quantized_cache, "written");
  // New weights in place, same shapes and size.
  testing::WriteTinyLlama(model_dir_, config_, 6);
  TouchWeights();
  const std::string expected =
      Load(WeightFormat::kQ4, false, /*read=*/false).quantized_sha256;
  const LlamaWeights stale = Load(WeightFormat::kQ4, /*write=*/false);
  EXPECT_THAT(stale.quantized_cache, StartsWith("ignored: "));
  EXPECT_THAT(stale.quantized_cache, HasSubstr("weight files changed"));
  EXPECT_EQ(stale.quantized_sha256, expected);
  // Writing replaces it; the next load reads the new one.
  EXPECT_EQ(Load(WeightFormat::kQ4, /*write=*/true).quantized_cache, "written");
  const LlamaWeights read = Load(WeightFormat::kQ4, /*write=*/false);
  EXPECT_EQ(read.quantized_cache, "read");
  EXPECT_EQ(read.quantized_sha256, expected);
}

TEST_F(QuantizedCacheTest, ADamagedCacheIsRefusedByNameAndIgnoredByLoading) {
  const LlamaWeights written = Load(WeightFormat::kNf4, /*write=*/true);
  const std::string path =
      QuantizedCachePath(model_dir_, WeightFormat::kNf4, false);
  {
    // Flip one byte of the last tensor's data.
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    file.seekg(-3, std::ios::end);
    const char byte = static_cast<char>(file.get());
    file.seekp(-3, std::ios::end);
    file.put(static_cast<char>(byte ^ 0x5A));
  }
  EXPECT_THAT(
      ReadQuantizedCache(path, KeyFor(WeightFormat::kNf4), ProjectionShapes()),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("damaged")));
  const LlamaWeights reloaded = Load(WeightFormat::kNf4, /*write=*/false);
  EXPECT_THAT(reloaded.quantized_cache, HasSubstr("damaged"));
  EXPECT_EQ(reloaded.quantized_sha256, written.quantized_sha256);

  // Truncated: not a safetensors file any more.
  std::filesystem::resize_file(path, std::filesystem::file_size(path) / 2);
  EXPECT_THAT(
      ReadQuantizedCache(path, KeyFor(WeightFormat::kNf4), ProjectionShapes()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("safetensors")));
  EXPECT_THAT(Load(WeightFormat::kNf4, false).quantized_cache,
              StartsWith("ignored: "));
}

TEST_F(QuantizedCacheTest, ACacheForOtherSettingsOrShapesIsNotUsed) {
  ASSERT_EQ(Load(WeightFormat::kQ8, /*write=*/true).quantized_cache, "written");
  const std::string q8 =
      QuantizedCachePath(model_dir_, WeightFormat::kQ8, false);
  EXPECT_THAT(
      ReadQuantizedCache(q8, KeyFor(WeightFormat::kQ4), ProjectionShapes()),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("made as q8")));
  // Shapes config.json does not imply (a cache copied from another model).
  std::map<std::string, std::vector<int64_t>> other = ProjectionShapes();
  other.begin()->second[1] += 32;
  EXPECT_THAT(ReadQuantizedCache(q8, KeyFor(WeightFormat::kQ8), other),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(other.begin()->first + ".codes")));
  other = ProjectionShapes();
  other.erase(other.begin());
  EXPECT_THAT(
      ReadQuantizedCache(q8, KeyFor(WeightFormat::kQ8), other),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tensors")));
  EXPECT_THAT(ReadQuantizedCache(dir_.Join("absent.safetensors"),
                                 KeyFor(WeightFormat::kQ8), ProjectionShapes()),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("no quantized cache")));
}

TEST_F(QuantizedCacheTest, ACacheThatCannotBeWrittenDoesNotFailTheLoad) {
  // A directory where the file would go: the rename fails (even as root).
  const std::string path =
      QuantizedCachePath(model_dir_, WeightFormat::kQ4, false);
  std::filesystem::create_directories(path + "/occupied");
  const LlamaWeights weights = Load(WeightFormat::kQ4, /*write=*/true);
  EXPECT_THAT(weights.quantized_cache, StartsWith("not written: "));
  EXPECT_EQ(weights.quantized_sha256,
            Load(WeightFormat::kQ4, false, false).quantized_sha256);
}

}  // namespace
}  // namespace openforce::lora
