#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "base/status.h"

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
  int killGraceSec = 5;             // between SIGTERM and SIGKILL to the process group
  bool noNewPrivs = true;           // PR_SET_NO_NEW_PRIVS before execve
  std::vector<int> cgroupProcsFds;  // cgroup.procs of the run's own groups (RunCgroup), or none
  // For tests only: the child stops itself (SIGSTOP) after dropping privileges, right before
  // execve, as a caller can make it do by signalling it there.
  bool stopBeforeExec = false;
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
// and SIGPIPE reset, into its cgroups, then setgroups (the list is read before the fork: NSS is
// not safe after fork in a threaded process), setgid, setuid, PR_SET_NO_NEW_PRIVS, chdir, and
// execve of the absolute path.
//
// The timeout counts from before the child is created: a child stopped (SIGSTOP, which its user
// may send once it runs as them) between the privilege drop and execve is killed at the deadline
// like a command that runs too long, and a client hang-up or a stopping daemon ends that wait too.
// The run ends early when the timeout expires, the client hangs up (a read of 0 or an error on
// `clientFd`) or `stopFd` becomes readable: SIGTERM to the group, then SIGKILL after
// killGraceSec. When the command's own process exits, whatever is left of its group is killed
// too, so that no stray child keeps running as the user or holds the output pipes open.
// An error means the command could not be started (the reason says which step failed).
Result<RunOutcome> runStreaming(const RunSpec& spec, int clientFd, int stopFd);

// Writes all of `data` to a socket (MSG_NOSIGNAL). False when the peer is gone.
bool sendAll(int fd, const std::string& data);

}  // namespace hyper::broker
