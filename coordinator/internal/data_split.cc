// Dealing records to simulated workers; see data_split.h.
#include "coordinator/internal/data_split.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"

namespace openforce::coordinator::internal {

absl::StatusOr<std::vector<std::vector<size_t>>> SplitRecords(
    const std::vector<std::string>& labels, size_t workers,
    double dirichlet_alpha, uint64_t seed) {
  if (workers == 0)
    return absl::InvalidArgumentError("no workers to split for");
  if (labels.size() < workers) {
    return absl::InvalidArgumentError(
        absl::StrCat("the training data has ", labels.size(),
                     " records, fewer than the ", workers, " workers"));
  }
  if (!(dirichlet_alpha >= 0) || !std::isfinite(dirichlet_alpha)) {
    return absl::InvalidArgumentError("the Dirichlet alpha must be >= 0");
  }
  std::mt19937_64 rng(seed);
  std::vector<std::vector<size_t>> split(workers);
  std::vector<size_t> order(labels.size());
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  if (dirichlet_alpha == 0) {
    for (size_t i = 0; i < order.size(); ++i)
      split[i % workers].push_back(order[i]);
    return split;
  }
  std::map<std::string, std::vector<size_t>> classes;
  for (size_t index : order) classes[labels[index]].push_back(index);
  std::gamma_distribution<double> gamma(dirichlet_alpha, 1.0);
  for (const auto& [label, members] : classes) {
    std::vector<double> shares(workers);
    double total = 0;
    for (double& share : shares) total += share = gamma(rng);
    if (!(total > 0)) {  // every draw underflowed: uniform
      std::fill(shares.begin(), shares.end(), 1.0);
      total = static_cast<double>(workers);
    }
    // Cumulative shares cut the class's (shuffled) records.
    double cumulative = 0;
    size_t begin = 0;
    for (size_t w = 0; w < workers; ++w) {
      cumulative += shares[w] / total;
      const size_t end =
          w + 1 == workers
              ? members.size()
              : std::min(
                    members.size(),
                    static_cast<size_t>(std::llround(
                        cumulative * static_cast<double>(members.size()))));
      for (size_t i = begin; i < end; ++i) split[w].push_back(members[i]);
      begin = std::max(begin, end);
    }
  }
  for (std::vector<size_t>& share : split) {
    if (!share.empty()) continue;
    auto largest = std::max_element(
        split.begin(), split.end(),
        [](const auto& a, const auto& b) { return a.size() < b.size(); });
    share.push_back(largest->back());
    largest->pop_back();
  }
  return split;
}

}  // namespace openforce::coordinator::internal
