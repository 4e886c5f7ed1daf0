// openforce-coordinator: the operator's binary. Subcommands:
//   keygen   create the coordinator's Ed25519 identity under --data and print
//   its
//            fingerprint, which workers and people pulling adapters pin
// Flags may also come from a JSON config file (--config); the command line
// wins.
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "common/command_line.h"
#include "common/config_file.h"
#include "common/status_macros.h"
#include "coordinator/identity.h"

ABSL_FLAG(std::string, config, "",
          "JSON config file whose keys are this binary's flag names");
ABSL_FLAG(std::string, data, "",
          "data directory: state, blobs and the identity key");

namespace openforce::coordinator {
namespace {

constexpr char kUsage[] =
    "openforce-coordinator: run a community LoRA fine-tune.\n"
    "\n"
    "usage: openforce-coordinator <command> [flags]\n"
    "commands:\n"
    "  keygen --data DIR   create the coordinator identity "
    "(DIR/coordinator.key, 0600)\n"
    "                      and print the public key fingerprint to pin\n";

const std::vector<std::string> kConfigKeys = {"data"};

absl::Status RunKeygen() {
  const std::string data_dir = absl::GetFlag(FLAGS_data);
  ASSIGN_OR_RETURN(Ed25519PublicKey public_key, CreateIdentity(data_dir));
  std::cout << "private key  " << PrivateKeyPath(data_dir) << " (mode 0600)\n"
            << "public key   " << PublicKeyPath(data_dir) << "\n"
            << "fingerprint  " << public_key.Fingerprint() << "\n";
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  ArgvBuffer normalized(NormalizeFlagNames(argc, argv));
  std::vector<char*> args =
      absl::ParseCommandLine(normalized.argc(), normalized.argv());
  if (const std::string config = absl::GetFlag(FLAGS_config); !config.empty()) {
    absl::Status applied = ApplyConfigFile(
        config, kConfigKeys,
        FlagsNamedOnCommandLine(normalized.argc(), normalized.argv()));
    if (!applied.ok()) {
      std::cerr << "openforce-coordinator: " << applied.message() << "\n";
      return 2;
    }
  }
  if (args.size() != 2) {
    std::cerr << kUsage;
    return 2;
  }
  const std::string command = args[1];
  absl::Status status;
  if (command == "keygen") {
    status = RunKeygen();
  } else {
    std::cerr << "openforce-coordinator: unknown command '" << command
              << "'\n\n"
              << kUsage;
    return 2;
  }
  if (!status.ok()) {
    std::cerr << "openforce-coordinator " << command << ": " << status << "\n";
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace openforce::coordinator

int main(int argc, char** argv) {
  return openforce::coordinator::Main(argc, argv);
}
