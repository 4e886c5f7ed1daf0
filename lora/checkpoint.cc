// Hugging Face checkpoint IO; see checkpoint.h.
#include "lora/checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <exception>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/untrusted_json.h"
#include "lora/quantized_cache.h"
#include "lora/safetensors.h"

namespace openforce::lora {
namespace {

std::string LayerPrefix(size_t layer) {
  return absl::StrCat("model.layers.", layer, ".");
}

std::vector<int64_t> ProjectionShape(const LlamaConfig& c, Projection p) {
  const int64_t q = c.num_attention_heads * c.head_dim;
  const int64_t kv = c.num_key_value_heads * c.head_dim;
  switch (p) {
    case Projection::kQ:
      return {q, c.hidden_size};
    case Projection::kK:
    case Projection::kV:
      return {kv, c.hidden_size};
    case Projection::kO:
      return {c.hidden_size, q};
    case Projection::kGate:
    case Projection::kUp:
      return {c.intermediate_size, c.hidden_size};
    case Projection::kDown:
      return {c.hidden_size, c.intermediate_size};
  }
  return {};
}

// Names the loader tolerates and ignores: buffers older transformers versions
// saved.
bool IsIgnorable(const std::string& name) {
  return name.size() > 22 &&
         name.compare(name.size() - 22, 22, "rotary_emb.inv_freq") == 0;
}

// The norms of a layer; only Gemma has the last two.
constexpr const char* kLayerNorms[] = {
    "input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
    "post_feedforward_layernorm"};

std::string ShapeText(at::IntArrayRef shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

}  // namespace

const char* ProjectionName(Projection projection) {
  static const char* const kNames[] = {"q_proj",   "k_proj",    "v_proj",
                                       "o_proj",   "gate_proj", "up_proj",
                                       "down_proj"};
  return kNames[static_cast<int>(projection)];
}

const char* ProjectionPath(Projection projection) {
  static const char* const kPaths[] = {"self_attn.q_proj", "self_attn.k_proj",
                                       "self_attn.v_proj", "self_attn.o_proj",
                                       "mlp.gate_proj",    "mlp.up_proj",
                                       "mlp.down_proj"};
  return kPaths[static_cast<int>(projection)];
}

absl::StatusOr<Projection> ParseProjection(const std::string& name) {
  for (Projection p : kAllProjections) {
    if (name == ProjectionName(p)) return p;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown target module '", name,
      "' (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)"));
}

bool HasBias(const LlamaConfig& config, Projection projection) {
  switch (projection) {
    case Projection::kQ:
    case Projection::kK:
    case Projection::kV:
      return config.qkv_bias;
    case Projection::kO:
      return config.o_bias;
    default:
      return config.mlp_bias;
  }
}

std::vector<std::pair<std::string, std::vector<int64_t>>> ExpectedTensors(
    const LlamaConfig& c) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  out.push_back({"model.embed_tokens.weight", {c.vocab_size, c.hidden_size}});
  for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer) {
    const std::string prefix = LayerPrefix(layer);
    for (int norm = 0; norm < (c.gemma_norms ? 4 : 2); ++norm) {
      out.push_back({absl::StrCat(prefix, kLayerNorms[norm], ".weight"),
                     {c.hidden_size}});
    }
    if (c.qk_norm) {
      out.push_back({prefix + "self_attn.q_norm.weight", {c.head_dim}});
      out.push_back({prefix + "self_attn.k_norm.weight", {c.head_dim}});
    }
    for (Projection p : kAllProjections) {
      out.push_back({absl::StrCat(prefix, ProjectionPath(p), ".weight"),
                     ProjectionShape(c, p)});
      if (HasBias(c, p)) {
        out.push_back({absl::StrCat(prefix, ProjectionPath(p), ".bias"),
                       {ProjectionShape(c, p)[0]}});
      }
    }
  }
  out.push_back({"model.norm.weight", {c.hidden_size}});
  if (!c.tie_word_embeddings)
    out.push_back({"lm_head.weight", {c.vocab_size, c.hidden_size}});
  return out;
}

