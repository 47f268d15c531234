#include "tests/kinds/kinds.h"

#include "providers/builtin.h"

namespace hyper::providers {

std::vector<ProviderRecord> testProviderRecords() {
  std::vector<ProviderRecord> out = builtinProviderRecords();
  std::vector<ProviderRecord> extra = {
      // One HYPER_PROVIDER(folder) line per folder of tests/kinds/:
      HYPER_PROVIDER(widget),
  };
  for (auto& r : extra) {
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace hyper::providers
