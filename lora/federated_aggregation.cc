// Aggregation math; see federated_aggregation.h.
#include "lora/federated_aggregation.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <memory>
#include <numeric>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "lora/safetensors.h"

namespace openforce::lora {
namespace {

constexpr absl::string_view kASuffix = ".lora_A.weight";
constexpr absl::string_view kBSuffix = ".lora_B.weight";

// Client `i`'s delta for `key` as fp32 of `shape`, zeros where absent.
absl::StatusOr<at::Tensor> LoadDelta(const DeltaSource& deltas, size_t i,
                                     const std::string& key,
                                     const at::Tensor& like) {
  ASSIGN_OR_RETURN(at::Tensor delta, deltas(i, key));
  if (!delta.defined()) return at::zeros_like(like, at::kFloat);
  if (delta.sizes() != like.sizes()) {
    return absl::InvalidArgumentError(
        absl::StrCat("delta ", i, ": tensor '", key,
                     "' does not match the parent adapter's shape"));
  }
  return delta.to(at::kFloat);
}

// Which deltas Multi-Krum (Blanchard et al. 2017) keeps: each delta's score is
// the sum of squared distances to its n - f - 2 nearest peers; the n - f with
// the lowest scores are kept. `gram` holds <d_i, d_j> of the clipped deltas.
std::vector<bool> MultiKrum(const at::Tensor& gram, int f) {
  const int64_t n = gram.size(0);
  std::vector<bool> keep(n, true);
  if (f <= 0) return keep;
  auto g = gram.accessor<double, 2>();
  std::vector<std::pair<double, int64_t>> scores;
  for (int64_t i = 0; i < n; ++i) {
    std::vector<double> distances;
    for (int64_t j = 0; j < n; ++j) {
      if (j != i) distances.push_back(g[i][i] + g[j][j] - 2 * g[i][j]);
    }
    std::sort(distances.begin(), distances.end());
    const int64_t nearest = n - f - 2;
    double score = 0;
    for (int64_t k = 0; k < nearest; ++k) score += distances[k];
    scores.emplace_back(score, i);
  }
  std::sort(scores.begin(), scores.end());
  for (int64_t k = n - f; k < n; ++k) keep[scores[k].second] = false;
  return keep;
}

// Distances ||d_i - c|| of the deltas from a center c = sum_j alpha_j d_j,
// from their Gram matrix: ||d_i - c||^2 = G_ii - 2 (G alpha)_i + alpha' G
// alpha. Every center here is such a combination, so no delta is read again.
at::Tensor DistancesFromCenter(const at::Tensor& gram,
                               const at::Tensor& alpha) {
  const at::Tensor g_alpha = at::matmul(gram, alpha);
  const double center_sq = alpha.dot(g_alpha).item<double>();
  return (gram.diagonal() - 2 * g_alpha + center_sq).clamp_min(0).sqrt();
}

// A floor on distances relative to the deltas' scale, so that a center on
// top of a delta does not divide by zero.
double DistanceFloor(const at::Tensor& gram) {
  return 1e-12 *
         std::sqrt(std::max(gram.diagonal().max().item<double>(), 1e-300));
}

// The geometric median of the deltas (weights `w`, summing to 1) as
// coefficients over them, by Weiszfeld's iteration.
at::Tensor GeometricMedianCoefficients(const at::Tensor& gram,
                                       const at::Tensor& w) {
  const double tiny = DistanceFloor(gram);
  at::Tensor alpha = w.clone();
  for (int iteration = 0; iteration < 100; ++iteration) {
    const at::Tensor inverse =
        w / DistancesFromCenter(gram, alpha).clamp_min(tiny);
    alpha = inverse / inverse.sum();
  }
  return alpha;
}

at::Tensor NormalizedWeights(const std::vector<double>& weights) {
  const double total = std::accumulate(weights.begin(), weights.end(), 0.0);
  return at::tensor(weights, at::kDouble) / total;
}

// Each delta's cosine with the geometric median of all of them (0 for a zero
// delta or a zero median). The median is a non-negative combination of the
// deltas, so unless it is zero at least one delta has a positive cosine.
std::vector<double> CosinesWithMedian(const at::Tensor& gram,
                                      const std::vector<double>& weights) {
  const at::Tensor alpha =
      GeometricMedianCoefficients(gram, NormalizedWeights(weights));
  const at::Tensor g_alpha = at::matmul(gram, alpha);
  const double center_norm =
      std::sqrt(std::max(alpha.dot(g_alpha).item<double>(), 0.0));
  std::vector<double> cosines(weights.size(), 0.0);
  auto g = gram.accessor<double, 2>();
  for (size_t i = 0; i < weights.size(); ++i) {
    const double norm = std::sqrt(std::max(g[i][i], 0.0));
    if (norm > 0 && center_norm > 0)
      cosines[i] = g_alpha[i].item<double>() / (norm * center_norm);
  }
  return cosines;
}

// Centered clipping around the geometric median, as weights over the deltas
// (non-negative, summing to 1). The geometric median is the starting center;
// each clipping step moves it by the weighted mean of the deltas' offsets,
// each offset clipped to tau x the median distance: c <- c + sum_i w_i
// min(1, tau / ||d_i - c||) (d_i - c). The result, a combination with
// non-negative coefficients, is handed to the exact strategy as its weights.
std::vector<double> CenteredClipWeights(const at::Tensor& gram,
                                        const std::vector<double>& weights,
                                        double tau_multiple) {
  const int64_t n = static_cast<int64_t>(weights.size());
  const at::Tensor w = NormalizedWeights(weights);
  const double tiny = DistanceFloor(gram);
  at::Tensor alpha = GeometricMedianCoefficients(gram, w);
  at::Tensor d = DistancesFromCenter(gram, alpha);
  std::vector<double> from_median(d.data_ptr<double>(),
                                  d.data_ptr<double>() + n);
  const double tau = tau_multiple * Median(from_median);
  for (int step = 0; step < 3 && tau > 0; ++step) {
    const at::Tensor keep = (tau / d.clamp_min(tiny)).clamp_max(1.0);
    const at::Tensor moved = w * keep;
    alpha = alpha * (1 - moved.sum()) + moved;
    d = DistancesFromCenter(gram, alpha);
  }
  return std::vector<double>(alpha.data_ptr<double>(),
                             alpha.data_ptr<double>() + n);
}

// The rows and columns of `gram` for `indices`.
at::Tensor SubGram(const at::Tensor& gram, const std::vector<size_t>& indices) {
  std::vector<int64_t> index(indices.begin(), indices.end());
  const at::Tensor rows = at::tensor(index, at::kLong);
  return gram.index_select(0, rows).index_select(1, rows);
}

// Coordinate-wise combination of the rows of `stacked` ([m, ...]).
at::Tensor CombineCoordinates(const at::Tensor& stacked,
                              const std::vector<double>& weights,
                              const AggregationRule& rule) {
  const int64_t m = stacked.size(0);
  if (rule.combiner == RobustCombiner::kMedian ||
      rule.combiner == RobustCombiner::kTrimmedMean) {
    const at::Tensor sorted = std::get<0>(at::sort(stacked, 0));
    if (rule.combiner == RobustCombiner::kMedian) {
      if (m % 2 == 1) return sorted[m / 2];
      return (sorted[m / 2 - 1] + sorted[m / 2]) * 0.5;
    }
    int64_t trim = static_cast<int64_t>(std::floor(rule.trim_fraction * m));
    trim = std::min(trim, (m - 1) / 2);
    return sorted.slice(0, trim, m - trim).mean(0);
  }
  const double total = std::accumulate(weights.begin(), weights.end(), 0.0);
  at::Tensor w = at::tensor(weights, at::kDouble).div(total).to(at::kFloat);
  std::vector<int64_t> shape(stacked.dim(), 1);
  shape[0] = m;
  return (stacked * w.view(shape)).sum(0);
}

// The rank-`rank` factors of M = sum_i w_i B_i A_i without forming M: with
// U = [w_1 B_1 ... w_m B_m] and V = [A_1; ...; A_m], M = U V = Qu (Ru Rv^T)
// Qv^T, and the SVD of the small core gives M's. A's rows are scaled to the
// parent A's RMS row norm (B absorbs the singular values) so that the next
// round's workers start from an A of the magnitude they were initialised
// with. Adds squared singular values (all, dropped) to the sums.
std::pair<at::Tensor, at::Tensor> RefactorProductMean(
    const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b,
    const std::vector<double>& weights, int64_t rank,
    const at::Tensor& parent_a, double* total_sq, double* dropped_sq) {
  const double total = std::accumulate(weights.begin(), weights.end(), 0.0);
  std::vector<at::Tensor> scaled_b;
  for (size_t i = 0; i < b.size(); ++i)
    scaled_b.push_back(b[i].to(at::kDouble) * (weights[i] / total));
  const at::Tensor u = at::cat(scaled_b, 1);  // [out, m r]
  std::vector<at::Tensor> a64;
  for (const at::Tensor& t : a) a64.push_back(t.to(at::kDouble));
  const at::Tensor v = at::cat(a64, 0);  // [m r, in]
  auto [qu, ru] = at::linalg_qr(u, "reduced");
  auto [qv, rv] = at::linalg_qr(v.t(), "reduced");
  const at::Tensor core = at::matmul(ru, rv.t());
  auto [x, s, yh] = at::linalg_svd(core, /*full_matrices=*/false);
  const int64_t k = s.size(0);
  const int64_t kept = std::min(rank, k);
  const at::Tensor sq = s.pow(2);
  *total_sq += sq.sum().item<double>();
  if (k > kept) *dropped_sq += sq.slice(0, kept, k).sum().item<double>();
  double row_norm = parent_a.to(at::kDouble).pow(2).sum().item<double>();
  row_norm = std::sqrt(row_norm / std::max<int64_t>(1, parent_a.size(0)));
  const double c = row_norm > 0 ? row_norm : 1.0;
  at::Tensor new_b = at::zeros({u.size(0), rank}, at::kDouble);
  at::Tensor new_a = at::zeros({rank, v.size(1)}, at::kDouble);
  const at::Tensor s_kept = s.slice(0, 0, kept);
  new_b.slice(1, 0, kept)
      .copy_(at::matmul(qu, x.slice(1, 0, kept)) * s_kept.unsqueeze(0) / c);
  new_a.slice(0, 0, kept).copy_(at::matmul(yh.slice(0, 0, kept), qv.t()) * c);
  return {new_a.to(at::kFloat), new_b.to(at::kFloat)};
}

}  // namespace

double Median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t mid = values.size() / 2;
  return values.size() % 2 == 1 ? values[mid]
                                : 0.5 * (values[mid - 1] + values[mid]);
}

