// The net provider's registration: Network and NetworkPolicy (providers/builtin.cc lists it).

#include "netmodel/net_spec.h"
#include "providers/net/net_provider.h"
#include "reconciler/kind_registry.h"

namespace hyper::providers {

ProviderRecord provider_net() {
  KindRecord network;
  network.kind = "Network";
  network.plural = "networks";
  network.shortNames = {"net"};
  network.schema = embeddedSchemaText("network.schema.json");
  network.withDefaults = [](const std::string& name, const Json& spec) {
    auto parsed = netmodel::parseNetworkSpec(name, spec);
    return parsed.isOk() ? parsed->toJson() : spec;
  };
  network.columns = {fieldColumn("CIDR", "cidr"), fieldColumn("GATEWAY", "gateway"),
                     fieldColumn("BRIDGE", "bridge"), fieldColumn("NAT", "nat"),
                     fieldColumn("MTU", "mtu")};

  KindRecord policy;
  policy.kind = "NetworkPolicy";
  policy.plural = "networkpolicies";
  policy.shortNames = {"netpol"};
  policy.schema = embeddedSchemaText("networkpolicy.schema.json");
  auto mode = [](const char* direction) {
    return [direction](const GetRow& row) {
      return row.spec.contains(direction) ? row.spec[direction].value("mode", "any")
                                          : std::string("any");
    };
  };
  policy.columns = {
      fieldColumn("NETWORK", "network"), {"EGRESS", mode("egress")}, {"INGRESS", mode("ingress")}};

  ProviderRecord record;
  record.name = "net";
  record.kinds = {std::move(network), std::move(policy)};
  record.make = [](const Json&, const std::string&) -> Result<std::unique_ptr<Provider>> {
    return std::unique_ptr<Provider>(std::make_unique<net::NetProvider>());
  };
  return record;
}

}  // namespace hyper::providers