namespace {

// "model.layers.N.self_attn.q_proj.weight" and the other six projections.
bool IsProjectionWeight(const std::string& name) {
  if (!absl::StartsWith(name, "model.layers.")) return false;
  for (Projection p : kAllProjections) {
    if (absl::EndsWith(name, absl::StrCat(".", ProjectionPath(p), ".weight")))
      return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<LlamaWeights> LoadLlamaWeights(const std::string& model_dir,
                                              const LlamaConfig& config,
                                              const LoadOptions& options) {
  // Which file holds which tensor.
  std::map<std::string, std::unique_ptr<SafetensorsFile>> files;
  std::map<std::string, const SafetensorsFile*> owner;
  const std::string index_path = model_dir + "/model.safetensors.index.json";
  absl::StatusOr<std::string> index_text = ReadFileToString(index_path);
  if (index_text.ok()) {
    absl::StatusOr<nlohmann::json> parsed =
        ParseUntrustedJson(*index_text, index_path);
    if (!parsed.ok()) return parsed.status();
    const nlohmann::json& index = *parsed;
    if (!index.is_object() || !index.contains("weight_map") ||
        !index["weight_map"].is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(
          index_path, ": not a safetensors index (no weight_map object)"));
    }
    for (const auto& [name, file_value] : index["weight_map"].items()) {
      if (!file_value.is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(
            index_path, ": weight_map entry '", name, "' is not a file name"));
      }
      const std::string file_name = file_value.get<std::string>();
      if (file_name.find('/') != std::string::npos ||
          file_name.rfind("..", 0) == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(index_path, ": shard '", file_name,
                         "' must be a file in the model directory"));
      }
      auto& file = files[file_name];
      if (file == nullptr) {
        ASSIGN_OR_RETURN(file,
                         SafetensorsFile::Open(model_dir + "/" + file_name));
      }
      if (!file->Contains(name)) {
        return absl::InvalidArgumentError(
            absl::StrCat(index_path, ": maps tensor '", name, "' to ",
                         file_name, ", which lacks it"));
      }
      owner[name] = file.get();
    }
    for (const auto& [file_name, file] : files) {
      for (const auto& [name, entry] : file->entries()) {
        if (owner.count(name) == 0 || owner[name] != file.get()) {
          if (IsIgnorable(name)) continue;
          return absl::InvalidArgumentError(
              absl::StrCat(file->path(), ": tensor '", name,
                           "' is not in the index's weight_map"));
        }
      }
    }
  } else if (absl::IsNotFound(index_text.status())) {
    ASSIGN_OR_RETURN(auto file,
                     SafetensorsFile::Open(model_dir + "/model.safetensors"));
    for (const auto& [name, entry] : file->entries()) owner[name] = file.get();
    files["model.safetensors"] = std::move(file);
  } else {
    return index_text.status();
  }

