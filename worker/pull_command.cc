// Pulling a published adapter; see pull_command.h.
#include "worker/pull_command.h"

#include <filesystem>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/blob_store.h"
#include "common/ed25519.h"
#include "common/file_util.h"
#include "common/model_manifest.h"
#include "common/sha256.h"
#include "common/signing_payload.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "proto/signing_convert.h"
#include "worker/coordinator_client.h"

namespace openforce::worker {

absl::StatusOr<v1::SignedAdapter> PullAdapter(const PullRequest& request) {
  if (request.job_id.empty())
    return absl::InvalidArgumentError("--job is required");
  if (request.out_dir.empty())
    return absl::InvalidArgumentError("--out is required");
  if (request.coordinator_key_file.empty()) {
    return absl::InvalidArgumentError(
        "--coordinator-key is required: the coordinator's public key (PEM) "
        "that published adapters must be signed with");
  }
  ASSIGN_OR_RETURN(Ed25519PublicKey pinned,
                   Ed25519PublicKey::LoadPemFile(request.coordinator_key_file));
  ASSIGN_OR_RETURN(
      std::unique_ptr<CoordinatorClient> client,
      CoordinatorClient::Connect(request.coordinator, request.transport));
  ASSIGN_OR_RETURN(v1::GetLatestAdapterResponse response,
                   client->GetAdapter(request.job_id, request.version));
  if (!response.has_adapter()) {
    return absl::NotFoundError(
        absl::StrCat("job ", request.job_id, " has no published adapter yet"));
  }
  const v1::SignedAdapter& adapter = response.adapter();
  if (adapter.job_id() != request.job_id) {
    return absl::DataLossError("the coordinator answered with another job");
  }
  const std::string expected_content = AdapterContentHash(
      adapter.adapter_model().sha256(), adapter.adapter_config().sha256());
  if (adapter.content_hash() != expected_content) {
    return absl::DataLossError(
        "the adapter's content hash does not cover its files");
  }
  absl::Status verified = VerifyPayloadSignature(
      pinned, AdapterSigningPayload(adapter), adapter.signature());
  if (!verified.ok()) {
    return absl::UnauthenticatedError(absl::StrCat(
        "adapter version ", adapter.version(), " of ", adapter.job_id(),
        " is not signed by the pinned coordinator key (fingerprint ",
        pinned.Fingerprint(), "): ", verified.message()));
  }

  RETURN_IF_ERROR(MakeDirectories(request.out_dir));
  const std::string cache = request.out_dir + "/.openforce-download";
  ASSIGN_OR_RETURN(std::unique_ptr<BlobStore> store, BlobStore::Open(cache));
  absl::Status fetched =
      client->FetchBlob("", adapter.adapter_model(), store.get());
  if (fetched.ok())
    fetched = client->FetchBlob("", adapter.adapter_config(), store.get());
  if (fetched.ok()) {
    fetched = store->CopyToFile(adapter.adapter_model().sha256(),
                                request.out_dir + "/adapter_model.safetensors");
  }
  if (fetched.ok()) {
    fetched = store->CopyToFile(adapter.adapter_config().sha256(),
                                request.out_dir + "/adapter_config.json");
  }
  if (fetched.ok()) {
    nlohmann::json provenance = {
        {"job_id", adapter.job_id()},
        {"version", adapter.version()},
        {"parent_version", adapter.parent_version()},
        {"base_model_hash", adapter.base_model_hash()},
        {"content_hash", adapter.content_hash()},
        {"sample_count", adapter.sample_count()},
        {"published_at_ms", adapter.published_at_ms()},
        {"coordinator_key_fingerprint", pinned.Fingerprint()},
    };
    provenance["signature"] = absl::BytesToHexString(adapter.signature());
    nlohmann::json metrics = nlohmann::json::object();
    for (const auto& [name, value] : adapter.metrics()) metrics[name] = value;
    provenance["metrics"] = metrics;
    fetched = WriteFileAtomically(request.out_dir + "/" + kProvenanceFile,
                                  provenance.dump(2) + "\n");
  }
  std::error_code ignored;
  std::filesystem::remove_all(cache, ignored);
  RETURN_IF_ERROR(fetched);
  return adapter;
}

}  // namespace openforce::worker