bool IsLoraAKey(const std::string& key) {
  return absl::EndsWith(key, kASuffix);
}

std::string PairedLoraKey(const std::string& key) {
  absl::string_view view = key;
  if (absl::ConsumeSuffix(&view, kASuffix)) return absl::StrCat(view, kBSuffix);
  if (absl::ConsumeSuffix(&view, kBSuffix)) return absl::StrCat(view, kASuffix);
  return "";
}

absl::StatusOr<AdapterTensors> AggregateAdapterDeltas(
    const AdapterTensors& parent, const DeltaSource& deltas,
    const std::vector<double>& weights, const AggregationRule& rule,
    AggregationReport* report) {
  const size_t n = weights.size();
  if (n == 0)
    return absl::InvalidArgumentError("aggregation needs at least one delta");
  for (size_t i = 0; i < n; ++i) {
    if (!(weights[i] > 0) || !std::isfinite(weights[i])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "delta ", i, " has weight ", weights[i], "; must be > 0"));
    }
  }
  for (const auto& [key, tensor] : parent) {
    if (PairedLoraKey(key).empty() || parent.count(PairedLoraKey(key)) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "parent tensor '", key, "' is not one of a LoRA A/B pair"));
    }
  }
  AggregationReport local;
  AggregationReport& out = report != nullptr ? *report : local;
  out = AggregationReport();
  // FFA's A never changes: only B is read, measured and combined.
  auto trained = [&](const std::string& key) {
    return !(rule.exact == ExactStrategy::kFfa && IsLoraAKey(key));
  };
  try {
    const bool krum = rule.combiner == RobustCombiner::kMultiKrum;
    const bool centered = rule.combiner == RobustCombiner::kCenteredClip;
    const bool needs_gram = krum || centered || rule.drop_opposed;
    std::vector<double> squared(n, 0.0);
    at::Tensor gram = at::zeros(
        {static_cast<int64_t>(n), static_cast<int64_t>(n)}, at::kDouble);
    for (const auto& [key, like] : parent) {
      if (!trained(key)) continue;
      std::vector<at::Tensor> rows;
      for (size_t i = 0; i < n; ++i) {
        ASSIGN_OR_RETURN(at::Tensor delta, LoadDelta(deltas, i, key, like));
        const at::Tensor flat = delta.reshape({-1}).to(at::kDouble);
        squared[i] += flat.dot(flat).item<double>();
        if (needs_gram) rows.push_back(flat);
      }
      if (needs_gram) {
        const at::Tensor stacked = at::stack(rows);
        gram += at::matmul(stacked, stacked.t());
      }
    }
    for (size_t i = 0; i < n; ++i) {
      if (!std::isfinite(squared[i])) {
        return absl::InvalidArgumentError(
            absl::StrCat("delta ", i, " holds NaN or infinite values"));
      }
      out.norms.push_back(std::sqrt(squared[i]));
    }
    out.clip_scales.assign(n, 1.0);
    if (rule.clip_multiple > 0) {
      const double bound = rule.clip_multiple * Median(out.norms);
      for (size_t i = 0; i < n; ++i) {
        if (bound > 0 && out.norms[i] > bound)
          out.clip_scales[i] = bound / out.norms[i];
      }
    }
    out.selected.assign(n, true);
    const at::Tensor clip_scale = at::tensor(out.clip_scales, at::kDouble);
    const at::Tensor clipped_gram =
        needs_gram ? gram * clip_scale.unsqueeze(0) * clip_scale.unsqueeze(1)
                   : gram;
    // Selection (direction, then Krum) and centered clipping look at the
    // deltas still in the running only.
    std::vector<size_t> running(n);
    std::iota(running.begin(), running.end(), 0);
    if (rule.drop_opposed) {
      out.cosines = CosinesWithMedian(clipped_gram, weights);
      running.clear();
      for (size_t i = 0; i < n; ++i) {
        out.selected[i] = out.cosines[i] > 0;
        if (out.selected[i]) running.push_back(i);
      }
      if (running.empty()) {
        // A zero median (every delta zero, or perfectly cancelling): no
        // direction to keep to.
        out.selected.assign(n, true);
        running.resize(n);
        std::iota(running.begin(), running.end(), 0);
      }
    }
    std::vector<double> running_weights;
    for (size_t i : running) running_weights.push_back(weights[i]);
    const at::Tensor running_gram =
        needs_gram ? SubGram(clipped_gram, running) : clipped_gram;
    if (krum) {
      const int m = static_cast<int>(running.size());
      int f =
          rule.krum_f > 0 ? rule.krum_f : static_cast<int>(std::ceil(0.3 * m));
      // Krum's guarantee needs n >= 2f + 3; with fewer deltas it tolerates
      // fewer hostile ones.
      f = std::min<int>(f, std::max<int>(0, (m - 3) / 2));
      out.krum_f = f;
      const std::vector<bool> kept = MultiKrum(running_gram, f);
      for (size_t k = 0; k < running.size(); ++k)
        if (!kept[k]) out.selected[running[k]] = false;
    }
    std::vector<double> effective = weights;
    if (centered) {
      const std::vector<double> clipped = CenteredClipWeights(
          running_gram, running_weights, rule.center_clip_tau);
      effective.assign(n, 0.0);
      for (size_t k = 0; k < running.size(); ++k)
        effective[running[k]] = clipped[k];
    }
    std::vector<size_t> chosen;
    std::vector<double> chosen_weights;
    double chosen_total = 0;
    for (size_t i = 0; i < n; ++i) {
      if (out.selected[i]) {
        chosen.push_back(i);
        chosen_weights.push_back(effective[i]);
        chosen_total += effective[i];
      }
    }
    out.shares.assign(n, 0.0);
    for (size_t k = 0; k < chosen.size(); ++k)
      out.shares[chosen[k]] = chosen_weights[k] / chosen_total;

    AdapterTensors next;
    if (rule.exact == ExactStrategy::kSvd) {
      double total_sq = 0, dropped_sq = 0;
      for (const auto& [a_key, parent_a] : parent) {
        if (!IsLoraAKey(a_key)) continue;
        const std::string b_key = PairedLoraKey(a_key);
        const at::Tensor& parent_b = parent.at(b_key);
        std::vector<at::Tensor> a, b;
        for (size_t i : chosen) {
          ASSIGN_OR_RETURN(at::Tensor da,
                           LoadDelta(deltas, i, a_key, parent_a));
          ASSIGN_OR_RETURN(at::Tensor db,
                           LoadDelta(deltas, i, b_key, parent_b));
          a.push_back(parent_a.to(at::kFloat) + da * out.clip_scales[i]);
          b.push_back(parent_b.to(at::kFloat) + db * out.clip_scales[i]);
        }
        auto [new_a, new_b] =
            RefactorProductMean(a, b, chosen_weights, parent_a.size(0),
                                parent_a, &total_sq, &dropped_sq);
        next[a_key] = new_a;
        next[b_key] = new_b;
      }
      out.truncation_error =
          total_sq > 0 ? std::sqrt(dropped_sq / total_sq) : 0.0;
      return next;
    }
    for (const auto& [key, like] : parent) {
      if (!trained(key)) {
        next[key] = like.to(at::kFloat).clone();
        continue;
      }
      std::vector<at::Tensor> rows;
      for (size_t i : chosen) {
        ASSIGN_OR_RETURN(at::Tensor delta, LoadDelta(deltas, i, key, like));
        rows.push_back(delta * out.clip_scales[i]);
      }
      next[key] = like.to(at::kFloat) +
                  CombineCoordinates(at::stack(rows), chosen_weights, rule);
    }
    return next;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("aggregation: ", e.what()));
  }
}