  std::map<std::string, at::Tensor> loaded;
  std::map<std::string, QuantizedMatrix> quantized;
  std::set<std::string> expected_names;
  const bool quantizing = options.quantization != WeightFormat::kNone;
  auto quantize_this = [&](const std::string& name) {
    return quantizing &&
           (IsProjectionWeight(name) || (options.quantize_embeddings &&
                                         (name == "model.embed_tokens.weight" ||
                                          name == "lm_head.weight")));
  };
  QuantizedCacheKey cache_key;
  std::string cache_path, cache_note = "off", cached_sha256;
  if (quantizing &&
      (options.read_quantized_cache || options.write_quantized_cache)) {
    std::vector<std::string> file_names;
    for (const auto& [file_name, file] : files) file_names.push_back(file_name);
    ASSIGN_OR_RETURN(cache_key.source,
                     SourceFingerprint(model_dir, file_names));
    cache_key.format = options.quantization;
    cache_key.embeddings = options.quantize_embeddings;
    cache_path = QuantizedCachePath(model_dir, options.quantization,
                                    options.quantize_embeddings);
    cache_note = "none";
  }
  try {
    const at::Device device(options.device);
    if (quantizing && options.read_quantized_cache) {
      std::map<std::string, std::vector<int64_t>> expected_quantized;
      for (const auto& [name, shape] : ExpectedTensors(config)) {
        if (quantize_this(name)) expected_quantized[name] = shape;
      }
      absl::StatusOr<QuantizedCache> cache =
          ReadQuantizedCache(cache_path, cache_key, expected_quantized);
      if (cache.ok()) {
        for (auto& [name, matrix] : cache->matrices)
          quantized[name] = matrix.To(device);
        cached_sha256 = cache->base_sha256;
        cache_note = "read";
      } else if (!absl::IsNotFound(cache.status())) {
        cache_note = absl::StrCat("ignored: ", cache.status().message());
      }
    }
    for (const auto& [name, shape] : ExpectedTensors(config)) {
      expected_names.insert(name);
      auto it = owner.find(name);
      if (it == owner.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat(model_dir, ": checkpoint lacks tensor '", name, "'"));
      }
      const SafetensorsEntry& entry = it->second->entries().at(name);
      if (entry.shape != shape) {
        return absl::InvalidArgumentError(
            absl::StrCat(it->second->path(), ": tensor '", name, "' has shape ",
                         ShapeText(entry.shape), " but config.json implies ",
                         ShapeText(shape)));
      }
      if (quantized.count(name)) continue;  // mapped from the cache
      ASSIGN_OR_RETURN(at::Tensor tensor, it->second->Tensor(name));
      if (quantize_this(name)) {
        // From the file's own values, one matrix at a time: the dense
        // projection never exists in memory beyond this tensor.
        absl::StatusOr<QuantizedMatrix> matrix =
            QuantizeMatrix(tensor, options.quantization);
        if (!matrix.ok()) {
          return absl::InvalidArgumentError(
              absl::StrCat(it->second->path(), ": tensor '", name,
                           "': ", matrix.status().message()));
        }
        quantized[name] = matrix->To(device);
        tensor = at::Tensor();
        it->second->DropPages(name);
        continue;
      }
      loaded[name] = tensor.to(device, options.dtype);
      if (!loaded[name].is_alias_of(tensor)) {
        tensor = at::Tensor();
        it->second->DropPages(name);
      }
    }
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("load ", model_dir, ": ", e.what()));
  }
  for (const auto& [name, file] : owner) {
    if (expected_names.count(name) || IsIgnorable(name)) continue;
    // transformers may save lm_head.weight for tied models; it must equal the
    // embedding.
    if (name == "lm_head.weight" && config.tie_word_embeddings) continue;
    return absl::InvalidArgumentError(absl::StrCat(
        file->path(), ": unexpected tensor '", name, "' for this config.json"));
  }

  LlamaWeights weights;
  const bool quantized_embeddings =
      options.quantization != WeightFormat::kNone &&
      options.quantize_embeddings;
  if (quantized_embeddings) {
    weights.embed_tokens_quantized = quantized.at("model.embed_tokens.weight");
  } else {
    weights.embed_tokens = loaded.at("model.embed_tokens.weight");
  }
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    const std::string prefix = LayerPrefix(layer);
    LayerWeights w;
    w.input_norm = loaded.at(prefix + "input_layernorm.weight");
    w.post_attention_norm =
        loaded.at(prefix + "post_attention_layernorm.weight");
    if (config.gemma_norms) {
      w.pre_feedforward_norm =
          loaded.at(prefix + "pre_feedforward_layernorm.weight");
      w.post_feedforward_norm =
          loaded.at(prefix + "post_feedforward_layernorm.weight");
    }
    if (config.qk_norm) {
      w.q_norm = loaded.at(prefix + "self_attn.q_norm.weight");
      w.k_norm = loaded.at(prefix + "self_attn.k_norm.weight");
    }
    for (Projection p : kAllProjections) {
      const std::string name =
          absl::StrCat(prefix, ProjectionPath(p), ".weight");
      if (options.quantization != WeightFormat::kNone) {
        w.quantized[static_cast<int>(p)] = quantized.at(name);
      } else {
        w[p] = loaded.at(name);
      }
      if (HasBias(config, p)) {
        w.bias[static_cast<int>(p)] =
            loaded.at(absl::StrCat(prefix, ProjectionPath(p), ".bias"));
      }
    }
    weights.layers.push_back(std::move(w));
  }
  weights.final_norm = loaded.at("model.norm.weight");
  if (quantized_embeddings) {
    weights.lm_head_quantized = config.tie_word_embeddings
                                    ? weights.embed_tokens_quantized
                                    : quantized.at("lm_head.weight");
  } else {
    weights.lm_head = config.tie_word_embeddings ? weights.embed_tokens
                                                 : loaded.at("lm_head.weight");
  }
  if (quantizing) {
    if (!cached_sha256.empty()) {
      weights.quantized_sha256 = cached_sha256;
    } else {
      ASSIGN_OR_RETURN(weights.quantized_sha256, QuantizedBaseSha256(weights));
      if (options.write_quantized_cache) {
        const absl::Status written = WriteQuantizedCache(
            cache_path, cache_key, quantized, weights.quantized_sha256);
        cache_note = written.ok()
                         ? "written"
                         : absl::StrCat("not written: ", written.message());
      }
    }
  }
  weights.quantized_cache = cache_note;
#ifdef __GLIBC__
  // Quantizing freed a temporary per matrix between allocations that stay;
  // give the freed heap pages back rather than keep them resident.
  if (quantizing && cached_sha256.empty()) ::malloc_trim(0);
