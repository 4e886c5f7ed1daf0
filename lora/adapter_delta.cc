// Delta files and their checks; see adapter_delta.h.
#include "lora/adapter_delta.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <iterator>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "lora/federated_aggregation.h"  // IsLoraAKey
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
                                             const DeltaLimits& limits,
                                             DeltaLayout layout) {
  std::map<std::string, std::vector<int64_t>> expected =
      ExpectedAdapterTensors(model, config);
  if (layout == DeltaLayout::kBOnly) {
    for (auto it = expected.begin(); it != expected.end();) {
      it = IsLoraAKey(it->first) ? expected.erase(it) : std::next(it);
    }
  }
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
                               const std::string& path, DeltaLayout layout) {
  ASSIGN_OR_RETURN(LoraAdapter delta, adapter.Subtract(parent));
  try {
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (auto& [name, tensor] : delta.NamedTensors()) {
      if (layout == DeltaLayout::kBOnly && IsLoraAKey(name)) continue;
      tensors.emplace_back(name, tensor.to(at::kCPU, at::kFloat).contiguous());
    }
    return WriteSafetensors(path, tensors, {{"format", "pt"}});
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("writing adapter delta ", path, ": ", e.what()));
  }
}

absl::StatusOr<double> RelativeDeltaDistance(const std::string& path_a,
                                             const std::string& path_b) {
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> a,
                   SafetensorsFile::Open(path_a));
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> b,
                   SafetensorsFile::Open(path_b));
  if (a->entries().size() != b->entries().size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_a, " and ", path_b, " hold different tensors"));
  }
  double diff = 0, norm_a = 0, norm_b = 0;
  try {
    for (const auto& [name, entry] : a->entries()) {
      if (b->entries().count(name) == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(path_b, " lacks tensor '", name, "'"));
      }
      ASSIGN_OR_RETURN(at::Tensor ta, a->Tensor(name));
      ASSIGN_OR_RETURN(at::Tensor tb, b->Tensor(name));
      if (ta.sizes() != tb.sizes()) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor '", name, "' differs in shape"));
      }
      ta = ta.to(at::kDouble);
      tb = tb.to(at::kDouble);
      diff += (ta - tb).pow(2).sum().item<double>();
      norm_a += ta.pow(2).sum().item<double>();
      norm_b += tb.pow(2).sum().item<double>();
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("comparing deltas: ", e.what()));
  }
  const double scale = std::sqrt(std::max(norm_a, norm_b));
  return scale > 0 ? std::sqrt(diff) / scale : 0.0;
}

}  // namespace openforce::lora
