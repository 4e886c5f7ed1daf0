// Checks on a work unit from the coordinator before any of it becomes a path
// on the volunteer's disk: a worker does not have to trust its coordinator,
// so every hash must be a hash and every name a plain file name.
#ifndef OPENFORCE_WORKER_WORK_UNIT_CHECK_H_
#define OPENFORCE_WORKER_WORK_UNIT_CHECK_H_

#include <string>

#include "absl/status/status.h"
#include "proto/openforce.pb.h"

namespace openforce::worker {

// InvalidArgument naming the field when a hash is not 64 lowercase hex
// digits or a unit id or file name is not a portable file name.
[[nodiscard]] absl::Status CheckWorkUnitNames(const v1::WorkUnit& unit);

// FailedPrecondition when the job records a quantized base's hash and the
// base this worker quantized (`loaded_sha256`) hashes otherwise: training on
// it would make a delta for another model.
[[nodiscard]] absl::Status CheckQuantizedBase(
    const v1::TrainingConfig& training, const std::string& loaded_sha256);

}  // namespace openforce::worker

#endif  // OPENFORCE_WORKER_WORK_UNIT_CHECK_H_
