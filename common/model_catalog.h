// Published Llama-family configurations, one per model class, so that people
// can see which class their machine serves without owning the weights. Shapes
// are copied from the models' config.json files.
#ifndef OPENFORCE_COMMON_MODEL_CATALOG_H_
#define OPENFORCE_COMMON_MODEL_CATALOG_H_

#include <string>
#include <vector>

#include "common/memory_estimate.h"

namespace openforce {

struct CatalogModel {
  std::string name;        // e.g. "Llama-2-7B"
  std::string size_class;  // e.g. "7B"
  ModelShape shape;
};

// Ordered from smallest to largest.
const std::vector<CatalogModel>& ModelCatalog();

}  // namespace openforce

#endif  // OPENFORCE_COMMON_MODEL_CATALOG_H_
