#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "host/nft.h"
#include "netmodel/link_change.h"
#include "netmodel/link_dump.h"
#include "netmodel/link_state.h"
#include "providers/net/nft_ruleset.h"
#include "reconciler/provider.h"

namespace hyper::providers::net {

// These parts of hyper's tables, each listed alone (host::nftListJson), as one dump without
// reindex(): what NftTableDump::patched takes. A part that is not there fails it.
Result<NftTableDump> listNftParts(const std::vector<NftPart>& parts);

// Networks (a Linux bridge with its gateway address, MTU and NAT) and NetworkPolicies (nftables
// egress/ingress rules for the addresses a selector picks), in the network namespace the calling
// thread is in. Links and addresses change over rtnetlink in-process (netmodel/link_change.h: no
// `ip` process), the tables through libnftables in-process (host/nft.h: no `nft` process), the
// per-namespace ip_forward and bridge switches in /proc/sys; the actions ready at once share one
// round of rtnetlink requests and one nftables transaction (applyBatch).
//
// Ownership: hyper marks every bridge it creates with the ifalias "hyper:Network/<name>" and owns
// two nftables tables, `inet hyper` and `bridge hyper`, which it writes in one transaction: by
// their difference from what its own last write left while nothing else committed since (a
// hand change is repaired by a replace), else replaced as a whole. A link with
// the wanted name but without that alias, or an IPv4 address overlapping the CIDR on a link hyper
// does not own, is a collision reported at plan time; it is never taken over.
//
// The table is rendered from a model of the managed objects: observe() reloads it from the
// inventory records (the last applied spec of each object) and every apply() updates it and
// re-renders (writing what changed), under a mutex. Hence two preconditions, both met by the
// engine's one reconcile at a time: observe() runs before apply() in a provider's life (apply()
// refuses otherwise rather than write a table that drops every other object's rules), and observe()
// does not run while applies of the same reconcile are in flight (it would reset the model to
// records that lag them). Applies may run concurrently with each other.
//
// Drift: bridge state (exists, mtu, address, up) is compared with the last applied spec; what
// an object owns in the table is compared by fingerprint (see fingerprintParts) with what its
// apply left there. Names in the table derive from one object each, so applying one object never
// changes another's fingerprint.
class NetProvider : public Provider, public PartialObserve {
 public:
  std::string name() const override { return "net"; }
  std::vector<std::string> kinds() const override { return {"Network", "NetworkPolicy"}; }

  void validate(const ValidateRequest& req, ValidateResponse& resp) const override;
  std::vector<Reference> references(const Object& object) const override;

  // One `ip -d -j addr show`, one ruleset listing (libnftables), one read of ip_forward and one of
  // each bridge's proxy_arp_pvlan. ObservedState.fields for a Network: {bridge, mtu, up, addresses,
  // ipForward, proxyArpPvlan?, nftables, foreign?}; for a NetworkPolicy: {nftables, chains}.
  // "nftables" is "present", "flushed" or "missing"; the fingerprint is formatFingerprint() of what
  // the object owns in the table. With a revision, ObservedState.context carries what the VMs of
  // the revision (placed as the VM provider places them) mean for the object: a Network's
  // {"ports": [TapBinding]} (its VMs' taps, sorted by tap), a selector policy's {"selected":
  // [address]} (sorted). Observe also reloads the table's model from the inventory (see above).
  // With a scope (PartialObserve), only the scoped objects: their bridges and what holds an
  // address in their CIDRs read alone (all links beyond 64 of them), no link read for policies
  // alone; the tables' model still from every record.
  void observe(const ObserveRequest& req, ObserveResponse& resp) override;

  // What observe works out from other objects is the VMs' placement: a change to a VM, or to a
  // Network a VM names (its CIDR places the VM's address), moves every object; a change to
  // Networks and policies alone moves only them.
  std::optional<std::vector<ObjectId>> alsoMovedBy(const RevisionChange& change) const override;

