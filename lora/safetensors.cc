// safetensors reader and writer; see safetensors.h. Format: u64 little-endian
// header length N, N bytes of JSON {"name": {"dtype", "shape", "data_offsets":
// [begin, end]},
// "__metadata__": {...}}, then the data section that offsets are relative to.
#include "lora/safetensors.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/untrusted_json.h"

namespace openforce::lora {

struct SafetensorsFile::Mapping {
  void* address = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (address != nullptr && address != MAP_FAILED) ::munmap(address, size);
  }
};

namespace {

absl::Status Malformed(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat("safetensors file ", path, ": ", what));
}

int64_t ElementSize(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat:
      return 4;
    case at::kChar:
    case at::kByte:
      return 1;
    default:
      return 2;
  }
}

}  // namespace

absl::StatusOr<at::ScalarType> ParseSafetensorsDtype(const std::string& name) {
  if (name == "F32") return at::kFloat;
  if (name == "F16") return at::kHalf;
  if (name == "BF16") return at::kBFloat16;
  if (name == "I8") return at::kChar;
  if (name == "U8") return at::kByte;
  for (const char* known : {"F64", "I64", "I32", "I16", "BOOL", "F8_E4M3",
                            "F8_E5M2", "U16", "U32", "U64"}) {
    if (name == known) {
      return absl::InvalidArgumentError(
          absl::StrCat("dtype ", name, " is not supported (F32, F16, BF16)"));
    }
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown dtype '", name, "'"));
}

absl::StatusOr<std::string> SafetensorsDtypeName(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat:
      return std::string("F32");
    case at::kHalf:
      return std::string("F16");
    case at::kBFloat16:
      return std::string("BF16");
    case at::kChar:
      return std::string("I8");
    case at::kByte:
      return std::string("U8");
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("cannot store dtype ", c10::toString(dtype),
                       " (F32, F16, BF16, I8, U8)"));
  }
}

SafetensorsFile::~SafetensorsFile() = default;

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(
    const std::string& path, uint64_t max_header_bytes) {
  SafetensorsOpenOptions options;
  options.max_header_bytes = max_header_bytes;
  return Open(path, options);
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(
    const std::string& path, const SafetensorsOpenOptions& options) {
  const uint64_t max_header_bytes =
      std::min(options.max_header_bytes, kMaxSafetensorsHeaderBytes);
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoToStatus(errno, absl::StrCat("open ", path));
  struct stat info;
  if (::fstat(fd.get(), &info) != 0)
    return ErrnoToStatus(errno, absl::StrCat("stat ", path));
  const uint64_t file_size = static_cast<uint64_t>(info.st_size);
  if (file_size < 8) {
    return Malformed(
        path, absl::StrCat("truncated: ", file_size,
                           " bytes is shorter than the 8-byte header length"));
  }

  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->mapping_ = std::make_shared<Mapping>();
  file->mapping_->size = file_size;
  file->mapping_->address = ::mmap(nullptr, file_size, PROT_READ | PROT_WRITE,
                                   MAP_PRIVATE, fd.get(), 0);
  if (file->mapping_->address == MAP_FAILED) {
    file->mapping_->address = nullptr;
    return ErrnoToStatus(errno, absl::StrCat("mmap ", path));
  }
  const auto* bytes = static_cast<const uint8_t*>(file->mapping_->address);

  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | bytes[i];
  if (header_size > max_header_bytes) {
    return Malformed(
        path, absl::StrCat("header of ", header_size, " bytes exceeds the ",
                           max_header_bytes, "-byte limit"));
  }
  if (header_size > file_size - 8) {
    return Malformed(path, absl::StrCat("header length ", header_size,
                                        " runs beyond the end of the file (",
                                        file_size, " bytes)"));
  }
  file->data_start_ = 8 + header_size;
  const uint64_t data_size = file_size - file->data_start_;

  const char* header_begin = reinterpret_cast<const char*>(bytes + 8);
  // A safetensors header nests three levels (name, entry, shape); anything
  // deeper is hostile.
  absl::StatusOr<nlohmann::json> parsed = ParseUntrustedJson(
      absl::string_view(header_begin, header_size), "header", /*max_depth=*/4);
  if (!parsed.ok())
    return Malformed(path, std::string(parsed.status().message()));
  const nlohmann::json& header = *parsed;
  if (!header.is_object()) {
    return Malformed(path, "header is not a JSON object");
  }

  std::vector<std::pair<uint64_t, std::string>> starts;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object())
        return Malformed(path, "__metadata__ is not an object");
      for (const auto& [key, text] : value.items()) {
        if (!text.is_string()) {
          return Malformed(
              path, absl::StrCat("metadata '", key, "' is not a string"));
        }
        file->metadata_[key] = text.get<std::string>();
      }
      continue;
    }
    const std::string where = absl::StrCat("tensor '", name, "'");
    if (name.empty()) return Malformed(path, "a tensor has an empty name");
    if (!value.is_object() || !value.contains("dtype") ||
        !value.contains("shape") || !value.contains("data_offsets")) {
      return Malformed(
          path, absl::StrCat(where, " lacks dtype, shape or data_offsets"));
    }
    if (!value["dtype"].is_string())
      return Malformed(path, where + ": dtype is not a string");
    absl::StatusOr<at::ScalarType> dtype =
        ParseSafetensorsDtype(value["dtype"].get<std::string>());
    if (!dtype.ok())
      return Malformed(path,
                       absl::StrCat(where, ": ", dtype.status().message()));
    if (!options.allow_int8 && (*dtype == at::kChar || *dtype == at::kByte)) {
      return Malformed(
          path,
          absl::StrCat(where, ": dtype ", value["dtype"].get<std::string>(),
                       " is not supported (F32, F16, BF16)"));
    }
    SafetensorsEntry entry;
    entry.dtype = *dtype;
    if (!value["shape"].is_array())
      return Malformed(path, where + ": shape is not a list");
    // Overflow-safe element count.
    uint64_t elements = 1;
    for (const nlohmann::json& dim : value["shape"]) {
      if (!dim.is_number_unsigned() &&
          !(dim.is_number_integer() && dim.get<int64_t>() >= 0)) {
        return Malformed(path,
                         where + ": shape holds a value that is not a size");
      }
      const uint64_t size = dim.get<uint64_t>();
      if (size != 0 && elements > (uint64_t{1} << 62) / size) {
        return Malformed(path, where + ": shape is too large");
      }
      elements *= size;
      entry.shape.push_back(static_cast<int64_t>(size));
    }
    const nlohmann::json& offsets = value["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 ||
        !offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned()) {
      return Malformed(path, where + ": data_offsets is not [begin, end]");
    }
    entry.begin = offsets[0].get<uint64_t>();
    entry.end = offsets[1].get<uint64_t>();
    if (entry.begin > entry.end || entry.end > data_size) {
      return Malformed(
          path, absl::StrCat(where, ": data_offsets [", entry.begin, ", ",
                             entry.end, ") out of range of the ", data_size,
                             "-byte data section"));
    }
    const uint64_t expected =
        elements * static_cast<uint64_t>(ElementSize(entry.dtype));
    if (entry.end - entry.begin != expected) {
      return Malformed(path,
                       absl::StrCat(where, ": ", entry.end - entry.begin,
                                    " bytes do not hold its shape and dtype (",
                                    expected, " bytes)"));
    }
    starts.emplace_back(entry.begin, name);
    file->entries_.emplace(name, std::move(entry));
  }
  std::sort(starts.begin(), starts.end());
  uint64_t furthest_end = 0;
  const std::string* furthest_name = nullptr;
  for (const auto& [begin, name] : starts) {
    const SafetensorsEntry& entry = file->entries_.at(name);
    if (entry.end == entry.begin) continue;  // empty tensors occupy no bytes
    if (furthest_name != nullptr && begin < furthest_end) {
      return Malformed(path, absl::StrCat("tensors '", *furthest_name,
                                          "' and '", name, "' overlap"));
    }
    furthest_end = entry.end;
    furthest_name = &name;
  }
  return file;
}