#endif
  return weights;
}

absl::StatusOr<std::string> QuantizedBaseSha256OfModel(
    const std::string& model_dir, const LoadOptions& options) {
  if (options.quantization == WeightFormat::kNone) {
    return absl::InvalidArgumentError(
        "a quantized base's hash needs a quantization (q8, q4, nf4)");
  }
  ASSIGN_OR_RETURN(const LlamaConfig config, LoadLlamaConfig(model_dir));
  ASSIGN_OR_RETURN(const LlamaWeights weights,
                   LoadLlamaWeights(model_dir, config, options));
  return weights.quantized_sha256;
}

absl::StatusOr<std::string> QuantizedBaseSha256(const LlamaWeights& weights) {
  std::map<std::string, std::string> digests;
  try {
    if (weights.embed_tokens_quantized.defined()) {
      digests["model.embed_tokens.weight"] =
          QuantizedMatrixSha256(weights.embed_tokens_quantized);
    }
    if (weights.lm_head_quantized.defined() &&
        !weights.lm_head_quantized.codes.is_same(
            weights.embed_tokens_quantized.codes)) {
      digests["lm_head.weight"] =
          QuantizedMatrixSha256(weights.lm_head_quantized);
    }
    for (size_t layer = 0; layer < weights.layers.size(); ++layer) {
      for (Projection p : kAllProjections) {
        const QuantizedMatrix& m = weights.layers[layer].Quantized(p);
        if (!m.defined()) continue;
        digests[absl::StrCat(LayerPrefix(layer), ProjectionPath(p),
                             ".weight")] = QuantizedMatrixSha256(m);
      }
    }
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("hash the quantized weights: ", e.what()));
  }
  return digests.empty() ? std::string() : QuantizedBaseSha256(digests);
}

absl::Status QuantizeBaseProjections(LlamaWeights* weights, WeightFormat format,
                                     bool embeddings) {
  if (format == WeightFormat::kNone) return absl::OkStatus();
  try {
    if (embeddings && weights->embed_tokens.defined()) {
      const bool tied = weights->lm_head.is_same(weights->embed_tokens);
      ASSIGN_OR_RETURN(weights->embed_tokens_quantized,
                       QuantizeMatrix(weights->embed_tokens, format));
      weights->embed_tokens_quantized =
          weights->embed_tokens_quantized.To(weights->embed_tokens.device());
      if (tied) {
        weights->lm_head_quantized = weights->embed_tokens_quantized;
      } else {
        ASSIGN_OR_RETURN(weights->lm_head_quantized,
                         QuantizeMatrix(weights->lm_head, format));
        weights->lm_head_quantized =
            weights->lm_head_quantized.To(weights->lm_head.device());
      }
      weights->embed_tokens = at::Tensor();
      weights->lm_head = at::Tensor();
    }
    for (size_t layer = 0; layer < weights->layers.size(); ++layer) {
      LayerWeights& w = weights->layers[layer];
      for (Projection p : kAllProjections) {
        if (!w[p].defined()) continue;  // quantized already
        absl::StatusOr<QuantizedMatrix> matrix = QuantizeMatrix(w[p], format);
        if (!matrix.ok()) {
          return absl::InvalidArgumentError(
              absl::StrCat("layer ", layer, " ", ProjectionName(p), ": ",
                           matrix.status().message()));
        }
        w.quantized[static_cast<int>(p)] = matrix->To(w[p].device());
        w[p] = at::Tensor();
      }
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("quantize weights: ", e.what()));
  }
  ASSIGN_OR_RETURN(weights->quantized_sha256, QuantizedBaseSha256(*weights));
  return absl::OkStatus();
}

