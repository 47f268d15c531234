#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/status.h"
#include "netmodel/net_spec.h"
#include "reconciler/object.h"

namespace hyper::providers::net {

// hyper owns two nftables tables, `inet hyper` (policies, NAT) and `bridge hyper` (the guard on
// every VM's tap), and writes both in one transaction (replaced as a whole, or by their
// difference from a render it wrote: nftDelta); no other table is ever read or written.
inline constexpr std::string_view kNftFamily = "inet";
inline constexpr std::string_view kNftBridgeFamily = "bridge";
inline constexpr std::string_view kNftTable = "hyper";

// One VM's port on a network: its tap and the only IPv4 address and MAC the tap may carry.
struct TapBinding {
  std::string tap;  // "hv-web-1"
  std::string ip;   // "10.77.0.10"
  std::string mac;  // "52:54:00:12:34:56", lower case
  std::string vm;   // the VM's name, for people reading the handles

  Json toJson() const;
  // From a Network's handles ("ports"); anything malformed is left out, never trusted: it goes
  // into nft input.
  static std::vector<TapBinding> listFromJson(const Json& ports);
  bool operator==(const TapBinding&) const = default;
};

// What hyper's table enforces: the last applied spec of every managed Network and NetworkPolicy.
// It is the inventory's view, not the manifests': a policy removed from the source but not pruned
// stays enforced until it is deleted.
struct NftModel {
  std::map<std::string, netmodel::NetworkSpec> networks;  // by name
  std::map<std::string, netmodel::PolicySpec> policies;   // by name
  // The addresses in each selector set (policies with matchLabels), by policy name.
  std::map<std::string, std::vector<std::string>> selected;
  // The VMs' taps on each network, by network name (sorted by tap).
  std::map<std::string, std::vector<TapBinding>> ports;

