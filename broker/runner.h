#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "reconciler/status.h"

namespace hyper::broker {

// What to run, fully validated: nothing in here is taken from the request unchecked.
struct RunSpec {
  std::string command;            // absolute path, exec'd directly (never through a shell)
  std::vector<std::string> argv;  // argv[0] is the command's base name
  std::vector<std::string> env;   // "NAME=value", already filtered
  std::string cwd;                // canonical, under workspace
  std::string workspace;          // canonical; the child checks its cwd against it once more
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups, as getgrouplist gives them
  int timeoutSec = 600;
  int killGraceSec = 5;  // between SIGTERM and SIGKILL to the process group
};

struct RunOutcome {
  int exitCode = -1;  // 124 after a timeout; 128+N after death by signal N
  bool timedOut = false;
  bool clientGone = false;  // the client hung up; the process group was killed
  bool stopped = false;     // the daemon is stopping; the process group was killed
  bool escalated = false;   // the command outlived SIGTERM by killGraceSec and got SIGKILL
};

// Runs `spec` as its user in a new process group and streams its stdout and stderr to
// `clientFd` as NDJSON frames while it runs (the exit frame is left to the caller).
//
// The child: setpgid, stdin from /dev/null, every other descriptor closed on exec, signal mask
// and SIGPIPE reset, then setgroups (the groups initgroups would set; initgroups itself reads NSS,
// which is not safe after fork in a threaded process, so the list is read before the fork),
// setgid, setuid, chdir, and execve of the absolute path.
//
// The run ends early when the timeout expires, the client hangs up (a read of 0 or an error on
// `clientFd`) or `stopFd` becomes readable: SIGTERM to the group, then SIGKILL after
// killGraceSec. When the command's own process exits, whatever is left of its group is killed
// too, so that no stray child keeps running as the user or holds the output pipes open.
// An error means the command could not be started (the reason says which step failed).
Result<RunOutcome> runStreaming(const RunSpec& spec, int clientFd, int stopFd);

// Writes all of `data` to a socket (MSG_NOSIGNAL). False when the peer is gone.
bool sendAll(int fd, const std::string& data);

}  // namespace hyper::broker
