// safetensors files: written and read back bit for bit, and every malformed
// file rejected with an error naming the file and what is wrong.
#include "lora/safetensors.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tensor_matchers.h"

namespace openforce::lora {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

// A file with the given header JSON and `data_bytes` zero bytes of data.
std::string RawFile(const std::string& header, size_t data_bytes,
                    uint64_t declared = 0) {
  std::string out(8, '\0');
  uint64_t length = declared != 0 ? declared : header.size();
  std::memcpy(out.data(), &length,
              8);  // x86-64 is little-endian, as the format
  out += header;
  out.append(data_bytes, '\0');
  return out;
}

class SafetensorsTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& name, const std::string& bytes) {
    return dir_.WriteFile(name, bytes);
  }
  testing::TempDir dir_;
};

TEST_F(SafetensorsTest, WritesAndReadsEveryDtypeExactly) {
  at::manual_seed(7);
  const at::Tensor f32 = at::randn({3, 5});
  const at::Tensor f16 = at::randn({4}).to(at::kHalf);
  const at::Tensor bf16 = at::randn({2, 2, 2}).to(at::kBFloat16);
  const std::string path = dir_.Join("t.safetensors");
  ASSERT_OK(WriteSafetensors(path, {{"a.weight", f32}, {"b", f16}, {"c", bf16}},
                             {{"format", "pt"}}));
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Open(path);
  ASSERT_OK(file);
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
  EXPECT_EQ((*file)->entries().size(), 3u);
  EXPECT_TRUE(testing::TensorsEqual(*(*file)->Tensor("a.weight"), f32));
  EXPECT_TRUE(testing::TensorsEqual(*(*file)->Tensor("b"), f16));
  EXPECT_TRUE(testing::TensorsEqual(*(*file)->Tensor("c"), bf16));
  EXPECT_THAT((*file)->Tensor("missing"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("'missing'")));
  // The data section is 8-byte aligned, as the reference writer leaves it.
  absl::StatusOr<std::string> bytes = ReadFileToString(path);
  uint64_t header_length;
  std::memcpy(&header_length, bytes->data(), 8);
  EXPECT_EQ(header_length % 8, 0u);
}

// Resident pages of this process (statm's second field).
int64_t ResidentPages() {
  absl::StatusOr<std::string> statm = ReadFileToString("/proc/self/statm");
  if (!statm.ok()) return -1;
  const size_t space = statm->find(' ');
  return std::stoll(statm->substr(space + 1));
}

TEST_F(SafetensorsTest, DroppedPagesLeaveTheProcessAndReadBackTheSame) {
  at::manual_seed(8);
  const at::Tensor big = at::randn({4, 1024, 1024});  // 16 MiB
  const std::string path = dir_.Join("big.safetensors");
  ASSERT_OK(WriteSafetensors(path, {{"small", at::ones({3})}, {"big", big}}));
  auto file = *SafetensorsFile::Open(path);
  const at::Tensor view = *file->Tensor("big");
  ASSERT_TRUE(at::equal(view, big));  // every page touched
  const int64_t before = ResidentPages();
  file->DropPages("big");
  file->DropPages("missing");  // no such tensor: nothing happens
  const int64_t page = ::sysconf(_SC_PAGESIZE);
  // All but the two boundary pages of the tensor are gone.
  EXPECT_LE(ResidentPages(), before - (16 << 20) / page + 4);
  EXPECT_TRUE(at::equal(view, big));
  EXPECT_TRUE(at::equal(*file->Tensor("small"), at::ones({3})));
}

TEST_F(SafetensorsTest, WritingTheMappedTensorNeverChangesTheFile) {
  const std::string path = dir_.Join("t.safetensors");
  ASSERT_OK(WriteSafetensors(path, {{"w", at::ones({4})}}));
  {
    auto file = *SafetensorsFile::Open(path);
    at::Tensor view = *file->Tensor("w");
    view.mul_(3);  // copy-on-write: private to this process
  }
  auto reopened = *SafetensorsFile::Open(path);
  EXPECT_TRUE(testing::TensorsEqual(*reopened->Tensor("w"), at::ones({4})));
}

TEST_F(SafetensorsTest, RejectsTruncatedFile) {
  const std::string path = Write("short.safetensors", "abc");
  EXPECT_THAT(SafetensorsFile::Open(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(path), HasSubstr("truncated"))));
  // A valid file cut short inside its data section.
  const std::string full = dir_.Join("full.safetensors");
  ASSERT_OK(WriteSafetensors(full, {{"w", at::ones({64})}}));
  std::string bytes = *ReadFileToString(full);
  const std::string cut =
      Write("cut.safetensors", bytes.substr(0, bytes.size() - 10));
  EXPECT_THAT(SafetensorsFile::Open(cut),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("'w'"), HasSubstr("out of range"))));
}

