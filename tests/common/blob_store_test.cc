// The content-addressed blob store on a real directory: durable puts,
// verification on read, resumable uploads that survive a restart, path safety,
// crash leftovers.
#include "common/blob_store.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "common/sha256.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace openforce {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::HasSubstr;

class BlobStoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<BlobStore> OpenStore(BlobStoreOptions options = {}) {
    absl::StatusOr<std::unique_ptr<BlobStore>> store =
        BlobStore::Open(dir_.Join("blobs"), options);
    EXPECT_OK(store);
    return store.ok() ? *std::move(store) : nullptr;
  }
  std::string ObjectPath(const std::string& hash) {
    return dir_.Join("blobs/objects/" + hash.substr(0, 2) + "/" + hash);
  }

  testing::TempDir dir_;
};

TEST_F(BlobStoreTest, PutThenGetReturnsTheSameBytesUnderTheirHash) {
  auto store = OpenStore();
  const std::string data = "adapter delta bytes\0with a NUL";
  absl::StatusOr<std::string> hash = store->Put(data);
  ASSERT_OK(hash);
  EXPECT_EQ(*hash, Sha256Hex(data));
  EXPECT_TRUE(store->Contains(*hash));
  EXPECT_TRUE(std::filesystem::is_regular_file(ObjectPath(*hash)));
  absl::StatusOr<std::string> read = store->Get(*hash);
  ASSERT_OK(read);
  EXPECT_EQ(*read, data);
  absl::StatusOr<uint64_t> size = store->Size(*hash);
  ASSERT_OK(size);
  EXPECT_EQ(*size, data.size());
  EXPECT_OK(store->Verify(*hash));
}

TEST_F(BlobStoreTest, StreamingWriterAndFilesAgreeWithOneShotPut) {
  auto store = OpenStore();
  absl::StatusOr<std::unique_ptr<BlobWriter>> writer = store->NewWriter();
  ASSERT_OK(writer);
  std::string all;
  for (int i = 0; i < 100; ++i) {
    std::string piece(1000 + i, static_cast<char>('a' + i % 26));
    ASSERT_OK((*writer)->Append(piece));
    all += piece;
  }
  absl::StatusOr<std::string> hash = (*writer)->Commit(Sha256Hex(all));
  ASSERT_OK(hash);
  EXPECT_EQ(*hash, Sha256Hex(all));

  const std::string file = dir_.WriteFile("model.safetensors", all);
  absl::StatusOr<std::string> file_hash = store->PutFile(file);
  ASSERT_OK(file_hash);
  EXPECT_EQ(*file_hash, *hash);

  const std::string copy = dir_.Join("copy/model.safetensors");
  std::filesystem::create_directories(dir_.Join("copy"));
  ASSERT_OK(store->CopyToFile(*hash, copy));
  EXPECT_EQ(*ReadFileToString(copy), all);

  absl::StatusOr<std::string> range = store->ReadRange(*hash, 1000, 5);
  ASSERT_OK(range);
  EXPECT_EQ(*range, all.substr(1000, 5));
  absl::StatusOr<std::string> tail =
      store->ReadRange(*hash, all.size() - 3, 100);
  ASSERT_OK(tail);
  EXPECT_EQ(*tail, all.substr(all.size() - 3));
  EXPECT_THAT(
      store->ReadRange(*hash, all.size() + 1, 1),
      StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("past the end")));
}

TEST_F(BlobStoreTest, WriterWithWrongExpectedHashStoresNothing) {
  auto store = OpenStore();
  absl::StatusOr<std::unique_ptr<BlobWriter>> writer = store->NewWriter();
  ASSERT_OK(writer);
  ASSERT_OK((*writer)->Append("actual"));
  EXPECT_THAT((*writer)->Commit(Sha256Hex("claimed")),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("expected")));
  writer->reset();
  EXPECT_FALSE(store->Contains(Sha256Hex("actual")));
  EXPECT_TRUE(std::filesystem::is_empty(dir_.Join("blobs/tmp")));
}