absl::Status SaveLlamaCheckpoint(const std::string& model_dir,
                                 const LlamaConfig& config,
                                 const LlamaWeights& weights, int num_shards) {
  if (num_shards < 1 || num_shards > 99999) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_shards must be in [1, 99999], got ", num_shards));
  }
  RETURN_IF_ERROR(MakeDirectories(model_dir));
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  if (!weights.embed_tokens.defined() || !weights.lm_head.defined()) {
    return absl::FailedPreconditionError(
        "the embeddings are quantized; a checkpoint holds full-precision "
        "weights");
  }
  tensors.push_back({"model.embed_tokens.weight", weights.embed_tokens});
  for (size_t layer = 0; layer < weights.layers.size(); ++layer) {
    const std::string prefix = LayerPrefix(layer);
    const LayerWeights& w = weights.layers[layer];
    tensors.push_back({prefix + "input_layernorm.weight", w.input_norm});
    tensors.push_back(
        {prefix + "post_attention_layernorm.weight", w.post_attention_norm});
    if (config.gemma_norms) {
      tensors.push_back({prefix + "pre_feedforward_layernorm.weight",
                         w.pre_feedforward_norm});
      tensors.push_back({prefix + "post_feedforward_layernorm.weight",
                         w.post_feedforward_norm});
    }
    if (config.qk_norm) {
      tensors.push_back({prefix + "self_attn.q_norm.weight", w.q_norm});
      tensors.push_back({prefix + "self_attn.k_norm.weight", w.k_norm});
    }
    for (Projection p : kAllProjections) {
      if (!w[p].defined()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "layer ", layer, " ", ProjectionName(p),
            " is quantized; a checkpoint holds full-precision weights"));
      }
      tensors.push_back(
          {absl::StrCat(prefix, ProjectionPath(p), ".weight"), w[p]});
      if (HasBias(config, p)) {
        tensors.push_back(
            {absl::StrCat(prefix, ProjectionPath(p), ".bias"), w.Bias(p)});
      }
    }
  }
  tensors.push_back({"model.norm.weight", weights.final_norm});
  if (!config.tie_word_embeddings)
    tensors.push_back({"lm_head.weight", weights.lm_head});
  RETURN_IF_ERROR(WriteFileAtomically(model_dir + "/config.json",
                                      LlamaConfigToJson(config)));
  if (num_shards == 1) {
    return WriteSafetensors(model_dir + "/model.safetensors", tensors,
                            {{"format", "pt"}});
  }
  // Consecutive tensors fill each shard up to an equal share of the bytes.
  uint64_t total = 0;
  for (const auto& [name, tensor] : tensors) total += tensor.nbytes();
  const uint64_t share = (total + num_shards - 1) / num_shards;
  nlohmann::json weight_map = nlohmann::json::object();
  size_t next = 0;
  for (int shard = 1; shard <= num_shards; ++shard) {
    const std::string file_name =
        absl::StrFormat("model-%05d-of-%05d.safetensors", shard, num_shards);
    std::vector<std::pair<std::string, at::Tensor>> part;
    uint64_t bytes = 0;
    while (next < tensors.size() &&
           (shard == num_shards || part.empty() || bytes < share)) {
      bytes += tensors[next].second.nbytes();
      weight_map[tensors[next].first] = file_name;
      part.push_back(tensors[next++]);
    }
    RETURN_IF_ERROR(WriteSafetensors(model_dir + "/" + file_name, part,
                                     {{"format", "pt"}}));
  }
  const nlohmann::json index = {{"metadata", {{"total_size", total}}},
                                {"weight_map", weight_map}};
  return WriteFileAtomically(model_dir + "/model.safetensors.index.json",
                             index.dump(2));
}

LlamaWeights RandomLlamaWeights(const LlamaConfig& config, uint64_t seed,
                                at::ScalarType dtype, double init_std) {
  at::Generator generator = at::detail::createCPUGenerator(seed);
  auto normal = [&](std::vector<int64_t> shape) {
    return at::normal(0.0, init_std, shape, generator).to(dtype);
  };
  // A norm that scales by one: weight 1, or 0 for Gemma's (1 + w).
  auto ones = [&](int64_t size) {
    return config.gemma_norms
               ? at::zeros({size}, at::TensorOptions().dtype(dtype))
               : at::ones({size}, at::TensorOptions().dtype(dtype));
  };
  LlamaWeights weights;
  weights.embed_tokens = normal({config.vocab_size, config.hidden_size});
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    LayerWeights w;
    w.input_norm = ones(config.hidden_size);
    w.post_attention_norm = ones(config.hidden_size);
    if (config.gemma_norms) {
      w.pre_feedforward_norm = ones(config.hidden_size);
      w.post_feedforward_norm = ones(config.hidden_size);
    }
    if (config.qk_norm) {
      w.q_norm = ones(config.head_dim);
      w.k_norm = ones(config.head_dim);
    }
    for (Projection p : kAllProjections) {
      w[p] = normal(ProjectionShape(config, p));
      if (HasBias(config, p)) {
        w.bias[static_cast<int>(p)] = normal({ProjectionShape(config, p)[0]});
      }
    }
    weights.layers.push_back(std::move(w));
  }
  weights.final_norm = ones(config.hidden_size);
  weights.lm_head = config.tie_word_embeddings
                        ? weights.embed_tokens
                        : normal({config.vocab_size, config.hidden_size});
  return weights;
}

}  // namespace openforce::lora
