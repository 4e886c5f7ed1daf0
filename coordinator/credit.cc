// Credit per unit; see credit.h.
#include "coordinator/credit.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace openforce::coordinator {

absl::StatusOr<double> UnitCreditFlop(const ModelShape& model,
                                      const v1::LoraConfig& lora,
                                      const v1::TrainingConfig& training) {
  LoraShape shape;
  shape.rank = lora.rank();
  shape.target_modules.assign(lora.target_modules().begin(),
                              lora.target_modules().end());
  ASSIGN_OR_RETURN(int64_t lora_parameters, LoraParameterCount(model, shape));
  const double tokens = static_cast<double>(training.steps_per_shard()) *
                        training.batch_size() *
                        std::max(1, training.gradient_accumulation()) *
                        training.sequence_length();
  return tokens * (4.0 * static_cast<double>(BaseParameterCount(model)) +
                   6.0 * static_cast<double>(lora_parameters));
}

double ValidationCreditFlop(const ModelShape& model, uint64_t records,
                            const v1::TrainingConfig& training) {
  const double tokens =
      static_cast<double>(records) * training.sequence_length();
  return 2.0 * tokens * 2.0 * static_cast<double>(BaseParameterCount(model));
}

std::string FormatFlop(double flop) {
  const char* units[] = {"FLOP",  "kFLOP", "MFLOP", "GFLOP",
                         "TFLOP", "PFLOP", "EFLOP"};
  int unit = 0;
  while (flop >= 1000 && unit < 6) {
    flop /= 1000;
    ++unit;
  }
  return absl::StrFormat(flop < 10 && unit > 0 ? "%.2f %s" : "%.1f %s", flop,
                         units[unit]);
}

}  // namespace openforce::coordinator
