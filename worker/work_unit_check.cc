// Work unit name checks; see work_unit_check.h.
#include "worker/work_unit_check.h"

#include "absl/strings/str_cat.h"
#include "common/model_manifest.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/terminal_text.h"

namespace openforce::worker {
namespace {

absl::Status CheckWireHash(const std::string& hash, absl::string_view what) {
  if (IsSha256Hex(hash)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("the coordinator sent a ", what,
                   " that is not 64 lowercase hex digits: \"",
                   EscapeForTerminal(hash.substr(0, 80)), "\""));
}

}  // namespace

absl::Status CheckWorkUnitNames(const v1::WorkUnit& unit) {
  RETURN_IF_ERROR(CheckWireHash(unit.base_model_hash(), "base_model_hash"));
  RETURN_IF_ERROR(
      CheckWireHash(unit.parent_adapter().sha256(), "parent adapter hash"));
  if (unit.kind() == v1::WORK_VALIDATE) {
    RETURN_IF_ERROR(CheckWireHash(unit.candidate_adapter().sha256(),
                                  "candidate adapter hash"));
    RETURN_IF_ERROR(
        CheckWireHash(unit.validation_set().sha256(), "validation set hash"));
    if (unit.validation_begin() >= unit.validation_end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the coordinator sent an empty validation slice [",
          unit.validation_begin(), ", ", unit.validation_end(), ")"));
    }
  } else if (unit.kind() == v1::WORK_TRAIN) {
    RETURN_IF_ERROR(CheckWireHash(unit.shard().sha256(), "shard hash"));
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "the coordinator sent a unit of kind ", static_cast<int>(unit.kind()),
        ", which this worker does not know; upgrade openforce-worker"));
  }
  for (const v1::BlobRef& file : unit.base_model_files()) {
    RETURN_IF_ERROR(CheckWireHash(file.sha256(), "model file hash"));
    RETURN_IF_ERROR(CheckPortableFileName(file.name()));
  }
  absl::Status unit_id = CheckPortableFileName(unit.unit_id());
  if (!unit_id.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unit_id: ", unit_id.message()));
  }
  return absl::OkStatus();
}

absl::Status CheckQuantizedBase(const v1::TrainingConfig& training,
                                const std::string& loaded_sha256) {
  if (training.quantized_base_sha256().empty() ||
      training.quantized_base_sha256() == loaded_sha256) {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "the base quantized here (", v1::BaseFormat_Name(training.base_format()),
      ") hashes to ", loaded_sha256, ", not the ",
      training.quantized_base_sha256(),
      " the job records: this worker's quantization differs, so it trains "
      "none of this job's units"));
}

}  // namespace openforce::worker
