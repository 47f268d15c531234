#include "providers/builtin.h"

#include "providers/broker/broker_provider.h"
#include "providers/net/net_provider.h"
#include "providers/vmm/vm_provider.h"

namespace hyper::providers {

std::vector<std::unique_ptr<Provider>> builtinProviders(const BuiltinOptions& options) {
  std::vector<std::unique_ptr<Provider>> out;
  out.push_back(std::make_unique<net::NetProvider>());
  out.push_back(std::make_unique<vmm::VmProvider>());
  broker::BrokerProviderConfig broker = broker::BrokerProviderConfig::fromEnvironment();
  if (!options.brokerRules.empty()) {
    broker.rulesPath = options.brokerRules;
  }
  if (!options.brokerSocket.empty()) {
    broker.socketPath = options.brokerSocket;
  }
  out.push_back(std::make_unique<broker::BrokerProvider>(broker));
  return out;
}

}  // namespace hyper::providers
