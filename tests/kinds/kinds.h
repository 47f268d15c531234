#pragma once

#include <vector>

#include "reconciler/kind_registry.h"

namespace hyper::providers {

// The compiled-in providers, then the test kinds of tests/kinds/ (kinds.cc).
std::vector<ProviderRecord> testProviderRecords();

}  // namespace hyper::providers
