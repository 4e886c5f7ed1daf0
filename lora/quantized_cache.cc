// Writing, validating and mapping the quantized-base cache, and the quantized
// base's hash; see quantized_cache.h.
#include "lora/quantized_cache.h"

#include <ATen/ATen.h>
#include <sys/stat.h>

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "lora/safetensors.h"

namespace openforce::lora {
namespace {

constexpr char kCacheVersion[] = "1";
constexpr int64_t kNf4GroupBlocks = 256;

absl::Status Invalid(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat("quantized cache ", path, ": ", what));
}

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    absl::StrAppend(&text, i ? ", " : "", shape[i]);
  return text + "]";
}

// The tensor `name` of `file` with exactly `dtype` and `shape`.
absl::StatusOr<at::Tensor> Expect(const SafetensorsFile& file,
                                  const std::string& name, at::ScalarType dtype,
                                  const std::vector<int64_t>& shape) {
  auto it = file.entries().find(name);
  if (it == file.entries().end())
    return Invalid(file.path(), absl::StrCat("lacks tensor '", name, "'"));
  if (it->second.dtype != dtype || it->second.shape != shape) {
    return Invalid(
        file.path(),
        absl::StrCat("tensor '", name, "' is ", c10::toString(it->second.dtype),
                     " ", ShapeText(it->second.shape), "; expected ",
                     c10::toString(dtype), " ", ShapeText(shape)));
  }
  return file.Tensor(name);
}

absl::StatusOr<std::map<std::string, QuantizedMatrix>> MapMatrices(
    const SafetensorsFile& file, WeightFormat format,
    const std::map<std::string, std::vector<int64_t>>& expected) {
  const bool nf4 = format == WeightFormat::kNf4;
  const size_t per_matrix = nf4 ? 4 : 2;
  if (file.entries().size() != expected.size() * per_matrix) {
    return Invalid(
        file.path(),
        absl::StrCat("holds ", file.entries().size(), " tensors; this model's ",
                     expected.size(), " quantized weights take ",
                     expected.size() * per_matrix));
  }
  std::map<std::string, QuantizedMatrix> matrices;
  for (const auto& [name, shape] : expected) {
    if (shape.size() != 2) {
      return absl::InternalError(
          absl::StrCat("quantized weight '", name, "' is not 2-D"));
    }
    QuantizedMatrix m;
    m.format = format;
    m.rows = shape[0];
    m.cols = shape[1];
    const int64_t blocks = m.blocks_per_row();
    ASSIGN_OR_RETURN(
        m.codes,
        Expect(file, name + ".codes",
               format == WeightFormat::kQ8 ? at::kChar : at::kByte,
               {m.rows, blocks * (format == WeightFormat::kQ4 ? 16 : 32)}));
    ASSIGN_OR_RETURN(m.scales,
                     Expect(file, name + ".scales", nf4 ? at::kChar : at::kHalf,
                            {m.rows, blocks}));
    if (nf4) {
      ASSIGN_OR_RETURN(
          m.group_scales,
          Expect(file, name + ".group_scales", at::kFloat,
                 {(m.rows * blocks + kNf4GroupBlocks - 1) / kNf4GroupBlocks}));
      ASSIGN_OR_RETURN(at::Tensor mean,
                       Expect(file, name + ".absmax_mean", at::kFloat, {1}));
      m.absmax_mean = mean.item<float>();
      if (!std::isfinite(m.absmax_mean) ||
          !at::isfinite(m.group_scales).all().item<bool>()) {
        return Invalid(file.path(),
                       absl::StrCat("'", name, "' has non-finite scales"));
      }
    } else if (!at::isfinite(m.scales).all().item<bool>()) {
      return Invalid(file.path(),
                     absl::StrCat("'", name, "' has non-finite scales"));
    }
    matrices.emplace(name, std::move(m));
  }
  return matrices;
}

}  // namespace

std::string QuantizedCachePath(const std::string& model_dir,
                               WeightFormat format, bool embeddings) {
  return absl::StrCat(model_dir, "/openforce-quantized-",
                      WeightFormatName(format), embeddings ? "-embeddings" : "",
                      ".safetensors");
}

absl::StatusOr<std::string> SourceFingerprint(
    const std::string& model_dir, const std::vector<std::string>& files) {
  std::string fingerprint;
  for (const std::string& name : files) {
    const std::string path = absl::StrCat(model_dir, "/", name);
    struct stat info;
    if (::stat(path.c_str(), &info) != 0)
      return ErrnoToStatus(errno, absl::StrCat("stat ", path));
    absl::StrAppend(&fingerprint, name, ":", info.st_size, ":",
                    static_cast<int64_t>(info.st_mtim.tv_sec) * 1000000000 +
                        info.st_mtim.tv_nsec,
                    ";");
  }
  return fingerprint;
}

