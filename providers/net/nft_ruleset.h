#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "providers/net/net_spec.h"
#include "reconciler/object.h"
#include "reconciler/status.h"

namespace hyper::providers::net {

// hyper owns exactly one nftables table, `inet hyper`, and replaces it as a whole in one
// transaction; no other table is ever read or written.
inline constexpr std::string_view kNftFamily = "inet";
inline constexpr std::string_view kNftTable = "hyper";

// What hyper's table enforces: the last applied spec of every managed Network and NetworkPolicy.
// It is the inventory's view, not the manifests': a policy removed from the source but not pruned
// stays enforced until it is deleted.
struct NftModel {
  std::map<std::string, NetworkSpec> networks;  // by name
  std::map<std::string, PolicySpec> policies;   // by name
  // The addresses in each selector set (policies with matchLabels), by policy name.
  std::map<std::string, std::vector<std::string>> selected;

  bool empty() const { return networks.empty() && policies.empty(); }
  bool anyNat() const;
};

enum class Direction { Egress, Ingress };

// Names of the table's objects. Every name derives from one object's name only, so that what an
// object owns in the table (see fingerprintParts) never changes when another object changes.
std::string policyChainName(std::string_view policy, Direction d);  // "pol-web-egress"
std::string policySelectorSetName(std::string_view policy);         // "pol-web-sel"
std::string networkBridgeSetName(std::string_view network);         // "net-lab-bridge"

// The base chains, always present while the table exists. Egress and ingress have their own base
// chains (an accept in one does not skip the other): egress-forward and egress-input see traffic
// coming from a bridge, ingress-forward and ingress-output traffic going to it.
const std::vector<std::string>& nftBaseChains();

// The table as nft source text. Pure and stable (sorted by name), so it is golden-testable.
//  - per Network: a set net-<name>-bridge holding the bridge name, and with nat a masquerade rule
//    `ip saddr CIDR ip daddr != CIDR masquerade` in nat-postrouting;
//  - per NetworkPolicy: chains pol-<name>-egress and pol-<name>-ingress that accept what the
//    policy allows and return otherwise (`any` accepts everything, `none` is empty);
//  - base chains: `ct state established,related accept`, then for each policy whose network is in
//    the model a jump for the addresses it selects, then for each restricting policy a drop for
//    them: traffic is allowed when any policy allows it (union of allows).
// Rules that belong to one object carry its id as comment ("NetworkPolicy/web").
std::string renderNftTable(const NftModel& model);

// The `nft -f -` input that replaces hyper's table atomically: it creates the table if missing,
// deletes it and recreates it with the new contents in one transaction. With an empty model the
// table is just deleted.
std::string renderNftReplace(const NftModel& model);

// hyper's table as `nft -j list table inet hyper` prints it, with every "handle" removed.
struct NftTableDump {
  bool present = false;
  std::vector<Json> sets;    // the "set" objects, in listing order
  std::vector<Json> chains;  // the "chain" objects
  std::vector<Json> rules;   // the "rule" objects, grouped by chain in listing order

  // Our table always holds rules while it exists; none at all means `nft flush table`.
  bool flushed() const { return present && rules.empty(); }
  bool hasChain(std::string_view name) const;
};

// Parses the output of `nft -j list table inet hyper`. Pure.
Result<NftTableDump> parseNftTableDump(std::string_view json);

// What one object owns in the table, as named parts with a short digest each (sha256 of the
// canonical JSON of the part; "absent" when it is not there):
//  - Network: "set:net-<name>-bridge", "rules:Network/<name>" and the base chains with their
//    uncommented rules ("chain:egress-forward", ...), so a flushed or deleted table is seen;
//  - NetworkPolicy: "chain:pol-<name>-egress", "chain:pol-<name>-ingress" (each with its rules),
//    "set:pol-<name>-sel" and "rules:NetworkPolicy/<name>" (its jumps and drops in base chains).
using FingerprintParts = std::map<std::string, std::string>;
FingerprintParts fingerprintParts(const NftTableDump& dump, const ObjectId& id);

// The fingerprint stored in the inventory: "part=digest" joined by ';', sorted by part.
std::string formatFingerprint(const FingerprintParts& parts);
FingerprintParts parseFingerprint(std::string_view fingerprint);

}  // namespace hyper::providers::net
