#include "providers/builtin.h"

namespace hyper::providers {

std::vector<ProviderRecord> builtinProviderRecords() {
  // One line each (clang-format would pack them).
  // clang-format off
  return {
      HYPER_PROVIDER(net),
      HYPER_PROVIDER(vmm),
      HYPER_PROVIDER(broker),
      HYPER_PROVIDER(build),
      HYPER_PROVIDER(secret),
  };
  // clang-format on
}

Result<std::shared_ptr<const KindRegistry>> builtinKinds() {
  static const Result<std::shared_ptr<const KindRegistry>> registry =
      KindRegistry::create(builtinProviderRecords());
  return registry;
}

}  // namespace hyper::providers