TEST_F(BlobStoreTest, IdleUploadsExpireByTheStoresClockAndStatsCountThem) {
  int64_t now = 1'000'000;
  BlobStoreOptions options;
  options.now_ms = [&now] { return now; };
  auto store = OpenStore(options);
  ASSERT_OK(store->Put("committed"));
  ASSERT_OK(store->AppendUpload("old", 0, "abc"));
  now += 5'000;
  ASSERT_OK(store->CreateUpload("fresh"));  // open before its first byte
  auto uploads = store->ListUploads();
  ASSERT_OK(uploads);
  ASSERT_EQ(uploads->size(), 2u);
  auto stats = store->Stats();
  ASSERT_OK(stats);
  EXPECT_EQ(stats->blob_count, 1u);
  EXPECT_EQ(stats->blob_bytes, 9u);
  EXPECT_EQ(stats->upload_count, 2u);
  EXPECT_EQ(stats->upload_bytes, 3u);
  // "old" has been idle 5 s, "fresh" 0 s: a 4 s expiry takes only "old".
  auto removed = store->ExpireUploads(4'000);
  ASSERT_OK(removed);
  EXPECT_EQ(*removed, 1);
  uploads = store->ListUploads();
  ASSERT_EQ(uploads->size(), 1u);
  EXPECT_EQ((*uploads)[0].upload_id, "fresh");
  EXPECT_EQ((*uploads)[0].modified_ms, now);
  // A late chunk for a removed upload does not bring it back.
  EXPECT_THAT(store->AppendUpload("old", 0, "abc", /*create=*/false),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no longer")));
  EXPECT_EQ(store->ListUploads()->size(), 1u);
  ASSERT_OK(store->AppendUpload("fresh", 0, "xyz", /*create=*/false));
  auto prefixed = store->ListUploads("fr");
  ASSERT_OK(prefixed);
  EXPECT_EQ(prefixed->size(), 1u);
  EXPECT_EQ(store->ListUploads("zz")->size(), 0u);
}

TEST_F(BlobStoreTest, AVerifiedUploadIsInstalledWithoutRereading) {
  auto store = OpenStore();
  ASSERT_OK(store->AppendUpload("u", 0, "payload"));
  auto hash = store->HashUpload("u");
  ASSERT_OK(hash);
  EXPECT_EQ(*hash, Sha256Hex("payload"));
  ASSERT_OK(store->InstallVerifiedUpload("u", *hash));
  EXPECT_TRUE(store->Contains(*hash));
  EXPECT_EQ(*store->Get(*hash), "payload");
  EXPECT_EQ(store->ListUploads()->size(), 0u);
  EXPECT_THAT(store->InstallVerifiedUpload("u", *hash),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

TEST_F(BlobStoreTest, RefusesNamesThatCouldEscapeTheStore) {
  auto store = OpenStore();
  const std::vector<std::string> bad_names = {
      "../../../../etc/passwd",    "/etc/passwd",       "", "abc",
      std::string(62, 'a') + "/.", std::string(64, 'A')};
  for (const std::string& name : bad_names) {
    EXPECT_THAT(store->Get(name), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("not a blob name")))
        << name;
    EXPECT_FALSE(store->Contains(name));
  }
  const std::vector<std::string> bad_ids = {"../x", "a/b", "",
                                            std::string(129, 'u'), "a b"};
  for (const std::string& id : bad_ids) {
    EXPECT_THAT(
        store->AppendUpload(id, 0, "x"),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("upload id")))
        << id;
  }
}

TEST_F(BlobStoreTest, DetectsCorruptionAndARePutRepairsIt) {
  auto store = OpenStore();
  const std::string data(4096, 'w');
  absl::StatusOr<std::string> hash = store->Put(data);
  ASSERT_OK(hash);
  {
    std::fstream file(ObjectPath(*hash),
                      std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(100);
    file.put('X');
  }
  EXPECT_THAT(store->Get(*hash),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("corrupted")));
  EXPECT_THAT(store->Verify(*hash),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("corrupted")));
  ASSERT_OK(store->Put(data));
  EXPECT_OK(store->Verify(*hash));
  EXPECT_EQ(*store->Get(*hash), data);
}

TEST_F(BlobStoreTest, PutManyStoresEachBlobOnceAndRepairsATruncatedOne) {
  auto store = OpenStore();
  const std::string stored(300, 's');
  absl::StatusOr<std::string> stored_hash = store->Put(stored);
  ASSERT_OK(stored_hash);
  const std::string truncated(500, 't');
  absl::StatusOr<std::string> truncated_hash = store->Put(truncated);
  ASSERT_OK(truncated_hash);
  std::filesystem::resize_file(ObjectPath(*truncated_hash), 10);

  // Repeats and blobs already stored come back in order, under their hashes.
  const std::vector<std::string> blobs = {"shard a", stored, "shard a",
                                          truncated, "shard b"};
  absl::StatusOr<std::vector<std::string>> hashes = store->PutMany(blobs);
  ASSERT_OK(hashes);
  ASSERT_EQ(hashes->size(), blobs.size());
  for (size_t i = 0; i < blobs.size(); ++i) {
    EXPECT_EQ((*hashes)[i], Sha256Hex(blobs[i])) << i;
    absl::StatusOr<std::string> read = store->Get((*hashes)[i]);
    ASSERT_OK(read);
    EXPECT_EQ(*read, blobs[i]) << i;
  }
  EXPECT_OK(store->Verify(*truncated_hash));
  // Nothing is left behind in tmp/.
  EXPECT_TRUE(std::filesystem::is_empty(dir_.Join("blobs/tmp")));
}

TEST_F(BlobStoreTest, MissingBlobIsNotFound) {
  auto store = OpenStore();
  EXPECT_THAT(store->Get(Sha256Hex("never stored")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("blob")));
  EXPECT_THAT(store->Verify(Sha256Hex("never stored")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("blob")));
}

TEST_F(BlobStoreTest, OpenCleansTemporaryLeftoversOfACrash) {
  {
    auto store = OpenStore();
    absl::StatusOr<std::unique_ptr<BlobWriter>> writer = store->NewWriter();
    ASSERT_OK(writer);
    ASSERT_OK((*writer)->Append("half written"));
    // Simulate a crash: the writer's temporary file stays behind.
    (*writer).release();
  }
  dir_.WriteFile("blobs/tmp/999-0", "another leftover");
  EXPECT_FALSE(std::filesystem::is_empty(dir_.Join("blobs/tmp")));
  auto reopened = OpenStore();
  EXPECT_TRUE(std::filesystem::is_empty(dir_.Join("blobs/tmp")));
  EXPECT_FALSE(reopened->Contains(Sha256Hex("half written")));
}

TEST_F(BlobStoreTest, UploadsResumeAtTheStoredOffsetAcrossRestarts) {
  const std::string data = std::string(3000, 'q') + std::string(3000, 'r');
  const std::string hash = Sha256Hex(data);
  {
    auto store = OpenStore();
    EXPECT_EQ(*store->UploadOffset("unit-1"), 0u);
    ASSERT_OK(store->AppendUpload("unit-1", 0, data.substr(0, 2000)));
    ASSERT_OK(store->AppendUpload("unit-1", 2000, data.substr(2000, 1000)));
  }
  // The coordinator restarts; the partial upload is still there.
  auto store = OpenStore();
  absl::StatusOr<uint64_t> offset = store->UploadOffset("unit-1");
  ASSERT_OK(offset);
  EXPECT_EQ(*offset, 3000u);
  // A client that lost track and resends from an old offset is told where to
  // resume.
  EXPECT_THAT(store->AppendUpload("unit-1", 2000, data.substr(2000, 1000)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("offset 3000")));
  ASSERT_OK(store->AppendUpload("unit-1", 3000, data.substr(3000)));
  absl::StatusOr<std::string> committed = store->CommitUpload("unit-1", hash);
  ASSERT_OK(committed);
  EXPECT_EQ(*committed, hash);
  EXPECT_EQ(*store->Get(hash), data);
  EXPECT_EQ(*store->UploadOffset("unit-1"), 0u);
}

TEST_F(BlobStoreTest, UploadWithWrongHashIsDiscarded) {
  auto store = OpenStore();
  ASSERT_OK(store->AppendUpload("unit-2", 0, "tampered"));
  EXPECT_THAT(store->CommitUpload("unit-2", Sha256Hex("original")),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("discarded")));
  EXPECT_FALSE(store->Contains(Sha256Hex("tampered")));
  EXPECT_EQ(*store->UploadOffset("unit-2"), 0u);
  EXPECT_THAT(store->CommitUpload("unit-3", Sha256Hex("x")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("unit-3")));
  EXPECT_THAT(
      store->CommitUpload("unit-2", "bad"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected hash")));
}

TEST_F(BlobStoreTest, EnforcesTheSizeLimit) {
  BlobStoreOptions options;
  options.max_blob_bytes = 1024;
  auto store = OpenStore(options);
  EXPECT_OK(store->Put(std::string(1024, 'a')));
  EXPECT_THAT(store->Put(std::string(1025, 'a')),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("limit of 1024")));
  ASSERT_OK(store->AppendUpload("big", 0, std::string(1000, 'b')));
  EXPECT_THAT(store->AppendUpload("big", 1000, std::string(25, 'b')),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("limit of 1024")));
  EXPECT_EQ(*store->UploadOffset("big"), 1000u);
  EXPECT_OK(store->AbortUpload("big"));
  EXPECT_EQ(*store->UploadOffset("big"), 0u);
}

}  // namespace
}  // namespace openforce