  bool empty() const { return networks.empty() && policies.empty(); }
  bool operator==(const NftModel&) const = default;
  bool anyNat() const;
};

enum class Direction { Egress, Ingress };

// Names of the table's objects. Every name derives from one object's name only, so that what an
// object owns in the table (see fingerprintParts) never changes when another object changes.
std::string policyChainName(std::string_view policy, Direction d);  // "pol-web-egress"
std::string policySelectorSetName(std::string_view policy);         // "pol-web-sel"
// A network's chain in one direction, holding its policies' jumps and drops (layout 4).
std::string networkChainName(std::string_view network, Direction d);  // "net-lab-egress"
// The verdict maps from each network's bridge to its chain, shared by every network (layout 4);
// a Network owns the elements that jump to its chains (fingerprintParts).
inline constexpr std::string_view kEgressMap = "egress-nets";
inline constexpr std::string_view kIngressMap = "ingress-nets";
std::string_view networkMapName(Direction d);
// In `bridge hyper`, shared by every network (layout 3; tap names are unique on the host): the
// guarded taps, each tap's MAC (ifname . ether_addr) and IPv4 address (ifname . ipv4_addr). A
// Network owns the elements of its taps (fingerprintParts).
inline constexpr std::string_view kGuardTapsSet = "guard-taps";
inline constexpr std::string_view kGuardMacsSet = "guard-macs";
inline constexpr std::string_view kGuardAddrsSet = "guard-addrs";
inline constexpr std::string_view kGuardChain = "guard-prerouting";

// The base chains, always present while the table exists. Egress and ingress have their own base
// chains (an accept in one does not skip the other): egress-forward and egress-input see traffic
// coming from a bridge, ingress-forward and ingress-output traffic going to it.
const std::vector<std::string>& nftBaseChains();

// One set, map or chain of hyper's tables as the renderers write it.
struct NftBlock {
  enum class Kind { Set, Map, Chain };
  Kind kind = Kind::Chain;
  std::string name;
  std::string head;                // its lines before the elements or rules: "\t\ttype ...\n"
  std::vector<std::string> items;  // a chain's rules, or a set's or map's elements, as nft source
  std::string text() const;        // "\tchain NAME {\n...\t}\n"
  static std::string_view keyword(Kind kind);  // "set", "map", "chain"
  // What a rule's `comment "..."` says ("NetworkPolicy/web"), or "".
  static std::string_view ruleComment(std::string_view rule);
  bool operator==(const NftBlock&) const = default;
};

// Both tables as blocks, in the order the renderers write them: what is named before what names
// it (sets, policies' chains, networks' chains, maps, base chains).
struct NftRender {
  std::vector<NftBlock> inet;    // table inet hyper
  std::vector<NftBlock> bridge;  // table bridge hyper
};
NftRender renderNftBlocks(const NftModel& model);

// The parts of the tables that changes to some objects can touch: a write renders only these of
// the model before and after it (nftDelta of the two). Every rule with an object's comment is in
// the scope when the object is: a policy's jumps and drops are in its networks' chains, a
// Network's NAT rule in nat-postrouting (shared).
struct NftScope {
  std::set<std::string> policies;       // their selector sets and chains
  std::set<std::string> networkChains;  // these networks' two chains
  bool shared = false;                  // the network maps, nat-postrouting and the guard sets
  void addNetwork(const std::string& name);
  // A change to policy `name`: its parts, and the chains of its network in `model` (before the
  // change) and of `network` (after it; null when it is deleted).
  void addPolicy(const std::string& name, const NftModel& model, const std::string* network);
};
// Only the scope's blocks (the base chains and the guard's chain never change).
NftRender renderNftBlocks(const NftModel& model, const NftScope& scope);
// "table FAMILY hyper {\n" + the blocks separated by an empty line + "}\n".
std::string printNftTable(std::string_view family, const std::vector<NftBlock>& blocks);

// The table as nft source text. Pure and stable (sorted by name), so it is golden-testable.
//  - per NetworkPolicy: chains pol-<name>-egress and pol-<name>-ingress that accept what the
//    policy allows and return otherwise (`any` accepts everything, `none` is empty), and with a
//    selector a set pol-<name>-sel of the addresses it selects;
//  - per Network: chains net-<name>-egress and net-<name>-ingress that, for each policy on the
//    network, jump to the policy's chain for the addresses it selects, then for each restricting
//    policy drop them (traffic is allowed when any policy allows it: union of allows); an element
//    "<bridge>" : jump net-<name>-<direction> in the maps egress-nets and ingress-nets; and with
//    nat a masquerade rule `ip saddr CIDR ip daddr != CIDR masquerade` in nat-postrouting;
//  - base chains: `ct state established,related accept`, then `iifname vmap @egress-nets`
//    (egress-forward, egress-input) or `oifname vmap @ingress-nets` (ingress-forward,
//    ingress-output): a packet meets the rules of its own network only.
// Rules that belong to one object carry its id as comment ("NetworkPolicy/web").
std::string renderNftTable(const NftModel& model);

// The `bridge hyper` table: one base chain guard-prerouting (bridge prerouting, before any
// bridging or routing decision) that drops every frame from one of the Networks' taps whose
// Ethernet source is not the tap's MAC, every ARP whose sender MAC or IPv4 address is not the
// tap's, every IPv4 packet whose source is not the tap's address, and everything that is neither
// IPv4 nor ARP (IPv6, VLAN tags, ...): a guest cannot take another address or MAC. Pure and
// stable like renderNftTable.
std::string renderNftBridgeTable(const NftModel& model);

// The `nft -f -` input that replaces hyper's tables atomically: it creates each table if
// missing, deletes it and recreates it with the new contents in one transaction. With an empty
// model the tables are just deleted.
std::string renderNftReplace(const NftModel& model);
// The same from a render (`empty`: the model had no object, the tables are only deleted).
std::string renderNftReplace(const NftRender& render, bool empty);

// A part of hyper's tables: a set, map or chain of one family.
struct NftPart {
  std::string family;  // kNftFamily or kNftBridgeFamily
  NftBlock::Kind kind = NftBlock::Kind::Chain;
  std::string name;
  bool operator==(const NftPart&) const = default;
};

// What turns tables written from one render into another in one transaction, without replacing
// them: new blocks added, changed chains flushed and filled again, changed sets and maps by
// their elements, blocks no longer rendered deleted; in an order the kernel takes (elements that
// jump to a chain leave before it does, a chain or set exists before a rule names it).
struct NftDelta {
  std::string commands;         // `nft -f -` input; empty when the tables stay as they are
  std::vector<NftPart> relist;  // what a read-back lists again: present after the write
  std::vector<NftPart> gone;    // what the write deletes
  // The rule comments whose rules are all in `relist` and `gone` chains, before and after the
  // write. Relisted with a network map, a guard set: all of them (their digests span them).
  std::vector<std::string> comments;
};
// Null when only a replace can do it: a table made or deleted, or a block whose head changed.
// Pure; valid only while the kernel holds exactly `before` (see NetProvider::writeTableLocked).
// `tablesStay`: both tables exist before and after (renders of one scope may hold no block of
// a table that exists).
std::optional<NftDelta> nftDelta(const NftRender& before, const NftRender& after,
                                 bool tablesStay = false);

// hyper's tables as `nft -j list ruleset` prints them, with every "handle" removed. Object names
// are unique across the two tables, so a part is found by name alone.
// One set, chain or rule of hyper's tables: its object as nft lists it without "handle", kept
// as canonical JSON text (what the fingerprints hash) with the fields the indexes need. A JSON
// tree per object cost some 20 KB per network and policy in a dump the net provider keeps.
struct NftItem {
  std::string json;     // canonicalJson of the object
  std::string name;     // "name"
  std::string chain;    // a rule's "chain"
  std::string family;   // "family"
  std::string comment;  // a rule's "comment" when a string
  bool hasComment = false;
  uint64_t handle = 0;  // a chain's handle as listed: the kernel lists chains in handle order
};
NftItem nftItem(const Json& object);

struct NftTableDump {
  bool present = false;         // inet hyper
  bool bridgePresent = false;   // bridge hyper
  std::vector<NftItem> sets;    // the "set" objects, in listing order
  std::vector<NftItem> chains;  // the "chain" objects
  std::vector<NftItem> rules;   // the "rule" objects, grouped by chain in listing order

