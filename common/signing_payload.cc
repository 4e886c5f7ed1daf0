// Canonical signing payload; see signing_payload.h.
//
// Layout (all integers big-endian):
//   "openforce/signing-payload/v1\0"   domain separation, also versions the
//   format u8  kind then each field as: u8 field number, value
//     strings:  u32 length, bytes
//     integers: u64
//     metrics:  u32 count, then per metric (sorted by name): u32 length, name,
//     u64 IEEE-754
//               bits of the value
// Every field is always present, in field-number order, so no two payloads
// share bytes.
#include "common/signing_payload.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace openforce {
namespace {

constexpr char kDomain[] = "openforce/signing-payload/v1";

enum FieldNumber : uint8_t {
  kJobId = 1,
  kRound = 2,
  kUnitId = 3,
  kBaseModelHash = 4,
  kParentAdapterVersion = 5,
  kContentHash = 6,
  kSampleCount = 7,
  kMetrics = 8,
};

void AppendU32(uint32_t value, std::string* out) {
  for (int shift = 24; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((value >> shift) & 0xff));
  }
}

void AppendU64(uint64_t value, std::string* out) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((value >> shift) & 0xff));
  }
}

absl::Status AppendString(absl::string_view field, absl::string_view value,
                          std::string* out) {
  if (value.size() > kMaxPayloadStringBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("signing payload field ", field, " is ", value.size(),
                     " bytes; the limit is ", kMaxPayloadStringBytes));
  }
  AppendU32(static_cast<uint32_t>(value.size()), out);
  out->append(value.data(), value.size());
  return absl::OkStatus();
}

absl::Status CheckHash(absl::string_view field, absl::string_view value) {
  if (!IsSha256Hex(value)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "signing payload field ", field,
        " must be a hex SHA-256 (64 lowercase hex digits), got '", value, "'"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> EncodeSigningPayload(
    const SigningPayload& payload) {
  if (payload.kind != PayloadKind::kWorkerDelta &&
      payload.kind != PayloadKind::kPublishedAdapter &&
      payload.kind != PayloadKind::kValidationReport) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown signing payload kind ", static_cast<int>(payload.kind)));
  }
  if (payload.job_id.empty()) {
    return absl::InvalidArgumentError("signing payload field job_id is empty");
  }
  if (payload.kind != PayloadKind::kPublishedAdapter &&
      payload.unit_id.empty()) {
    return absl::InvalidArgumentError(
        "signing payload field unit_id is empty for a worker delta or "
        "validation report");
  }
  RETURN_IF_ERROR(CheckHash("base_model_hash", payload.base_model_hash));
  RETURN_IF_ERROR(CheckHash("content_hash", payload.content_hash));
  if (payload.metrics.size() > kMaxPayloadMetrics) {
    return absl::InvalidArgumentError(
        absl::StrCat("signing payload has ", payload.metrics.size(),
                     " metrics; the limit is ", kMaxPayloadMetrics));
  }

  std::string out(kDomain, sizeof(kDomain));  // includes the terminating NUL
  out.push_back(static_cast<char>(payload.kind));
  out.push_back(static_cast<char>(kJobId));
  RETURN_IF_ERROR(AppendString("job_id", payload.job_id, &out));
  out.push_back(static_cast<char>(kRound));
  AppendU64(payload.round, &out);
  out.push_back(static_cast<char>(kUnitId));
  RETURN_IF_ERROR(AppendString("unit_id", payload.unit_id, &out));
  out.push_back(static_cast<char>(kBaseModelHash));
  RETURN_IF_ERROR(
      AppendString("base_model_hash", payload.base_model_hash, &out));
  out.push_back(static_cast<char>(kParentAdapterVersion));
  AppendU64(payload.parent_adapter_version, &out);
  out.push_back(static_cast<char>(kContentHash));
  RETURN_IF_ERROR(AppendString("content_hash", payload.content_hash, &out));
  out.push_back(static_cast<char>(kSampleCount));
  AppendU64(payload.sample_count, &out);
  out.push_back(static_cast<char>(kMetrics));
  AppendU32(static_cast<uint32_t>(payload.metrics.size()), &out);
  for (const auto& [name, value] : payload.metrics) {
    if (name.empty()) {
      return absl::InvalidArgumentError(
          "signing payload has a metric with no name");
    }
    if (!std::isfinite(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("signing payload metric ", name, " is not finite"));
    }
    RETURN_IF_ERROR(AppendString(absl::StrCat("metrics.", name), name, &out));
    // +0.0 and -0.0 compare equal but differ in bits; sign what the value
    // means.
    double normalized = value == 0.0 ? 0.0 : value;
    uint64_t bits;
    std::memcpy(&bits, &normalized, sizeof(bits));
    AppendU64(bits, &out);
  }
  return out;
}

absl::StatusOr<std::string> SignPayload(const Ed25519PrivateKey& key,
                                        const SigningPayload& payload) {
  ASSIGN_OR_RETURN(std::string bytes, EncodeSigningPayload(payload));
  return key.Sign(bytes);
}

absl::Status VerifyPayloadSignature(const Ed25519PublicKey& key,
                                    const SigningPayload& payload,
                                    absl::string_view signature) {
  ASSIGN_OR_RETURN(std::string bytes, EncodeSigningPayload(payload));
  return key.Verify(bytes, signature);
}

}  // namespace openforce
