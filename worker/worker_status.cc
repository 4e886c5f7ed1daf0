// Worker status snapshots; see worker_status.h.
#include "worker/worker_status.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/terminal_text.h"
#include "nlohmann/json.hpp"

namespace openforce::worker {

std::string StatusToJson(const WorkerStatusSnapshot& status) {
  nlohmann::json json = {
      {"pid", status.pid},
      {"updated_at_ms", status.updated_at_ms},
      {"worker_id", status.worker_id},
      {"coordinator", status.coordinator},
      {"tier", status.tier},
      {"state", status.state},
      {"reason", status.reason},
      {"job_id", status.job_id},
      {"unit_id", status.unit_id},
      {"step", status.step},
      {"total_steps", status.total_steps},
      {"tokens_per_second", status.tokens_per_second},
      {"eta_seconds", status.eta_seconds},
      {"units_delivered", status.units_delivered},
  };
  return json.dump(2) + "\n";
}

absl::StatusOr<WorkerStatusSnapshot> StatusFromJson(const std::string& text,
                                                    const std::string& source) {
  try {
    const nlohmann::json json = nlohmann::json::parse(text);
    WorkerStatusSnapshot status;
    status.pid = json.at("pid").get<int64_t>();
    status.updated_at_ms = json.at("updated_at_ms").get<int64_t>();
    status.worker_id = json.at("worker_id").get<std::string>();
    status.coordinator = json.at("coordinator").get<std::string>();
    status.tier = json.at("tier").get<std::string>();
    status.state = json.at("state").get<std::string>();
    status.reason = json.at("reason").get<std::string>();
    status.job_id = json.at("job_id").get<std::string>();
    status.unit_id = json.at("unit_id").get<std::string>();
    status.step = json.at("step").get<int64_t>();
    status.total_steps = json.at("total_steps").get<int64_t>();
    status.tokens_per_second = json.at("tokens_per_second").get<double>();
    status.eta_seconds = json.at("eta_seconds").get<double>();
    status.units_delivered = json.at("units_delivered").get<int64_t>();
    return status;
  } catch (const std::exception& e) {
    return absl::DataLossError(
        absl::StrCat(source, " is not a worker status file: ", e.what()));
  }
}

std::string FormatStatusLine(const WorkerStatusSnapshot& status) {
  // Unit ids and reasons come from the coordinator: escaped for the terminal.
  std::string line = absl::StrCat(status.tier.empty() ? "?" : status.tier,
                                  " | ", status.state);
  if (!status.unit_id.empty())
    absl::StrAppend(&line, " ", EscapeForTerminal(status.unit_id));
  if (status.state == "training" && status.total_steps > 0) {
    absl::StrAppendFormat(
        &line, " step %d/%d | %.0f tok/s | ETA %s", status.step,
        status.total_steps, status.tokens_per_second,
        absl::FormatDuration(absl::Seconds(std::round(status.eta_seconds))));
  }
  if (!status.reason.empty())
    absl::StrAppend(&line, " | ", EscapeForTerminal(status.reason));
  absl::StrAppend(&line, " | delivered ", status.units_delivered);
  return line;
}

std::string StatusFilePath(const std::string& data_dir) {
  return data_dir + "/status.json";
}

}  // namespace openforce::worker
