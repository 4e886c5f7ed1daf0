// How `simulate` deals a dataset out to simulated workers: IID (a seeded
// shuffle dealt round-robin) or non-IID by a Dirichlet split over each
// record's class (Hsu et al. 2019): for every class, worker shares drawn from
// Dir(alpha); small alpha gives each worker few classes.
#ifndef OPENFORCE_COORDINATOR_INTERNAL_DATA_SPLIT_H_
#define OPENFORCE_COORDINATOR_INTERNAL_DATA_SPLIT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace openforce::coordinator::internal {

// Record indices per worker. `labels` holds one class label per record;
// `dirichlet_alpha` 0 means IID. Every worker gets at least one record
// (taken from the largest share when the draw left it none).
// InvalidArgument when there are fewer records than workers.
[[nodiscard]] absl::StatusOr<std::vector<std::vector<size_t>>> SplitRecords(
    const std::vector<std::string>& labels, size_t workers,
    double dirichlet_alpha, uint64_t seed);

}  // namespace openforce::coordinator::internal

#endif  // OPENFORCE_COORDINATOR_INTERNAL_DATA_SPLIT_H_
