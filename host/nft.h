#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"

namespace hyper::host {

// nftables in-process through libnftables, the library behind `nft` (Debian's libnftables1):
// the same language and JSON as the command, without a process per call (1.5-3 ms each on a
// small machine, and hyper calls it on every observe and every apply). A context is made per call
// on the calling thread, so the ruleset is the one of that thread's network namespace, as a
// child `nft` of that thread would see; calls are serialized (libnftables keeps process-wide
// state). Errors read like the command's: "nft -f - <- Error: ..." with nft's first error line.

// Runs `commands` (nft's language, like `nft -f -`) as one transaction: all or nothing.
Status nftApply(const std::string& commands);

// `nft -j list ruleset`: the ruleset as nft's JSON.
Result<std::string> nftListRulesetJson();
// One listing command as JSON, `nft -j list chain inet hyper web` for "list chain inet hyper web".
// One per call: nft fills its cache for a single command's filter (with two listings in one
// input, the first finds nothing).
Result<std::string> nftListJson(const std::string& command);

// The ruleset's generation in the calling thread's network namespace: the kernel moves `id` with
// every nftables transaction committed there, by anyone (NFT_MSG_GETGEN, the check nft makes
// before trusting its own cache); `netns` is the namespace's inode. Two equal readings: the
// ruleset did not change in between. One netlink request, no listing.
struct NftGeneration {
  uint64_t netns = 0;
  uint32_t id = 0;
  bool operator==(const NftGeneration& o) const { return netns == o.netns && id == o.id; }
};
Result<NftGeneration> nftGeneration();

}  // namespace hyper::host
