// The canonical signing payload: deterministic bytes, and a signature over one
// payload fails for a payload that differs in any single field.
#include "common/signing_payload.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include "common/sha256.h"
#include "tests/testing/status_matchers.h"

namespace openforce {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::HasSubstr;

SigningPayload ExamplePayload() {
  SigningPayload payload;
  payload.kind = PayloadKind::kWorkerDelta;
  payload.job_id = "job-42";
  payload.round = 3;
  payload.unit_id = "job-42/r3/s7/0";
  payload.base_model_hash = Sha256Hex("base model");
  payload.parent_adapter_version = 2;
  payload.content_hash = Sha256Hex("delta bytes");
  payload.sample_count = 128;
  payload.metrics = {{"train_loss", 1.25}, {"tokens", 65536}};
  return payload;
}

Ed25519PrivateKey TestKey() {
  return *Ed25519PrivateKey::FromSeed(std::string(32, '\x07'));
}

TEST(SigningPayloadTest, EncodingIsDeterministicAndIndependentOfMetricOrder) {
  SigningPayload a = ExamplePayload();
  SigningPayload b = ExamplePayload();
  b.metrics.clear();
  b.metrics.emplace("tokens", 65536);
  b.metrics.emplace("train_loss", 1.25);
  absl::StatusOr<std::string> encoded_a = EncodeSigningPayload(a);
  absl::StatusOr<std::string> encoded_b = EncodeSigningPayload(b);
  ASSERT_OK(encoded_a);
  ASSERT_OK(encoded_b);
  EXPECT_EQ(*encoded_a, *encoded_b);
  // Domain separation comes first so these bytes can never be mistaken for
  // other data.
  EXPECT_EQ(encoded_a->rfind("openforce/signing-payload/v1", 0), 0u);
}

TEST(SigningPayloadTest, SignatureVerifiesForTheSamePayload) {
  const Ed25519PrivateKey key = TestKey();
  absl::StatusOr<std::string> signature = SignPayload(key, ExamplePayload());
  ASSERT_OK(signature);
  EXPECT_OK(
      VerifyPayloadSignature(key.PublicKey(), ExamplePayload(), *signature));
}

struct Mutation {
  const char* field;
  std::function<void(SigningPayload*)> apply;
};

class SigningPayloadMutationTest : public ::testing::TestWithParam<Mutation> {};

TEST_P(SigningPayloadMutationTest, ChangingOneFieldBreaksTheSignature) {
  const Ed25519PrivateKey key = TestKey();
  absl::StatusOr<std::string> signature = SignPayload(key, ExamplePayload());
  ASSERT_OK(signature);
  SigningPayload changed = ExamplePayload();
  GetParam().apply(&changed);
  EXPECT_THAT(VerifyPayloadSignature(key.PublicKey(), changed, *signature),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("does not verify")))
      << "field " << GetParam().field;
}

INSTANTIATE_TEST_SUITE_P(
    EveryField, SigningPayloadMutationTest,
    ::testing::Values(
        Mutation{"kind",
                 [](SigningPayload* p) {
                   p->kind = PayloadKind::kPublishedAdapter;
                 }},
        // A delta's signature is not a validation report's.
        Mutation{"kind as a report",
                 [](SigningPayload* p) {
                   p->kind = PayloadKind::kValidationReport;
                 }},
        Mutation{"job_id", [](SigningPayload* p) { p->job_id = "job-43"; }},
        Mutation{"round", [](SigningPayload* p) { p->round = 4; }},
        Mutation{"unit_id",
                 [](SigningPayload* p) { p->unit_id = "job-42/r3/s8/0"; }},
        Mutation{"base_model_hash",
                 [](SigningPayload* p) {
                   p->base_model_hash = Sha256Hex("other model");
                 }},
        Mutation{"parent_adapter_version",
                 [](SigningPayload* p) { p->parent_adapter_version = 1; }},
        Mutation{"content_hash",
                 [](SigningPayload* p) {
                   p->content_hash = Sha256Hex("other delta");
                 }},
        Mutation{"sample_count",
                 [](SigningPayload* p) { p->sample_count = 129; }},
        Mutation{"metric value",
                 [](SigningPayload* p) { p->metrics["train_loss"] = 1.5; }},
        Mutation{"metric name",
                 [](SigningPayload* p) {
                   p->metrics.erase("tokens");
                   p->metrics["tokenz"] = 65536;
                 }},
        Mutation{"metric added",
                 [](SigningPayload* p) { p->metrics["extra"] = 0; }},
        Mutation{"metric removed",
                 [](SigningPayload* p) { p->metrics.erase("tokens"); }}),
    [](const ::testing::TestParamInfo<Mutation>& info) {
      return std::to_string(info.index);
    });

TEST(SigningPayloadTest, FieldBoundariesAreUnambiguous) {
  // Moving a character between adjacent strings must change the bytes.
  SigningPayload a = ExamplePayload();
  SigningPayload b = ExamplePayload();
  a.job_id = "ab";
  a.unit_id = "c";
  b.job_id = "a";
  b.unit_id = "bc";
  EXPECT_NE(*EncodeSigningPayload(a), *EncodeSigningPayload(b));
}

TEST(SigningPayloadTest, RejectsInvalidPayloads) {
  SigningPayload payload = ExamplePayload();
  payload.content_hash = "not-a-hash";
  EXPECT_THAT(
      EncodeSigningPayload(payload),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("content_hash")));

  payload = ExamplePayload();
  payload.metrics["train_loss"] = std::nan("");
  EXPECT_THAT(EncodeSigningPayload(payload),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("metric train_loss is not finite")));

  payload = ExamplePayload();
  payload.metrics["x"] = std::numeric_limits<double>::infinity();
  EXPECT_THAT(
      EncodeSigningPayload(payload),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("metric x")));

  payload = ExamplePayload();
  payload.unit_id.clear();
  EXPECT_THAT(EncodeSigningPayload(payload),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unit_id is empty")));

  payload = ExamplePayload();
  payload.job_id = std::string(kMaxPayloadStringBytes + 1, 'j');
  EXPECT_THAT(
      EncodeSigningPayload(payload),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("job_id")));

  // A published adapter belongs to a round, not a unit.
  payload = ExamplePayload();
  payload.kind = PayloadKind::kPublishedAdapter;
  payload.unit_id.clear();
  EXPECT_OK(EncodeSigningPayload(payload));
}

}  // namespace
}  // namespace openforce
