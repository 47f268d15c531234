#pragma once

#include <memory>
#include <string>
#include <vector>

#include "reconciler/provider.h"

namespace hyper::providers {

// Where providers find the host facilities they manage. Empty: the environment
// (HYPER_BROKER_RULES, HYPER_BROKER_SOCKET), then the defaults.
struct BuiltinOptions {
  std::string brokerRules;   // hyper-broker's rule file
  std::string brokerSocket;  // hyper-broker's socket
};

// Every provider compiled into hyper, as an explicit list of constructors (Terraform's
// Provider.Resources): nothing registers itself, so a linker cannot silently drop one.
std::vector<std::unique_ptr<Provider>> builtinProviders(const BuiltinOptions& options = {});

}  // namespace hyper::providers
