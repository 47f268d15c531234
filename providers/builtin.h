#pragma once

#include <memory>
#include <vector>

#include "reconciler/kind_registry.h"

namespace hyper::providers {

// One line of a registration list: the record of the provider whose folder defines
// `ProviderRecord hyper::providers::provider_<folder>()` (providers/<folder>/registration.cc).
// The declaration is inside the line, so adding a provider to a list is that one line.
#define HYPER_PROVIDER(folder)                          \
  [] {                                                  \
    extern ::hyper::ProviderRecord provider_##folder(); \
    return provider_##folder();                         \
  }()

// Every provider compiled into hyper, as an explicit list (Terraform's Provider.Resources):
// nothing registers itself, so a linker cannot silently drop one. Adding a kind is a folder
// under providers/ and one line here.
std::vector<ProviderRecord> builtinProviderRecords();

// The registry of builtinProviderRecords(); made once.
Result<std::shared_ptr<const KindRegistry>> builtinKinds();

}  // namespace hyper::providers