TEST_F(SafetensorsTest, RejectsHeaderLengthBeyondTheFile) {
  const std::string path =
      Write("long.safetensors",
            RawFile(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                    4, 1 << 20));
  EXPECT_THAT(SafetensorsFile::Open(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("runs beyond the end of the file")));
  const std::string huge =
      Write("huge.safetensors", RawFile("{}", 0, uint64_t{1} << 40));
  EXPECT_THAT(
      SafetensorsFile::Open(huge),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exceeds the")));
}

TEST_F(SafetensorsTest, RejectsOffsetsOutOfRange) {
  const std::string path = Write(
      "range.safetensors",
      RawFile(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
              16));
  EXPECT_THAT(SafetensorsFile::Open(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(path), HasSubstr("tensor 'w'"),
                             HasSubstr("out of range"))));
  const std::string reversed = Write(
      "reversed.safetensors",
      RawFile(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 16));
  EXPECT_THAT(
      SafetensorsFile::Open(reversed),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("out of range")));
}

TEST_F(SafetensorsTest, RejectsOverlappingTensors) {
  const std::string path =
      Write("overlap.safetensors",
            RawFile(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                    R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                    16));
  EXPECT_THAT(SafetensorsFile::Open(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("'a'"), HasSubstr("'b'"),
                             HasSubstr("overlap"))));
}

TEST_F(SafetensorsTest, RejectsUnknownAndUnsupportedDtypes) {
  const std::string unknown = Write(
      "unknown.safetensors",
      RawFile(R"({"w":{"dtype":"F12","shape":[1],"data_offsets":[0,4]}})", 4));
  EXPECT_THAT(SafetensorsFile::Open(unknown),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("tensor 'w'"),
                             HasSubstr("unknown dtype 'F12'"))));
  const std::string ints = Write(
      "ints.safetensors",
      RawFile(R"({"w":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", 8));
  EXPECT_THAT(SafetensorsFile::Open(ints),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("I64 is not supported")));
}

TEST_F(SafetensorsTest, Int8TensorsOnlyWhereTheCallerExpectsThem) {
  const std::string path = dir_.Join("int8.safetensors");
  ASSERT_OK(WriteSafetensors(
      path, {{"codes", at::tensor({-128, -1, 0, 127}, at::kChar)},
             {"nibbles", at::tensor({0, 15, 240, 255}, at::kByte)}}));
  // A model, adapter or delta never holds them.
  EXPECT_THAT(SafetensorsFile::Open(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("I8 is not supported")));
  SafetensorsOpenOptions options;
  options.allow_int8 = true;
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Open(path, options);
  ASSERT_OK(file);
  EXPECT_TRUE(at::equal(*(*file)->Tensor("codes"),
                        at::tensor({-128, -1, 0, 127}, at::kChar)));
  EXPECT_TRUE(at::equal(*(*file)->Tensor("nibbles"),
                        at::tensor({0, 15, 240, 255}, at::kByte)));
}

TEST_F(SafetensorsTest, RejectsSizeThatContradictsShapeAndDtype) {
  const std::string path = Write(
      "size.safetensors",
      RawFile(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})",
              16));
  EXPECT_THAT(
      SafetensorsFile::Open(path),
      StatusIs(
          absl::StatusCode::kInvalidArgument,
          HasSubstr("16 bytes do not hold its shape and dtype (12 bytes)")));
}

TEST_F(SafetensorsTest, RejectsMalformedHeaders) {
  EXPECT_THAT(
      SafetensorsFile::Open(Write("a.safetensors", RawFile("{not json", 0))),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("not valid JSON")));
  EXPECT_THAT(
      SafetensorsFile::Open(Write(
          "b.safetensors", RawFile(R"({"w":{"dtype":"F32","shape":[1]}})", 4))),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("lacks")));
  EXPECT_THAT(
      SafetensorsFile::Open(Write(
          "c.safetensors",
          RawFile(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})",
                  4))),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a size")));
  EXPECT_THAT(
      SafetensorsFile::Open(dir_.Join("absent.safetensors")),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("absent.safetensors")));
}

TEST_F(SafetensorsTest, WriterRejectsBadNamesAndDtypes) {
  EXPECT_THAT(
      WriteSafetensors(dir_.Join("x"),
                       {{"w", at::ones({1})}, {"w", at::ones({1})}}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("repeated")));
  EXPECT_THAT(
      WriteSafetensors(dir_.Join("y"), {{"i", at::ones({1}, at::kLong)}}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("cannot store dtype")));
}

}  // namespace
}  // namespace openforce::lora