absl::StatusOr<at::Tensor> SafetensorsFile::Tensor(
    const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat("safetensors file ", path_,
                                            " has no tensor '", name, "'"));
  }
  const SafetensorsEntry& entry = it->second;
  auto* data =
      static_cast<uint8_t*>(mapping_->address) + data_start_ + entry.begin;
  std::shared_ptr<Mapping> keep_alive = mapping_;
  try {
    return at::from_blob(
        data, entry.shape, [keep_alive](void*) mutable { keep_alive.reset(); },
        at::TensorOptions().dtype(entry.dtype));
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("map tensor '", name, "' of ", path_, ": ", e.what()));
  }
}

void SafetensorsFile::DropPages(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) return;
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const auto base = reinterpret_cast<uintptr_t>(mapping_->address);
  const uint64_t begin = data_start_ + it->second.begin;
  const uint64_t end = data_start_ + it->second.end;
  const uint64_t first = (begin + page - 1) / page * page;
  const uint64_t last = end / page * page;
  if (last <= first) return;
  // Advisory: on failure the pages simply stay.
  (void)::madvise(reinterpret_cast<void*>(base + first), last - first,
                  MADV_DONTNEED);
}

absl::Status WriteSafetensors(
    const std::string& path,
    const std::vector<std::pair<std::string, at::Tensor>>& tensors,
    const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> contiguous;
  uint64_t offset = 0;
  try {
    for (const auto& [name, tensor] : tensors) {
      if (name.empty() || name == "__metadata__" || header.contains(name)) {
        return absl::InvalidArgumentError(
            absl::StrCat("cannot write tensor name '", name, "' to ", path,
                         ": empty, reserved or repeated"));
      }
      ASSIGN_OR_RETURN(std::string dtype,
                       SafetensorsDtypeName(tensor.scalar_type()));
      at::Tensor cpu = tensor.detach().to(at::kCPU).contiguous();
      const uint64_t size =
          static_cast<uint64_t>(cpu.numel() * cpu.element_size());
      header[name] = {{"dtype", dtype},
                      {"shape", cpu.sizes().vec()},
                      {"data_offsets", {offset, offset + size}}};
      offset += size;
      contiguous.push_back(std::move(cpu));
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("write ", path, ": ", e.what()));
  }
  std::string header_text = header.dump();
  // Pad with spaces so the data section starts 8-byte aligned, as the reference
  // writer does.
  header_text.append((8 - header_text.size() % 8) % 8, ' ');
  std::string prefix;
  uint64_t length = header_text.size();
  for (int i = 0; i < 8; ++i)
    prefix.push_back(static_cast<char>((length >> (8 * i)) & 0xff));
  prefix += header_text;
  // Tensor by tensor: a multi-gigabyte file never sits in memory twice.
  return WriteFileAtomicallyWith(
      path, [&](int fd, const std::string& temp) -> absl::Status {
        RETURN_IF_ERROR(WriteAll(fd, prefix, temp));
        for (const at::Tensor& tensor : contiguous) {
          RETURN_IF_ERROR(WriteAll(
              fd,
              absl::string_view(
                  static_cast<const char*>(tensor.data_ptr()),
                  static_cast<size_t>(tensor.numel() * tensor.element_size())),
              temp));
        }
        return absl::OkStatus();
      });
}

}  // namespace openforce::lora