std::string QuantizedMatrixSha256(const QuantizedMatrix& m) {
  Sha256 hasher;
  hasher.Update(
      absl::StrCat(WeightFormatName(m.format), " ", m.rows, "x", m.cols, "\n"));
  for (const at::Tensor* t : {&m.codes, &m.scales, &m.group_scales}) {
    if (!t->defined()) continue;
    const at::Tensor cpu = t->to(at::kCPU).contiguous();
    hasher.Update(absl::string_view(static_cast<const char*>(cpu.data_ptr()),
                                    cpu.numel() * cpu.element_size()));
  }
  if (m.format == WeightFormat::kNf4) {
    char bytes[sizeof(float)];
    std::memcpy(bytes, &m.absmax_mean, sizeof(bytes));
    hasher.Update(absl::string_view(bytes, sizeof(bytes)));
  }
  return DigestToHex(hasher.Finish());
}

std::string QuantizedBaseSha256(
    const std::map<std::string, std::string>& matrix_sha256) {
  Sha256 hasher;
  for (const auto& [name, sha] : matrix_sha256)
    hasher.Update(absl::StrCat(name, "\n", sha, "\n"));
  return DigestToHex(hasher.Finish());
}

absl::Status WriteQuantizedCache(
    const std::string& path, const QuantizedCacheKey& key,
    const std::map<std::string, QuantizedMatrix>& matrices,
    const std::string& base_sha256) {
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  try {
    for (const auto& [name, m] : matrices) {
      if (m.format != key.format) {
        return absl::InvalidArgumentError(
            absl::StrCat("'", name, "' is ", WeightFormatName(m.format),
                         ", the cache ", WeightFormatName(key.format)));
      }
      tensors.emplace_back(name + ".codes", m.codes);
      tensors.emplace_back(name + ".scales", m.scales);
      if (m.format == WeightFormat::kNf4) {
        tensors.emplace_back(name + ".group_scales", m.group_scales);
        tensors.emplace_back(name + ".absmax_mean",
                             at::full({1}, m.absmax_mean, at::kFloat));
      }
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("write ", path, ": ", e.what()));
  }
  return WriteSafetensors(
      path, tensors,
      {{"openforce_quantized_cache", kCacheVersion},
       {"format", std::string(WeightFormatName(key.format))},
       {"embeddings", key.embeddings ? "true" : "false"},
       {"source", key.source},
       {"sha256", base_sha256}});
}

absl::StatusOr<QuantizedCache> ReadQuantizedCache(
    const std::string& path, const QuantizedCacheKey& key,
    const std::map<std::string, std::vector<int64_t>>& expected) {
  struct stat info;
  if (::stat(path.c_str(), &info) != 0) {
    return absl::NotFoundError(absl::StrCat("no quantized cache at ", path));
  }
  SafetensorsOpenOptions options;
  options.allow_int8 = true;
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file,
                   SafetensorsFile::Open(path, options));
  const auto& metadata = file->metadata();
  auto field = [&](const std::string& name) -> std::string {
    auto it = metadata.find(name);
    return it == metadata.end() ? std::string() : it->second;
  };
  if (field("openforce_quantized_cache") != kCacheVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("quantized cache ", path, ": cache version '",
                     field("openforce_quantized_cache"),
                     "', this build reads '", kCacheVersion, "'"));
  }
  if (field("format") != WeightFormatName(key.format) ||
      field("embeddings") != (key.embeddings ? "true" : "false")) {
    return absl::FailedPreconditionError(
        absl::StrCat("quantized cache ", path, ": made as ", field("format"),
                     " (embeddings ", field("embeddings"), ")"));
  }
  if (field("source") != key.source) {
    return absl::FailedPreconditionError(absl::StrCat(
        "quantized cache ", path,
        ": the model's weight files changed since it was written"));
  }
  const std::string recorded = field("sha256");
  if (!IsSha256Hex(recorded))
    return Invalid(path, "metadata 'sha256' is not a SHA-256");
  QuantizedCache cache;
  try {
    ASSIGN_OR_RETURN(cache.matrices, MapMatrices(*file, key.format, expected));
    std::map<std::string, std::string> digests;
    for (const auto& [name, m] : cache.matrices)
      digests[name] = QuantizedMatrixSha256(m);
    cache.base_sha256 = QuantizedBaseSha256(digests);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("read ", path, ": ", e.what()));
  }
  if (cache.base_sha256 != recorded) {
    return absl::DataLossError(absl::StrCat(
        "quantized cache ", path, ": its contents hash to ", cache.base_sha256,
        ", not the ", recorded, " it records (damaged)"));
  }
  return cache;
}

}  // namespace openforce::lora
