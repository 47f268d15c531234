#include "broker/peer.h"

#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace hyper::broker {

Result<Caller> identifyPeer(int socketFd) {
  struct ucred cred = {};
  socklen_t len = sizeof cred;
  if (::getsockopt(socketFd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return Status::error(std::string("getsockopt SO_PEERCRED: ") + std::strerror(errno));
  }
  // The groups the connecting process had at connect(): the run gets no group the caller itself
  // had dropped (a container started with fewer groups, a `sg`/`newgrp` shell, a setgroups()).
  std::vector<gid_t> peerGroups(64);
  while (true) {
    socklen_t bytes = static_cast<socklen_t>(peerGroups.size() * sizeof(gid_t));
    if (::getsockopt(socketFd, SOL_SOCKET, SO_PEERGROUPS, peerGroups.data(), &bytes) == 0) {
      peerGroups.resize(bytes / sizeof(gid_t));
      break;
    }
    if (errno != ERANGE || bytes / sizeof(gid_t) <= peerGroups.size() ||
        bytes / sizeof(gid_t) > 65536) {
      return Status::error(std::string("getsockopt SO_PEERGROUPS: ") + std::strerror(errno));
    }
    peerGroups.resize(bytes / sizeof(gid_t));
  }
  HYPER_ASSIGN_OR_RETURN(Caller caller, lookupCaller(cred.uid, cred.gid));
  caller.pid = cred.pid;
  caller.groups = intersectGroups(caller.groups, peerGroups);
  return caller;
}

std::vector<gid_t> intersectGroups(const std::vector<gid_t>& userGroups,
                                   const std::vector<gid_t>& processGroups) {
  std::vector<gid_t> out;
  for (size_t i = 0; i < userGroups.size(); ++i) {
    gid_t g = userGroups[i];
    // The first is the primary group (the peer's gid): the process has it whatever its list says.
    if (i == 0 || std::find(processGroups.begin(), processGroups.end(), g) != processGroups.end()) {
      out.push_back(g);
    }
  }
  return out;
}

Result<Caller> lookupCaller(uid_t uid, gid_t gid) {
  struct passwd pw;
  struct passwd* found = nullptr;
  std::vector<char> buf(16384);
  int rc = ::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found);
  if (rc != 0 || found == nullptr) {
    return Status::error("uid " + std::to_string(uid) + " has no passwd entry" +
                         (rc != 0 ? std::string(" <- ") + std::strerror(rc) : ""));
  }
  Caller caller;
  caller.user.name = pw.pw_name;
  caller.user.uid = uid;
  caller.user.gid = gid;
  caller.user.home = pw.pw_dir != nullptr ? pw.pw_dir : "";
  // The groups the run will have: those of the user's entry (what initgroups gives), with the
  // peer's gid as the primary group.
  int n = 64;
  std::vector<gid_t> groups(n);
  while (::getgrouplist(caller.user.name.c_str(), gid, groups.data(), &n) < 0) {
    groups.resize(static_cast<size_t>(n) + 16);
    n = static_cast<int>(groups.size());
  }
  groups.resize(static_cast<size_t>(n));
  caller.groups.push_back(gid);
  for (gid_t g : groups) {
    if (std::find(caller.groups.begin(), caller.groups.end(), g) == caller.groups.end()) {
      caller.groups.push_back(g);
    }
  }
  return caller;
}

std::optional<gid_t> groupId(const std::string& name) {
  struct group gr;
  struct group* found = nullptr;
  std::vector<char> buf(16384);
  if (::getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
    return std::nullopt;
  }
  return gr.gr_gid;
}

bool callerAllowed(const Rule& rule, const Caller& caller) {
  if (std::find(rule.uids.begin(), rule.uids.end(), caller.user.uid) != rule.uids.end()) {
    return true;
  }
  for (const auto& name : rule.groups) {
    auto gid = groupId(name);
    if (gid && std::find(caller.groups.begin(), caller.groups.end(), *gid) != caller.groups.end()) {
      return true;
    }
  }
  return false;
}

}  // namespace hyper::broker
