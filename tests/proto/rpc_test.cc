// The transport policy, wire <-> engine conversions and status conversion.
#include <gtest/gtest.h>

#include "proto/channel.h"
#include "proto/lora_convert.h"
#include "proto/signing_convert.h"
#include "proto/status_convert.h"
#include "tests/testing/status_matchers.h"

namespace openforce {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::HasSubstr;

TEST(ChannelTest, KnowsLoopbackAddresses) {
  for (const char* address : {"127.0.0.1:7443", "127.1.2.3:1", "localhost:80",
                              "[::1]:7443", "ipv4:127.0.0.1:5", "localhost"}) {
    EXPECT_TRUE(IsLoopbackAddress(address)) << address;
  }
  for (const char* address : {"0.0.0.0:7443", "10.0.0.1:7443", "[::]:1",
                              "example.org:443", "128.0.0.1:1"}) {
    EXPECT_FALSE(IsLoopbackAddress(address)) << address;
  }
}

TEST(ChannelTest, PlaintextOnlyOnLoopbackOrWhenInsecureIsSaid) {
  TransportOptions plain;
  EXPECT_OK(MakeServerCredentials("127.0.0.1:0", plain));
  EXPECT_THAT(
      MakeServerCredentials("0.0.0.0:7443", plain),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--insecure")));
  EXPECT_OK(MakeChannel("127.0.0.1:7443", plain));
  EXPECT_THAT(
      MakeChannel("coordinator.example.org:7443", plain),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--tls-ca")));
  TransportOptions insecure;
  insecure.insecure = true;
  EXPECT_OK(MakeServerCredentials("0.0.0.0:7443", insecure));
  EXPECT_OK(MakeChannel("coordinator.example.org:7443", insecure));
  TransportOptions half;
  half.tls_cert_file = "cert.pem";
  EXPECT_THAT(MakeServerCredentials("0.0.0.0:7443", half),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("both")));
  TransportOptions missing;
  missing.tls_ca_file = "/nonexistent/ca.pem";
  EXPECT_THAT(MakeChannel("example.org:1", missing),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

TEST(LoraConvertTest, RoundTripsAndNamesBadFields) {
  v1::LoraConfig wire;
  wire.set_rank(8);
  wire.set_alpha(16);
  wire.add_target_modules("q_proj");
  wire.add_target_modules("down_proj");
  auto config = LoraConfigFromProto(wire);
  ASSERT_OK(config);
  EXPECT_EQ(config->rank, 8);
  EXPECT_EQ(config->targets.size(), 2u);
  EXPECT_EQ(LoraConfigToProto(*config).SerializeAsString(), [&] {
    v1::LoraConfig expected = wire;
    expected.set_dropout(0);
    return expected.SerializeAsString();
  }());
  v1::LoraConfig bad = wire;
  bad.set_rank(0);
  EXPECT_THAT(
      LoraConfigFromProto(bad),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("lora.rank")));
  bad = wire;
  bad.add_target_modules("lm_head");
  EXPECT_THAT(LoraConfigFromProto(bad),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("lora.target_modules")));
  bad = wire;
  bad.add_target_modules("q_proj");
  EXPECT_THAT(LoraConfigFromProto(bad),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("twice")));
  bad = wire;
  bad.set_dropout(1.0);
  EXPECT_THAT(
      LoraConfigFromProto(bad),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dropout")));

  v1::TrainingConfig training;
  training.set_learning_rate(1e-3);
  training.set_steps_per_shard(10);
  training.set_batch_size(4);
  training.set_sequence_length(64);
  training.set_seed(9);
  auto options = TrainingOptionsFromProto(training);
  ASSERT_OK(options);
  EXPECT_EQ(options->max_steps, 10);
  EXPECT_EQ(options->gradient_accumulation, 1);
  EXPECT_EQ(options->seed, 9u);
  training.set_batch_size(0);
  EXPECT_THAT(TrainingOptionsFromProto(training),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("training.batch_size")));
  training.set_batch_size(4);
  training.set_base_format(v1::BASE_FORMAT_NF4);
  EXPECT_OK(TrainingOptionsFromProto(training));
  // An open enum: a value no release defines is refused by name.
  training.set_base_format(static_cast<v1::BaseFormat>(9));
  EXPECT_THAT(TrainingOptionsFromProto(training),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("training.base_format 9 is not a known")));
  training.set_base_format(v1::BASE_FORMAT_NF4);
  training.set_quantized_base_sha256(std::string(64, 'a'));
  EXPECT_OK(TrainingOptionsFromProto(training));
  training.set_quantized_base_sha256("ABC");
  EXPECT_THAT(TrainingOptionsFromProto(training),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("quantized_base_sha256 is not a hex")));
  training.set_quantized_base_sha256(std::string(64, 'a'));
  training.set_base_format(v1::BASE_FORMAT_UNSPECIFIED);
  EXPECT_THAT(TrainingOptionsFromProto(training),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("the base is not quantized")));
}

