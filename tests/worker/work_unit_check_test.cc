// A hostile coordinator cannot make a worker write outside its data
// directory: every wire name that becomes a path is checked first.
#include "worker/work_unit_check.h"

#include <gtest/gtest.h>

#include "common/sha256.h"
#include "tests/testing/status_matchers.h"

namespace openforce::worker {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

v1::WorkUnit GoodUnit() {
  v1::WorkUnit unit;
  unit.set_unit_id("job-abc-r1-s0-p0");
  unit.set_base_model_hash(Sha256Hex("model"));
  unit.mutable_parent_adapter()->set_sha256(Sha256Hex("adapter"));
  unit.mutable_shard()->set_sha256(Sha256Hex("shard"));
  v1::BlobRef* file = unit.add_base_model_files();
  file->set_name("config.json");
  file->set_sha256(Sha256Hex("config"));
  return unit;
}

TEST(WorkUnitCheckTest, AcceptsHashesAndPlainNames) {
  EXPECT_OK(CheckWorkUnitNames(GoodUnit()));
}

TEST(WorkUnitCheckTest, RefusesEveryNameThatCouldLeaveTheDataDirectory) {
  v1::WorkUnit unit = GoodUnit();
  unit.set_base_model_hash("../../x");
  EXPECT_THAT(CheckWorkUnitNames(unit),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("base_model_hash that is not 64")));
  unit = GoodUnit();
  unit.set_base_model_hash(Sha256Hex("model").substr(0, 63) + "/");
  EXPECT_THAT(CheckWorkUnitNames(unit),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("base_model_hash")));
  unit = GoodUnit();
  unit.mutable_parent_adapter()->set_sha256("/etc/passwd");
  EXPECT_THAT(CheckWorkUnitNames(unit),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("parent adapter hash")));
  unit = GoodUnit();
  unit.mutable_shard()->set_sha256(std::string(64, 'A'));  // not lowercase
  EXPECT_THAT(
      CheckWorkUnitNames(unit),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("shard hash")));
  unit = GoodUnit();
  unit.mutable_base_model_files(0)->set_name("../config.json");
  EXPECT_THAT(CheckWorkUnitNames(unit),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  unit = GoodUnit();
  unit.set_unit_id("../../units");
  EXPECT_THAT(
      CheckWorkUnitNames(unit),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unit_id")));
  // Terminal escapes in a refused name are shown escaped.
  unit = GoodUnit();
  unit.set_base_model_hash("\x1b[2J");
  absl::Status refused = CheckWorkUnitNames(unit);
  EXPECT_THAT(refused.message(), HasSubstr("\\x1b[2J"));
}

TEST(WorkUnitCheckTest, AQuantizedBaseMustHashAsTheJobRecords) {
  v1::TrainingConfig training;
  // Full precision, or a job from before the hash was recorded.
  EXPECT_OK(CheckQuantizedBase(training, ""));
  training.set_base_format(v1::BASE_FORMAT_NF4);
  EXPECT_OK(CheckQuantizedBase(training, Sha256Hex("mine")));
  training.set_quantized_base_sha256(Sha256Hex("mine"));
  EXPECT_OK(CheckQuantizedBase(training, Sha256Hex("mine")));
  EXPECT_THAT(CheckQuantizedBase(training, Sha256Hex("theirs")),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr(Sha256Hex("theirs")),
                             HasSubstr("BASE_FORMAT_NF4"),
                             HasSubstr("this worker's quantization differs"))));
}

}  // namespace
}  // namespace openforce::worker