  // Pure. Network: no record -> Create; spec.bridge changed -> Replace; other spec changes, or
  // the VMs' taps on it changed (handles.ports) -> Update; bridge gone -> Create (drift); mtu,
  // address, down, ip_forward, proxy_arp_pvlan or table changed by hand -> Update (drift).
  // NetworkPolicy: spec changed, or the VMs its selector selects changed (handles.selected) ->
  // Update; its chains, sets or rules changed by hand -> Update (drift). Not in the source ->
  // Delete. Reads nothing but the request: the ports and selection come from
  // req.observed->context, and the action carries them in PlanAction::privateData (same keys,
  // left out when empty) for apply.
  void plan(const PlanRequest& req, PlanResponse& resp) const override;

  // Network create/update/replace: rtnetlink requests make or fix the bridge (alias, mtu, up,
  // gateway address; other IPv4 addresses on it removed), after deleting the old bridge of a
  // replace; proxy_arp_pvlan on and proxy_delay 0 on the bridge, and ip_forward on, because VMs
  // sit on isolated ports and reach each other through the host; then the tables are
  // re-rendered. Delete removes the bridge only if it carries hyper's
  // alias. NetworkPolicy: the table is re-rendered with the policy set or removed. The Network's
  // taps and the policy's selection are the action's privateData, as planned. Handles:
  // {"bridge", "ports"} or {"chains", "selected"?}; the fingerprint is read back from the table
  // just written.
  void apply(const ApplyRequest& req, ApplyResponse& resp) override;

  // Every Network and NetworkPolicy action ready at once, together: one round of rtnetlink
  // requests for all their bridges (netmodel::LinkChanges: a failed request fails the action it
  // belongs to, in ip's words), one nftables transaction
  // (if it fails, the actions are written one at a time so the failure is the one that caused
  // it), one read-back of the table for every fingerprint. apply() is a batch of one.
  bool batchesApplies() const override { return true; }
  // A policy comes in the batch of its new Network (one table write for both); it is not written
  // when that Network's step failed.
  bool batchesDependents() const override { return true; }

  // How many times hyper's tables were listed whole (not taken from the last listing), listed
  // in part after a delta write, written by a delta and replaced whole: for tests and benches.
  size_t nftListings() const { return nftListings_.load(); }
  size_t nftPartialListings() const { return nftPartialListings_.load(); }
  size_t nftDeltaWrites() const { return nftDeltaWrites_.load(); }
  size_t nftReplaces() const { return nftReplaces_.load(); }
  // Full observes that found the tables as every record has them (adoptTablesLocked).
  size_t nftAdoptions() const { return nftAdoptions_.load(); }
  void applyBatch(const std::vector<const ApplyRequest*>& reqs,
                  std::vector<ApplyResponse>& resps) override;

 private:
  struct Step;
  void observeAll(const ObserveRequest& req, ObserveResponse& resp);
  void planOne(const PlanRequest& req, PlanResponse& resp) const;
  void applyMany(const std::vector<const ApplyRequest*>& reqs, std::vector<ApplyResponse>& resps);
  // What a Network step changes in its bridge (delete, create, addresses to remove) from the links
  // as they are; a collision with something hyper does not own fails the step. linkChanges() makes
  // the requests of every step still going.
  void prepareNetwork(const netmodel::LinkIndex& links, Step& step) const;
  // The requests that delete and make bridges go to `created` (with each new one's step and
  // name), the rest are the value: bridges are made first and their IPv6 turned off while they
  // are down.
  netmodel::LinkChanges linkChanges(std::vector<Step>& steps, netmodel::LinkChanges& created,
                                    std::vector<std::pair<size_t, std::string>>& names) const;
  void attributeLinkChanges(std::vector<Step>& steps,
                            const Result<std::map<size_t, std::string>>& ran) const;
  void configureBridges(std::vector<Step>& steps) const;
  // Puts the steps still going into the model and writes the tables (see applyBatch). Call with
  // mu_ held.
  void writeTablesLocked(std::vector<Step>& steps);
  // Renders the model into the tables (and ip_forward on). With `before`, the `scope` of the
  // model the tables were last written from (modelWritten_), and while nothing else committed in
  // the namespace since hyper's last write (written_), only the difference within the scope is
  // written (nftDelta), and nothing when the scope renders the same; else the tables are
  // replaced whole. `sameTables`: the model changed only in what the tables do not show: nothing
  // is rendered while nothing else committed since. Call with mu_ held.
  Status writeTableLocked(const NftRender* before, const NftScope* scope, bool sameTables);

