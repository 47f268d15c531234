#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "broker/paths.h"
#include "broker/rules.h"

namespace hyper::broker {

// Who is on the other end of a Unix socket, as the kernel recorded it at connect() (SO_PEERCRED,
// SO_PEERGROUPS), with the user's entry. Its groups are those the connecting process had that the
// system also gives the user (getgrouplist): never one the process had dropped, never one the
// user is not in. Rules match on exactly these, and the run gets exactly these.
struct Caller {
  pid_t pid = 0;
  UserInfo user;
  std::vector<gid_t> groups;  // primary first, then supplementary
};

Result<Caller> identifyPeer(int socketFd);

// `userGroups` (primary first) without the supplementary groups `processGroups` lacks; the
// primary group stays. Order kept.
std::vector<gid_t> intersectGroups(const std::vector<gid_t>& userGroups,
                                   const std::vector<gid_t>& processGroups);

// The passwd entry and group list of `uid`; an error when the uid has no entry.
Result<Caller> lookupCaller(uid_t uid, gid_t gid);

// Whether `caller` is listed in `rule` by uid or by one of its groups.
bool callerAllowed(const Rule& rule, const Caller& caller);

// The gid of a group name, or nullopt when there is no such group.
std::optional<gid_t> groupId(const std::string& name);

}  // namespace hyper::broker
