// Signing payloads of wire messages; see signing_convert.h.
#include "proto/signing_convert.h"

namespace openforce {

SigningPayload DeltaSigningPayload(const v1::DeltaHeader& header) {
  SigningPayload payload;
  payload.kind = PayloadKind::kWorkerDelta;
  payload.job_id = header.job_id();
  payload.round = header.round();
  payload.unit_id = header.unit_id();
  payload.base_model_hash = header.base_model_hash();
  payload.parent_adapter_version = header.parent_adapter_version();
  payload.content_hash = header.content_hash();
  payload.sample_count = header.sample_count();
  payload.metrics.insert(header.metrics().begin(), header.metrics().end());
  return payload;
}

v1::DeltaHeader DeltaHeaderForUnit(const v1::WorkUnit& unit,
                                   const std::string& worker_id) {
  v1::DeltaHeader header;
  header.set_worker_id(worker_id);
  header.set_job_id(unit.job_id());
  header.set_round(unit.round());
  header.set_unit_id(unit.unit_id());
  header.set_base_model_hash(unit.base_model_hash());
  header.set_parent_adapter_version(unit.parent_adapter_version());
  return header;
}

SigningPayload ValidationSigningPayload(const v1::ValidationReport& report) {
  SigningPayload payload;
  payload.kind = PayloadKind::kValidationReport;
  payload.job_id = report.job_id();
  payload.round = report.round();
  payload.unit_id = report.unit_id();
  payload.base_model_hash = report.base_model_hash();
  payload.parent_adapter_version = report.parent_adapter_version();
  payload.content_hash = report.candidate_sha256();
  payload.sample_count = report.records();
  payload.metrics["candidate_loss"] = report.candidate_loss();
  payload.metrics["parent_loss"] = report.parent_loss();
  return payload;
}

v1::ValidationReport ValidationReportForUnit(const v1::WorkUnit& unit,
                                             const std::string& worker_id) {
  v1::ValidationReport report;
  report.set_worker_id(worker_id);
  report.set_job_id(unit.job_id());
  report.set_round(unit.round());
  report.set_unit_id(unit.unit_id());
  report.set_base_model_hash(unit.base_model_hash());
  report.set_parent_adapter_version(unit.parent_adapter_version());
  report.set_candidate_sha256(unit.candidate_adapter().sha256());
  report.set_records(unit.validation_end() > unit.validation_begin()
                         ? unit.validation_end() - unit.validation_begin()
                         : 0);
  return report;
}

std::string RegistrationProofMessage(const std::string& public_key,
                                     const std::string& nonce) {
  // The domain includes its terminating NUL, as the proto documents.
  static constexpr char kDomain[] = "openforce/register/v1";
  std::string message(kDomain, sizeof(kDomain));
  message += public_key;
  message += nonce;
  return message;
}

SigningPayload AdapterSigningPayload(const v1::SignedAdapter& adapter) {
  SigningPayload payload;
  payload.kind = PayloadKind::kPublishedAdapter;
  payload.job_id = adapter.job_id();
  payload.round = adapter.version();
  payload.base_model_hash = adapter.base_model_hash();
  payload.parent_adapter_version = adapter.parent_version();
  payload.content_hash = adapter.content_hash();
  payload.sample_count = adapter.sample_count();
  payload.metrics.insert(adapter.metrics().begin(), adapter.metrics().end());
  return payload;
}

}  // namespace openforce
