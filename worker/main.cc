// openforce-worker: the volunteer's binary. Subcommands:
//   probe   print this machine's hardware profile, tier and model advisor
// Flags may also come from a JSON config file (--config); the command line
// wins.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/byte_size.h"
#include "common/config_file.h"
#include "common/hardware_profile.h"
#include "common/status_macros.h"
#include "common/tier.h"
#include "lora/blas_core.h"
#include "lora/compute_device.h"
#include "worker/probe_report.h"

ABSL_FLAG(std::string, config, "",
          "JSON config file whose keys are this binary's flag names");
ABSL_FLAG(bool, json, false, "print machine-readable JSON instead of text");
ABSL_FLAG(openforce::ByteSize, headroom,
          openforce::ByteSize{4 * openforce::kGiB},
          "RAM kept free for the owner's other programs (e.g. 4GiB)");
ABSL_FLAG(openforce::ByteSize, gpu_reserve,
          openforce::ByteSize{512 * openforce::kMiB},
          "VRAM kept free on a GPU for the desktop and driver");
ABSL_FLAG(int, threads, 0, "libtorch CPU threads; 0 uses every physical core");
ABSL_FLAG(bool, measure, true, "measure fp32 and bf16 GEMM rates during probe");

namespace openforce::worker {
namespace {

constexpr char kUsage[] =
    "openforce-worker: donate this machine's idle time to community LoRA "
    "fine-tunes.\n"
    "\n"
    "usage: openforce-worker <command> [flags]\n"
    "commands:\n"
    "  probe   print the hardware profile, tier and the largest models this "
    "machine\n"
    "          can run (--json for scripts, --headroom to keep RAM free)\n";

const std::vector<std::string> kConfigKeys = {"headroom", "gpu_reserve",
                                              "threads", "measure", "json"};

absl::Status RunProbe() {
  RETURN_IF_ERROR(lora::SetCpuThreads(absl::GetFlag(FLAGS_threads)));
  ProbeReport report;
  ASSIGN_OR_RETURN(report.profile, ProbeHardware());
  report.tier = ClassifyTier(report.profile);
  report.backends = lora::ProbeComputeBackends();
  if (absl::GetFlag(FLAGS_measure)) {
    const std::string device = report.backends.gpu_devices > 0 ? "cuda" : "cpu";
    for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
      lora::GemmOptions gemm;
      gemm.device = device;
      gemm.dtype = dtype;
      gemm.min_seconds = 0.3;
      ASSIGN_OR_RETURN(lora::GemmMeasurement measured,
                       lora::MeasureGemmPeak(gemm));
      report.gemm.push_back(measured);
    }
  }
  report.advisor_options.headroom_bytes = absl::GetFlag(FLAGS_headroom).bytes;
  report.advisor_options.gpu_reserve_bytes =
      absl::GetFlag(FLAGS_gpu_reserve).bytes;
  ASSIGN_OR_RETURN(report.advice,
                   AdviseModels(report.profile, report.advisor_options));
  std::cout << (absl::GetFlag(FLAGS_json) ? FormatProbeReportJson(report) + "\n"
                                          : FormatProbeReportText(report));
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  lora::RelaunchWithTunedOpenBlas(argv);
  absl::SetProgramUsageMessage(kUsage);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (const std::string config = absl::GetFlag(FLAGS_config); !config.empty()) {
    absl::Status applied = ApplyConfigFile(config, kConfigKeys,
                                           FlagsNamedOnCommandLine(argc, argv));
    if (!applied.ok()) {
      std::cerr << "openforce-worker: " << applied.message() << "\n";
      return 2;
    }
  }
  if (args.size() < 2) {
    std::cerr << kUsage;
    return 2;
  }
  const std::string command = args[1];
  if (args.size() > 2) {
    std::cerr << "openforce-worker: unexpected argument '" << args[2] << "'\n";
    return 2;
  }
  absl::Status status;
  if (command == "probe") {
    status = RunProbe();
  } else {
    std::cerr << "openforce-worker: unknown command '" << command << "'\n\n"
              << kUsage;
    return 2;
  }
  if (!status.ok()) {
    std::cerr << "openforce-worker " << command << ": " << status << "\n";
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace openforce::worker

int main(int argc, char** argv) { return openforce::worker::Main(argc, argv); }
