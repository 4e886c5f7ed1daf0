// Deterministic request digests; see call_signing.h.
#include "proto/call_signing.h"

#include "common/sha256.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace openforce {

std::string DeterministicDigest(const google::protobuf::MessageLite& message) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    (void)message.ByteSizeLong();  // fills the cached sizes used below
    message.SerializeWithCachedSizes(&coded);
  }
  const Sha256Digest digest = [&] {
    Sha256 hasher;
    hasher.Update(bytes);
    return hasher.Finish();
  }();
  return std::string(reinterpret_cast<const char*>(digest.data()),
                     digest.size());
}

}  // namespace openforce