TEST(SigningConvertTest, PayloadsCarryEverySignedField) {
  v1::DeltaHeader header;
  header.set_job_id("job-1");
  header.set_round(3);
  header.set_unit_id("job-1-r3-s0-p0");
  header.set_base_model_hash(std::string(64, 'a'));
  header.set_parent_adapter_version(2);
  header.set_content_hash(std::string(64, 'b'));
  header.set_sample_count(64);
  (*header.mutable_metrics())["train_loss"] = 1.5;
  header.set_signature("ignored");
  const SigningPayload delta = DeltaSigningPayload(header);
  EXPECT_EQ(delta.kind, PayloadKind::kWorkerDelta);
  EXPECT_EQ(delta.round, 3u);
  EXPECT_EQ(delta.unit_id, header.unit_id());
  EXPECT_EQ(delta.parent_adapter_version, 2u);
  EXPECT_EQ(delta.sample_count, 64u);
  EXPECT_EQ(delta.metrics.at("train_loss"), 1.5);
  auto encoded = EncodeSigningPayload(delta);
  ASSERT_OK(encoded);
  header.set_round(4);
  EXPECT_NE(*EncodeSigningPayload(DeltaSigningPayload(header)), *encoded);

  v1::SignedAdapter adapter;
  adapter.set_job_id("job-1");
  adapter.set_version(3);
  adapter.set_parent_version(2);
  adapter.set_base_model_hash(std::string(64, 'a'));
  adapter.set_content_hash(std::string(64, 'c'));
  const SigningPayload published = AdapterSigningPayload(adapter);
  EXPECT_EQ(published.kind, PayloadKind::kPublishedAdapter);
  EXPECT_EQ(published.round, 3u);
  EXPECT_TRUE(published.unit_id.empty());
  EXPECT_EQ(published.parent_adapter_version, 2u);
}

TEST(SigningConvertTest, RegistrationProofIsDomainThenKeyThenNonce) {
  EXPECT_EQ(RegistrationProofMessage("KEY", "NONCE"),
            std::string("openforce/register/v1\0KEYNONCE", 30));
}

TEST(StatusConvertTest, RejectReasonTravelsWithTheStatus) {
  absl::Status rejected = Rejection(absl::StatusCode::kInvalidArgument,
                                    v1::REJECT_NON_FINITE, "NaN in A");
  EXPECT_EQ(RejectReasonOf(rejected), v1::REJECT_NON_FINITE);
  EXPECT_EQ(RejectReasonOf(absl::InvalidArgumentError("x")),
            v1::REJECT_REASON_UNSPECIFIED);
  grpc::Status wire = ToGrpcStatus(rejected, nullptr);
  EXPECT_EQ(wire.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(wire.error_message(), "NaN in A");
}

}  // namespace
}  // namespace openforce
