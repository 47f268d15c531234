#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "netmodel/cidr.h"
#include "reconciler/diagnostic.h"
#include "reconciler/object.h"

namespace hyper::netmodel {

inline constexpr int kDefaultMtu = 1500;  // the kernel's default for a new bridge
inline constexpr int kMinNetworkPrefix = 8;
inline constexpr int kMaxNetworkPrefix = 30;  // a /31 or /32 has no room for a gateway and VMs
inline constexpr std::string_view kBridgePrefix = "hb-";

// A Network spec with every default filled in, so that two specs that mean the same bridge compare
// equal (an explicit `mtu: 1500` and none; an explicit gateway equal to the first host address).
struct NetworkSpec {
  std::string name;      // metadata.name
  Cidr cidr;             // a network address (host bits zero)
  uint32_t gateway = 0;  // default: the first host address of cidr
  std::string bridge;    // default: deriveInterfaceName("hb-", name)
  bool nat = false;
  int mtu = kDefaultMtu;

  std::string gatewayCidr() const;  // "10.77.0.1/24", what the bridge carries
  // The normalised spec, shaped like the manifest with every field present.
  Json toJson() const;
  bool operator==(const NetworkSpec&) const = default;
};

enum class TrafficMode { None, Allowlist, Any };
enum class Protocol { Any, Tcp, Udp, Icmp };

const char* trafficModeName(TrafficMode m);  // "none", "allowlist", "any"
const char* protocolName(Protocol p);        // "any", "tcp", "udp", "icmp"

struct AllowRule {
  Cidr cidr;  // canonical; a bare address is a /32
  Protocol protocol = Protocol::Any;
  std::vector<int> ports;  // sorted, unique; only with tcp or udp
  bool operator==(const AllowRule&) const = default;
};

// One direction of a policy. Absent in the manifest means `any`.
struct TrafficRule {
  TrafficMode mode = TrafficMode::Any;
  std::vector<AllowRule> allow;  // only for Allowlist
  // Restricting: traffic it does not allow is dropped (unless another policy allows it).
  bool restricts() const { return mode != TrafficMode::Any; }
  bool operator==(const TrafficRule&) const = default;
};

struct PolicySpec {
  std::string name;     // metadata.name
  std::string network;  // the Network's name
  // The VMs the policy applies to (by their labels, on this network). nullopt: every address of
  // the network.
  std::optional<std::map<std::string, std::string>> matchLabels;
  TrafficRule egress;
  TrafficRule ingress;

  Json toJson() const;  // the normalised spec
  bool operator==(const PolicySpec&) const = default;
};

// Typed, normalised views of a spec. The spec is input (a manifest, or a spec read back from the
// inventory), so a value the schema or validate() would have rejected is an error, never a crash.
Result<NetworkSpec> parseNetworkSpec(const std::string& name, const Json& spec);
Result<NetworkSpec> parseNetworkSpec(const Object& object);
Result<PolicySpec> parsePolicySpec(const std::string& name, const Json& spec);
Result<PolicySpec> parsePolicySpec(const Object& object);

// What validateNetObjects read from each object, kept for its next call: an object whose spec is
// the very tree read then (a revision's unchanged objects share their trees with the last one's)
// is not read again. What it holds is a pure function of the object's id and spec.
class NetSpecMemo {
 public:
  struct Entry {
    SharedJson spec;                     // the tree read (held: its identity is the key)
    std::optional<NetworkSpec> network;  // a Network's reading
    bool cidrOk = false;                 // its cidr read without an error
    Diagnostics diagnostics;             // what reading it found, located by the caller
    bool explicitBridge = false;         // a Network's spec names its bridge
  };
  std::map<ObjectId, Entry> entries;  // of the last call's objects
  // What the cross-object checks found at the last call, when its objects came in id order
  // (crossValid). Their input is each Network's name, CIDR (or that it is unreadable), bridge
  // and whether the bridge is named, in id order: a call in id order where no Network came or
  // went and none read again reads another of those finds the same, so a revision that changed
  // no Network's CIDR or bridge is not checked across again.
  bool crossValid = false;
  Diagnostics crossDiagnostics;
};

// Semantic checks the schemas cannot express, over every Network and NetworkPolicy of a revision
// (schema-valid already): CIDRs that are not network addresses, gateways outside their CIDR,
// overlapping CIDRs and shared bridge names across Networks, `allow` with a mode other than
// allowlist, ports without tcp/udp, a policy network that is not a DNS label. Each diagnostic
// names its object and field path. Pure but for `memo` (null: none), which only saves reading
// again what it read before.
void validateNetObjects(const std::vector<const Object*>& objects, Diagnostics& diagnostics,
                        NetSpecMemo* memo = nullptr);

}  // namespace hyper::netmodel
