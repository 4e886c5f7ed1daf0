// absl::Status <-> grpc::Status at the service boundary, carrying the
// openforce RejectReason along: as an absl::Status payload inside our code and
// as the "openforce-reject-reason" trailing metadata entry on the wire, so a
// worker can tell "this result is bad" from "try again later" without parsing
// messages.
#ifndef OPENFORCE_PROTO_STATUS_CONVERT_H_
#define OPENFORCE_PROTO_STATUS_CONVERT_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "grpcpp/client_context.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/status.h"
#include "proto/openforce.pb.h"

namespace openforce {

inline constexpr char kRejectReasonMetadataKey[] = "openforce-reject-reason";

// A refusal: `code` with `reason` attached.
absl::Status Rejection(absl::StatusCode code, v1::RejectReason reason,
                       absl::string_view message);
// The reason attached by Rejection() or FromGrpcStatus();
// REJECT_REASON_UNSPECIFIED when none.
v1::RejectReason RejectReasonOf(const absl::Status& status);

// For service handlers: the same code and message; the reason goes into the
// trailing metadata of `context`.
grpc::Status ToGrpcStatus(const absl::Status& status,
                          grpc::ServerContextBase* context);
// For clients: the same code and message, with the reason from the trailing
// metadata of `context` attached. `what` prefixes the message ("Register").
absl::Status FromGrpcStatus(const grpc::Status& status,
                            const grpc::ClientContext& context,
                            absl::string_view what);

}  // namespace openforce

#endif  // OPENFORCE_PROTO_STATUS_CONVERT_H_
