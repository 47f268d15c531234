#pragma once

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

}  // namespace hyper::host
