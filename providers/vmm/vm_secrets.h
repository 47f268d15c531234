#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "providers/vmm/secret_channel.h"
#include "providers/vmm/vm_spec.h"
#include "reconciler/managed_record.h"
#include "reconciler/object.h"
#include "store/sealing.h"

namespace hyper::providers::vmm {

// The VM provider's side of Secrets: what a VM is granted (spec.secrets), opened for delivery
// with the host's key ring from the Secret objects themselves (their sealed text or host file;
// the VM provider links no other provider). What it records and plans with are fingerprints
// (KeyRing::fingerprint, keyed: they tell nothing of a value), never a value.

// Per granted id, the fingerprint of the value the revision's Secret holds now ({"db/password":
// "mac:..."}), or null where it cannot be opened (the Secret's own observe says why) or the
// revision has no such Secret.
Json secretFingerprintsNow(const VmManifest& vm,
                           const std::vector<std::shared_ptr<const Object>>& revision,
                           const store::KeyRing& ring);

// The values of `vm`'s grants (only the ids in `only`, when given), opened from the Secrets'
// records as last applied (`references`, ApplyRequest::references), with their fingerprints in
// `fingerprints`. All or nothing: the first that does not open is the error, which names the
// Secret and the field, never the value.
Result<std::vector<SecretGrant>> openGrants(const VmManifest& vm,
                                            const std::map<ObjectId, ManagedRecord>& references,
                                            const store::KeyRing& ring,
                                            const std::set<std::string>* only, Json& fingerprints);

// "" when every grant of `vm` names a value its Secret in the revision has; else the first
// field path and what is wrong ("spec.secrets[0].key", "Secret db has no value \"x\" ...").
std::pair<std::string, std::string> checkGrants(
    const VmManifest& vm, const std::vector<std::shared_ptr<const Object>>& revision);

}  // namespace hyper::providers::vmm
