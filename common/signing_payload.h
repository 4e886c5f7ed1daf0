// The canonical bytes that workers sign over a delta or a validation report
// and the coordinator signs over a published adapter. The encoding is defined
// here, byte by byte, so that it never depends on protobuf serialization (which
// is not canonical) and binds every field: a signature made for one job, round,
// unit, base model, parent version or content cannot be replayed for another.
#ifndef OPENFORCE_COMMON_SIGNING_PAYLOAD_H_
#define OPENFORCE_COMMON_SIGNING_PAYLOAD_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/ed25519.h"

namespace openforce {

// What a signature vouches for. Values are part of the signed bytes:
// append-only.
enum class PayloadKind : uint8_t {
  kWorkerDelta = 1,       // a worker's trained delta for one work unit
  kPublishedAdapter = 2,  // the coordinator's aggregated adapter version
  // A worker's losses of a round's candidate and its parent on a slice of
  // the held-out records (content_hash: the candidate's adapter bytes,
  // sample_count: the records scored).
  kValidationReport = 3,
};

struct SigningPayload {
  PayloadKind kind = PayloadKind::kWorkerDelta;
  std::string job_id;
  uint64_t round = 0;
  // Empty for a published adapter, which belongs to a round, not a unit.
  std::string unit_id;
  std::string base_model_hash;  // hex SHA-256 over the base model's files
  uint64_t parent_adapter_version = 0;
  std::string content_hash;  // hex SHA-256 of the delta or adapter bytes
  uint64_t sample_count = 0;
  // Training metrics (loss, tokens, ...). Sorted by name in the encoding;
  // values must be finite because NaN has many bit patterns.
  std::map<std::string, double> metrics;
};

// Limits that keep a payload small and its encoding unambiguous.
inline constexpr size_t kMaxPayloadStringBytes = 256;
inline constexpr size_t kMaxPayloadMetrics = 64;

// The canonical encoding. Fails with InvalidArgument naming the field when a
// hash is not 64 lowercase hex digits, a string is over kMaxPayloadStringBytes,
// there are too many metrics, or a metric is not finite.
[[nodiscard]] absl::StatusOr<std::string> EncodeSigningPayload(
    const SigningPayload& payload);

[[nodiscard]] absl::StatusOr<std::string> SignPayload(
    const Ed25519PrivateKey& key, const SigningPayload& payload);

// OK when `signature` was made by `key` over exactly `payload`; Unauthenticated
// when not; InvalidArgument when the payload cannot be encoded.
[[nodiscard]] absl::Status VerifyPayloadSignature(const Ed25519PublicKey& key,
                                                  const SigningPayload& payload,
                                                  absl::string_view signature);

}  // namespace openforce

#endif  // OPENFORCE_COMMON_SIGNING_PAYLOAD_H_
