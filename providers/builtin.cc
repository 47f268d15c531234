#include "providers/builtin.h"

namespace hyper::providers {

std::vector<ProviderRecord> builtinProviderRecords() {
  return {
      HYPER_PROVIDER(net),
      HYPER_PROVIDER(vmm),
      HYPER_PROVIDER(broker),
      HYPER_PROVIDER(build),
  };
}

Result<std::shared_ptr<const KindRegistry>> builtinKinds() {
  static const Result<std::shared_ptr<const KindRegistry>> registry =
      KindRegistry::create(builtinProviderRecords());
  return registry;
}

}  // namespace hyper::providers