absl::Status AggregateAdapterFiles(const std::string& parent_path,
                                   const std::vector<std::string>& delta_paths,
                                   const std::vector<double>& weights,
                                   const AggregationRule& rule,
                                   const std::string& out_path,
                                   AggregationReport* report) {
  if (delta_paths.size() != weights.size()) {
    return absl::InvalidArgumentError("one weight per delta file is needed");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> parent_file,
                   SafetensorsFile::Open(parent_path));
  AdapterTensors parent;
  for (const auto& [name, entry] : parent_file->entries()) {
    ASSIGN_OR_RETURN(parent[name], parent_file->Tensor(name));
  }
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  for (const std::string& path : delta_paths) {
    ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file,
                     SafetensorsFile::Open(path));
    for (const auto& [name, entry] : file->entries()) {
      if (parent.count(name) == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, " holds tensor '", name, "', which the parent lacks"));
      }
    }
    files.push_back(std::move(file));
  }
  DeltaSource source =
      [&](size_t i, const std::string& key) -> absl::StatusOr<at::Tensor> {
    if (files[i]->entries().count(key) == 0) {
      if (rule.b_only() && IsLoraAKey(key)) return at::Tensor();
      return absl::InvalidArgumentError(
          absl::StrCat(delta_paths[i], " lacks tensor '", key, "'"));
    }
    return files[i]->Tensor(key);
  };
  ASSIGN_OR_RETURN(
      AdapterTensors next,
      AggregateAdapterDeltas(parent, source, weights, rule, report));
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (auto& [name, tensor] : next)
    tensors.emplace_back(name, tensor.contiguous());
  return WriteSafetensors(out_path, tensors, {{"format", "pt"}});
}

}  // namespace openforce::lora
