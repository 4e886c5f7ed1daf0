// Delta files, their checks and FedAvg; see adapter_delta.h.
#include "lora/adapter_delta.h"

#include <ATen/ATen.h>

#include <cmath>
#include <exception>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "lora/safetensors.h"

namespace openforce::lora {
namespace {

DeltaCheck Problem(DeltaCheck::Problem problem, std::string message) {
  DeltaCheck check;
  check.problem = problem;
  check.message = std::move(message);
  return check;
}

}  // namespace

uint64_t MaxDeltaHeaderBytes(size_t expected_tensors) {
  return 4096 + 4096 * static_cast<uint64_t>(expected_tensors);
}

absl::StatusOr<DeltaCheck> CheckAdapterDelta(const std::string& path,
                                             const LlamaConfig& model,
                                             const LoraConfig& config,
                                             const DeltaLimits& limits) {
  const std::map<std::string, std::vector<int64_t>> expected =
      ExpectedAdapterTensors(model, config);
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Open(path, MaxDeltaHeaderBytes(expected.size()));
  if (!file.ok()) {
    if (absl::IsNotFound(file.status()) ||
        absl::IsPermissionDenied(file.status())) {
      return file.status();
    }
    return Problem(DeltaCheck::Problem::kBadShape,
                   absl::StrCat("not a valid safetensors file: ",
                                file.status().message()));
  }
  const auto& entries = (*file)->entries();
  for (const auto& [name, entry] : entries) {
    auto it = expected.find(name);
    if (it == expected.end()) {
      return Problem(DeltaCheck::Problem::kBadShape,
                     absl::StrCat("unexpected tensor '", name, "'"));
    }
    if (entry.shape != it->second) {
      return Problem(
          DeltaCheck::Problem::kBadShape,
          absl::StrCat("tensor '", name, "' has shape [",
                       absl::StrJoin(entry.shape, ", "), "], expected [",
                       absl::StrJoin(it->second, ", "), "]"));
    }
    if (entry.dtype != at::kFloat) {
      return Problem(
          DeltaCheck::Problem::kBadShape,
          absl::StrCat("tensor '", name, "' has dtype ",
                       c10::toString(entry.dtype), ", expected F32"));
    }
  }
  for (const auto& [name, shape] : expected) {
    if (entries.count(name) == 0) {
      return Problem(DeltaCheck::Problem::kBadShape,
                     absl::StrCat("tensor '", name, "' is missing"));
    }
  }
  double squared = 0;
  try {
    for (const auto& [name, entry] : entries) {
      ASSIGN_OR_RETURN(at::Tensor tensor, (*file)->Tensor(name));
      if (!at::isfinite(tensor).all().item<bool>()) {
        return Problem(
            DeltaCheck::Problem::kNonFinite,
            absl::StrCat("tensor '", name, "' holds NaN or infinite values"));
      }
      squared += tensor.to(at::kDouble).pow(2).sum().item<double>();
    }
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("checking delta ", path, ": ", e.what()));
  }
  DeltaCheck check;
  check.l2_norm = std::sqrt(squared);
  if (limits.max_norm > 0 && check.l2_norm > limits.max_norm) {
    check.problem = DeltaCheck::Problem::kNormTooLarge;
    check.message = absl::StrCat("L2 norm ", check.l2_norm,
                                 " is above the job's bound ", limits.max_norm);
  } else if (check.l2_norm < limits.min_norm) {
    check.problem = DeltaCheck::Problem::kNormTooSmall;
    check.message =
        absl::StrCat("L2 norm ", check.l2_norm, " is below the job's floor ",
                     limits.min_norm, ": the delta shows no training");
  }
  return check;
}

absl::Status WriteAdapterDelta(const LoraAdapter& adapter,
                               const LoraAdapter& parent,
                               const std::string& path) {
  ASSIGN_OR_RETURN(LoraAdapter delta, adapter.Subtract(parent));
  try {
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (auto& [name, tensor] : delta.NamedTensors()) {
      tensors.emplace_back(name, tensor.to(at::kCPU, at::kFloat).contiguous());
    }
    return WriteSafetensors(path, tensors, {{"format", "pt"}});
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("writing adapter delta ", path, ": ", e.what()));
  }
}

absl::Status FedAvgAdapterFiles(const std::string& parent_path,
                                const std::vector<WeightedDelta>& deltas,
                                const std::string& out_path) {
  if (deltas.empty())
    return absl::InvalidArgumentError("FedAvg needs at least one delta");
  double total_weight = 0;
  for (const WeightedDelta& delta : deltas) {
    if (!(delta.weight > 0) || !std::isfinite(delta.weight)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "delta ", delta.path, " has weight ", delta.weight, "; must be > 0"));
    }
    total_weight += delta.weight;
  }
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> parent,
                   SafetensorsFile::Open(parent_path));
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  for (const WeightedDelta& delta : deltas) {
    ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file,
                     SafetensorsFile::Open(delta.path));
    if (file->entries().size() != parent->entries().size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          delta.path, " holds ", file->entries().size(),
          " tensors, the parent adapter ", parent->entries().size()));
    }
    files.push_back(std::move(file));
  }
  try {
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (const auto& [name, entry] : parent->entries()) {
      ASSIGN_OR_RETURN(at::Tensor base, parent->Tensor(name));
      at::Tensor sum = base.to(at::kFloat).clone();
      for (size_t i = 0; i < files.size(); ++i) {
        ASSIGN_OR_RETURN(at::Tensor delta, files[i]->Tensor(name));
        if (delta.sizes() != sum.sizes()) {
          return absl::InvalidArgumentError(
              absl::StrCat(deltas[i].path, ": tensor '", name,
                           "' does not match the parent adapter's shape"));
        }
        sum.add_(delta.to(at::kFloat), deltas[i].weight / total_weight);
      }
      out.emplace_back(name, std::move(sum));
    }
    return WriteSafetensors(out_path, out, {{"format", "pt"}});
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("FedAvg: ", e.what()));
  }
}

}  // namespace openforce::lora
