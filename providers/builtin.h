#pragma once

#include <memory>
#include <vector>

#include "reconciler/provider.h"

namespace hyper::providers {

// Every provider compiled into hyper, as an explicit list of constructors (Terraform's
// Provider.Resources): nothing registers itself, so a linker cannot silently drop one.
std::vector<std::unique_ptr<Provider>> builtinProviders();

}  // namespace hyper::providers