  // A write by delta: the generations before and after it, and what it changed.
  struct DeltaWrite {
    host::NftGeneration from;
    host::NftGeneration to;
    NftDelta delta;
  };

  // hyper's tables as they are: the last listing while the ruleset's generation has not moved
  // since it was read (host::nftGeneration: any commit in the namespace, hyper's own included,
  // moves it), else a new listing. Listing and parsing a table of 1,000 networks and policies
  // was most of a full observe (some 600 of 1,000 ms at 500 + 500). After `written` (the last
  // listing made just before it, and nothing else committed), only what it changed is listed and
  // the last listing patched (NftTableDump::patched), where that costs less than a whole
  // listing: at 5,000 networks and policies, listing and parsing the tables took 1.5 s of the
  // 1.9 s of a change to one policy.
  Result<std::shared_ptr<const NftTableDump>> nftTables(const DeltaWrite* written = nullptr);

  // Brings model_ to what `managed` (every record) holds, parsing only the records whose spec
  // tree or handle is not the one their entry was made from; clears modelWritten_ when an entry
  // changed. False when a record's spec was unreadable (left out of the model). Call with mu_
  // held.
  bool loadModelLocked(const std::vector<const ManagedRecord*>& managed, Diagnostics& diagnostics);
  // After a full observe that read `tables` (listed at generation `generation`) with the model
  // loaded from every record (at modelEpoch_ `epoch`): when each record's fingerprint is what the
  // listing shows, the kernel holds what hyper last wrote from model_, so the next write is a
  // difference (written_, modelWritten_) rather than a replace of the whole tables; at 5,000
  // networks and policies that replace and its listing took some 3.5 s of the first change
  // after each start of hyperd. Call with mu_ held.
  void adoptTablesLocked(const std::vector<const ManagedRecord*>& managed,
                         const std::map<ObjectId, ObservedState>& observed,
                         const std::optional<host::NftGeneration>& generation, uint64_t epoch);

  // What validate read of each object, for the next revision's (netmodel::NetSpecMemo).
  mutable std::mutex validateMu_;
  mutable netmodel::NetSpecMemo validateMemo_;

  // The namespace's IPv4 addresses, kept from kernel notifications: a scoped observe or an apply
  // finds what holds an address in its Networks' CIDRs without dumping every address.
  netmodel::AddressCache addresses_;

  mutable std::mutex mu_;
  bool modelLoaded_ = false;
  NftModel model_;
  // What loadModelLocked made each object's entries of model_ from: its record's spec tree and
  // its "ports" or "selected" handle. An apply that puts an object into the model drops its
  // source, so the next observe reads its record again. Guarded by mu_.
  struct ModelSource {
    SharedJson spec;
    Json handle;
  };
  std::map<ObjectId, ModelSource> modelSources_;
  std::mutex nftCacheMu_;  // guards the two below
  std::optional<host::NftGeneration> nftCacheGeneration_;
  std::shared_ptr<const NftTableDump> nftCache_;
  // The generation after hyper's last write, when that write was the only commit between the two
  // readings of the generation around it: the kernel holds what it wrote while it stays. Guarded
  // by mu_.
  std::optional<host::NftGeneration> written_;
  // The tables were last written from model_ as it is (written_ holds then); guarded by mu_.
  bool modelWritten_ = false;
  // Moves with every change to model_ (a load that changed it, an apply's write); guarded by mu_.
  uint64_t modelEpoch_ = 0;
  std::optional<DeltaWrite> lastDelta_;  // the last write, when a delta; guarded by mu_
  std::atomic<size_t> nftListings_{0};
  std::atomic<size_t> nftPartialListings_{0};
  std::atomic<size_t> nftDeltaWrites_{0};
  std::atomic<size_t> nftReplaces_{0};
  std::atomic<size_t> nftAdoptions_{0};
};

}  // namespace hyper::providers::net
