// The canonical signing payloads (common/signing_payload.h) of the signed
// wire messages, built in one place so that the worker that signs a delta,
// the coordinator that verifies it, and whoever verifies a published adapter
// all sign and check exactly the same fields.
#ifndef OPENFORCE_PROTO_SIGNING_CONVERT_H_
#define OPENFORCE_PROTO_SIGNING_CONVERT_H_

#include <string>

#include "common/signing_payload.h"
#include "proto/openforce.pb.h"

namespace openforce {

// Kind kWorkerDelta over every DeltaHeader field but the signature.
SigningPayload DeltaSigningPayload(const v1::DeltaHeader& header);

// A header naming `unit` (job, round, unit, base model, parent version) for
// `worker_id`; content, size, samples, metrics and signature are the
// caller's to set.
v1::DeltaHeader DeltaHeaderForUnit(const v1::WorkUnit& unit,
                                   const std::string& worker_id);

// What RegisterRequest.proof_of_possession signs:
// "openforce/register/v1\0" || public_key || nonce.
std::string RegistrationProofMessage(const std::string& public_key,
                                     const std::string& nonce);

// Kind kValidationReport over every ValidationReport field but the worker
// (its key signs) and the signature.
SigningPayload ValidationSigningPayload(const v1::ValidationReport& report);

// A report naming validation `unit` (job, round, unit, base model, parent
// version, candidate, records) for `worker_id`; the losses and signature are
// the caller's to set.
v1::ValidationReport ValidationReportForUnit(const v1::WorkUnit& unit,
                                             const std::string& worker_id);

// Kind kPublishedAdapter: job, version (as the round), base model, parent
// version, content hash, samples and metrics.
SigningPayload AdapterSigningPayload(const v1::SignedAdapter& adapter);

}  // namespace openforce

#endif  // OPENFORCE_PROTO_SIGNING_CONVERT_H_
