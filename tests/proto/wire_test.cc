// Wire-level facts the rest of the code relies on: enum values shared with
// common/ agree, and messages survive serialization with every field intact.
#include <gtest/gtest.h>

#include <functional>
#include <vector>

#include "common/memory_estimate.h"
#include "common/sha256.h"
#include "common/signing_payload.h"
#include "common/tier.h"
#include "common/weight_format.h"
#include "proto/call_signing.h"
#include "proto/openforce.pb.h"
#include "proto/signing_convert.h"

namespace openforce {
namespace {

TEST(WireEnumsTest, TierValuesMatchCommonTier) {
  EXPECT_EQ(static_cast<int>(Tier::kCpu), v1::TIER_CPU);
  EXPECT_EQ(static_cast<int>(Tier::kGpuSmall), v1::TIER_GPU_SMALL);
  EXPECT_EQ(static_cast<int>(Tier::kGpuMid), v1::TIER_GPU_MID);
  EXPECT_EQ(static_cast<int>(Tier::kGpuLarge), v1::TIER_GPU_LARGE);
  EXPECT_EQ(static_cast<int>(Tier::kDatacenter), v1::TIER_DATACENTER);
}

TEST(WireEnumsTest, RejectReasonsAreAppendOnly) {
  // Values are part of the protocol; these are the ones released so far.
  EXPECT_EQ(v1::REJECT_BAD_SIGNATURE, 1);
  EXPECT_EQ(v1::REJECT_LEASE_NOT_HELD, 3);
  EXPECT_EQ(v1::REJECT_NORM_TOO_LARGE, 8);
  EXPECT_EQ(v1::REJECT_JOB_NOT_ACTIVE, 12);
  EXPECT_EQ(v1::REJECT_BAD_CALL_AUTH, 13);
  EXPECT_EQ(v1::REJECT_UNKNOWN_SESSION, 14);
  EXPECT_EQ(v1::REJECT_SAMPLE_COUNT_MISMATCH, 15);
  EXPECT_EQ(v1::REJECT_NORM_TOO_SMALL, 16);
  EXPECT_EQ(v1::REJECT_TOO_MANY_LEASES, 17);
  EXPECT_EQ(v1::REJECT_TOO_MANY_UPLOADS, 18);
  EXPECT_EQ(v1::REJECT_NOT_LEASED_BLOB, 19);
  EXPECT_EQ(v1::REJECT_OUTLIER, 20);
  EXPECT_EQ(v1::REJECT_REPLICA_DISAGREES, 21);
  EXPECT_EQ(v1::RejectReason_MAX, v1::REJECT_REPLICA_DISAGREES);
}

TEST(WireEnumsTest, UnitStatesAreAppendOnly) {
  EXPECT_EQ(v1::UNIT_PENDING, 1);
  EXPECT_EQ(v1::UNIT_LEASED, 2);
  EXPECT_EQ(v1::UNIT_ACCEPTED, 3);
  EXPECT_EQ(v1::UNIT_REJECTED, 4);
  EXPECT_EQ(v1::UNIT_SKIPPED, 5);
  EXPECT_EQ(v1::UnitState_MAX, v1::UNIT_SKIPPED);
}

TEST(WireEnumsTest, WorkKindsAreAppendOnly) {
  // Unset means training, so units from before validation units parse as
  // what they were.
  EXPECT_EQ(v1::WORK_TRAIN, 0);
  EXPECT_EQ(v1::WORK_VALIDATE, 1);
  EXPECT_EQ(v1::WorkKind_MAX, v1::WORK_VALIDATE);
  EXPECT_EQ(static_cast<int>(PayloadKind::kValidationReport), 3);
}

TEST(WireEnumsTest, BaseFormatsMatchCommonWeightFormat) {
  // Workers cast the wire value to WeightFormat: the values must agree, and
  // unset means an unquantized base, as jobs from before QLoRA were.
  EXPECT_EQ(v1::BASE_FORMAT_UNSPECIFIED, static_cast<int>(WeightFormat::kNone));
  EXPECT_EQ(v1::BASE_FORMAT_Q8, static_cast<int>(WeightFormat::kQ8));
  EXPECT_EQ(v1::BASE_FORMAT_Q4, static_cast<int>(WeightFormat::kQ4));
  EXPECT_EQ(v1::BASE_FORMAT_NF4, static_cast<int>(WeightFormat::kNf4));
  EXPECT_EQ(v1::BaseFormat_MAX, v1::BASE_FORMAT_NF4);
}

TEST(ValidationSigningTest, AReportSignsEveryFieldButItsWorker) {
  v1::WorkUnit unit;
  unit.set_job_id("job-1");
  unit.set_round(2);
  unit.set_unit_id("job-1-r2-v1-s0-p0");
  unit.set_base_model_hash(Sha256Hex("model"));
  unit.set_parent_adapter_version(1);
  unit.mutable_candidate_adapter()->set_sha256(Sha256Hex("candidate"));
  unit.set_validation_begin(10);
  unit.set_validation_end(30);
  v1::ValidationReport report = ValidationReportForUnit(unit, "w-1");
  EXPECT_EQ(report.records(), 20u);
  report.set_candidate_loss(1.25);
  report.set_parent_loss(1.5);
  auto key = Ed25519PrivateKey::Generate();
  ASSERT_TRUE(key.ok());
  auto signature = SignPayload(*key, ValidationSigningPayload(report));
  ASSERT_TRUE(signature.ok());
  EXPECT_TRUE(VerifyPayloadSignature(key->PublicKey(),
                                     ValidationSigningPayload(report),
                                     *signature)
                  .ok());
  for (auto mutate : std::vector<std::function<void(v1::ValidationReport*)>>{
           [](v1::ValidationReport* r) { r->set_candidate_loss(1.0); },
           [](v1::ValidationReport* r) { r->set_parent_loss(9.0); },
           [](v1::ValidationReport* r) { r->set_records(21); },
           [](v1::ValidationReport* r) {
             r->set_candidate_sha256(Sha256Hex("other"));
           },
           [](v1::ValidationReport* r) { r->set_round(3); },
           [](v1::ValidationReport* r) { r->set_unit_id("job-1-r2-v2-s0-p0"); },
       }) {
    v1::ValidationReport changed = report;
    mutate(&changed);
    EXPECT_FALSE(VerifyPayloadSignature(key->PublicKey(),
                                        ValidationSigningPayload(changed),
                                        *signature)
                     .ok());
  }
}

TEST(CallSigningTest, TheDigestSurvivesTheWireAndCoversEveryField) {
  // What the worker signs is what the coordinator recomputes from the parsed
  // message, maps included (their order on the wire is not fixed).
  v1::UploadDeltaChunk first;
  v1::DeltaHeader* header = first.mutable_header();
  header->set_worker_id("w-1");
  header->set_content_hash(Sha256Hex("delta"));
  for (const char* name : {"train_loss", "tokens", "final_loss", "a", "z"})
    (*header->mutable_metrics())[name] = 1.5;
  auto key = Ed25519PrivateKey::Generate();
  ASSERT_TRUE(key.ok());
  ASSERT_TRUE(
      SignCall(*key, kUploadDeltaMethod, "w-1", std::string(16, 's'), 7, &first)
          .ok());
  std::string wire;
  ASSERT_TRUE(first.SerializeToString(&wire));
  v1::UploadDeltaChunk parsed;
  ASSERT_TRUE(parsed.ParseFromString(wire));
  EXPECT_EQ(CallDigest(parsed), CallDigest(first));
  EXPECT_EQ(parsed.auth().counter(), 7u);
  const std::string message =
      CallAuthMessage(kUploadDeltaMethod, "w-1", parsed.auth().session_id(),
                      parsed.auth().counter(), CallDigest(parsed));
  EXPECT_TRUE(key->PublicKey().Verify(message, parsed.auth().signature()).ok());
  parsed.mutable_header()->set_sample_count(1'000'000);
  EXPECT_NE(CallDigest(parsed), CallDigest(first));
}

TEST(WireMessagesTest, UploadChunkRoundTrips) {
  v1::UploadDeltaChunk chunk;
  v1::DeltaHeader* header = chunk.mutable_header();
  header->set_worker_id("w-1");
  header->set_job_id("job-1");
  header->set_round(2);
  header->set_unit_id("job-1/r2/s0/0");
  header->set_base_model_hash(Sha256Hex("model"));
  header->set_parent_adapter_version(1);
  header->set_content_hash(Sha256Hex("delta"));
  header->set_size_bytes(5);
  header->set_sample_count(64);
  (*header->mutable_metrics())["train_loss"] = 0.75;
  header->set_signature(std::string(64, '\x01'));
  chunk.set_offset(0);
  chunk.set_data(std::string("delta\0bytes", 11));

  std::string wire;
  ASSERT_TRUE(chunk.SerializeToString(&wire));
  v1::UploadDeltaChunk parsed;
  ASSERT_TRUE(parsed.ParseFromString(wire));
  EXPECT_EQ(parsed.header().unit_id(), "job-1/r2/s0/0");
  EXPECT_EQ(parsed.header().metrics().at("train_loss"), 0.75);
  EXPECT_EQ(parsed.header().signature().size(), 64u);
  EXPECT_EQ(parsed.data().size(), 11u);
}

}  // namespace
}  // namespace openforce
