// Published model shapes; see model_catalog.h.
#include "common/model_catalog.h"

namespace openforce {

const std::vector<CatalogModel>& ModelCatalog() {
  // Field order: vocab, hidden, intermediate, layers, heads, kv heads,
  // head_dim, tied.
  static const auto* const kCatalog = new std::vector<CatalogModel>{
      {"TinyLlama-1.1B", "1B", {32000, 2048, 5632, 22, 32, 4, 0, false}},
      {"Llama-3.2-3B", "3B", {128256, 3072, 8192, 28, 24, 8, 0, true}},
      {"Llama-2-7B", "7B", {32000, 4096, 11008, 32, 32, 32, 0, false}},
      {"Llama-2-13B", "13B", {32000, 5120, 13824, 40, 40, 40, 0, false}},
      {"LLaMA-33B", "30B", {32000, 6656, 17920, 60, 52, 52, 0, false}},
      {"Llama-2-70B", "70B", {32000, 8192, 28672, 80, 64, 8, 0, false}},
  };
  return *kCatalog;
}

}  // namespace openforce