  // What reindex() works out from the three vectors (parseNftTableDump calls it; so must whoever
  // changes them): everything an object's fingerprint asks for, by name, so that a fingerprint
  // costs a few lookups and a dump kept after dropItems() holds some hundred bytes per object
  // instead of the JSON text of every set, chain and rule (3 KB per network and policy).
  struct Digest {
    char hex[16];  // the first 16 hex digits of a sha256
    std::string str() const { return std::string(hex, sizeof hex); }
  };
  struct ChainDigests {
    Digest uncommented;  // the chain and its rules without a comment
    Digest all;          // the chain and all its rules
  };
  std::unordered_map<std::string, ChainDigests> chainDigests;  // by chain name
  std::unordered_map<std::string, Digest> setDigests;          // the first set of that name
  std::unordered_map<std::string, Digest> commentDigests;      // rules by their comment
  bool anyInetRule = false;
  // The elements of the guard sets by tap (an ifname element, or the first of a concatenation),
  // each as "<set>:<canonical JSON>", sorted; guardSets: the three sets exist.
  std::unordered_map<std::string, std::vector<std::string>> guardElementsByTap;
  bool guardSets = false;
  // The digest of the network maps' (egress-nets, ingress-nets) elements that jump to a network's
  // two chains, by network name, for every network some element jumps to (mapsDigest works out
  // the digest of none itself); networkMaps: both maps exist. One digest per network rather than
  // the elements' text: some 180 bytes per object less in the net provider's kept dump.
  std::unordered_map<std::string, Digest> mapsDigestByNetwork;
  bool networkMaps = false;

  void reindex();
  // Frees the three vectors once reindex() has run (the net provider's cached dump): the digests
  // above still answer every fingerprint, hasChain() and flushed().
  void dropItems();
  // Our inet table always holds rules while it exists; none at all means `nft flush table`.
  bool flushed() const;
  bool hasChain(std::string_view name) const;
  // This dump (listed before a write of `delta`, while the kernel held the tables that delta was
  // worked out from) as a full listing after the write would be, from `listed`: the items of
  // delta.relist, listed after it. Only the digests of the relisted and gone parts and of
  // delta.comments change; the items are dropped.
  NftTableDump patched(const NftDelta& delta, NftTableDump listed) const;
};

// Parses the output of `nft -j list ruleset` (or `list table`): only hyper's tables. Pure.
Result<NftTableDump> parseNftTableDump(std::string_view json);
// Adds the items of one listing (`nft -j list chain ...`, `list set`, ...) to `dump`, without
// reindex(); the chains keep their handles.
Status appendNftListing(std::string_view json, NftTableDump& dump);

// The shape of the rules hyper writes, which digests depend on. Raised whenever renderNftTable or
// renderNftBridgeTable write the same model differently, so that objects recorded by an earlier
// hyper are rewritten once (an Update, "layout" in the plan) instead of being reported as hand
// changes: 1 (no "layout" part) used anonymous sets for single ports and the guard's ether type;
// 2 writes neither; 3 has three guard sets shared by all networks instead of three sets and five
// rules per network (the kernel finds each set a rule names by walking the table's sets: loading
// and listing were quadratic in the number of networks); 4 replaces the set net-<name>-bridge
// and the policies' jumps and drops in every base chain (eight rules per policy, each packet
// walking those of every policy) with a chain per network and direction reached through one
// verdict map lookup (four rules per policy, a packet meets its own network's only).
inline constexpr int kNftLayout = 4;
inline constexpr std::string_view kLayoutPart = "layout";

// What one object owns in the table, as named parts with a short digest each (sha256 of the
// canonical JSON of the part; "absent" when it is not there), and "layout" (kNftLayout):
//  - Network: "chain:net-<name>-egress" and "chain:net-<name>-ingress" (with their uncommented
//    rules: none), "maps" (the elements of egress-nets and ingress-nets that jump to those
//    chains), "guard" (the guard sets' elements of `taps`: its VMs' taps as its last apply wrote
//    them), "rules:Network/<name>" (its NAT rule) and the base chains with their uncommented
//    rules ("chain:egress-forward", ..., "chain:guard-prerouting" with the guard's rules), so a
//    flushed or deleted table is seen;
//  - NetworkPolicy: "chain:pol-<name>-egress", "chain:pol-<name>-ingress" (each with its rules),
//    "set:pol-<name>-sel" and "rules:NetworkPolicy/<name>" (its jumps and drops in its network's
//    chains).
using FingerprintParts = std::map<std::string, std::string>;
FingerprintParts fingerprintParts(const NftTableDump& dump, const ObjectId& id,
                                  const std::vector<std::string>& taps = {});

// The fingerprint stored in the inventory: "part=digest" joined by ';', sorted by part.
std::string formatFingerprint(const FingerprintParts& parts);
FingerprintParts parseFingerprint(std::string_view fingerprint);

}  // namespace hyper::providers::net
