// Status conversions; see status_convert.h.
#include "proto/status_convert.h"

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace openforce {
namespace {

constexpr char kPayloadUrl[] = "type.openforce.dev/openforce.v1.RejectReason";

}  // namespace

absl::Status Rejection(absl::StatusCode code, v1::RejectReason reason,
                       absl::string_view message) {
  absl::Status status(code, message);
  status.SetPayload(kPayloadUrl,
                    absl::Cord(absl::StrCat(static_cast<int>(reason))));
  return status;
}

v1::RejectReason RejectReasonOf(const absl::Status& status) {
  auto payload = status.GetPayload(kPayloadUrl);
  int value = 0;
  if (!payload.has_value() ||
      !absl::SimpleAtoi(std::string(*payload), &value) ||
      !v1::RejectReason_IsValid(value)) {
    return v1::REJECT_REASON_UNSPECIFIED;
  }
  return static_cast<v1::RejectReason>(value);
}

grpc::Status ToGrpcStatus(const absl::Status& status,
                          grpc::ServerContextBase* context) {
  if (status.ok()) return grpc::Status::OK;
  const v1::RejectReason reason = RejectReasonOf(status);
  if (reason != v1::REJECT_REASON_UNSPECIFIED && context != nullptr) {
    context->AddTrailingMetadata(kRejectReasonMetadataKey,
                                 v1::RejectReason_Name(reason));
  }
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status,
                            const grpc::ClientContext& context,
                            absl::string_view what) {
  if (status.ok()) return absl::OkStatus();
  const std::string message = absl::StrCat(what, ": ", status.error_message());
  const auto code = static_cast<absl::StatusCode>(status.error_code());
  const auto& trailers = context.GetServerTrailingMetadata();
  auto it = trailers.find(kRejectReasonMetadataKey);
  v1::RejectReason reason = v1::REJECT_REASON_UNSPECIFIED;
  if (it != trailers.end() &&
      v1::RejectReason_Parse(std::string(it->second.data(), it->second.size()),
                             &reason)) {
    return Rejection(code, reason, message);
  }
  return absl::Status(code, message);
}

}  // namespace openforce
