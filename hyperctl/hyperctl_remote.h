#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "base/status.h"
#include "reconciler/loader.h"

namespace hyper::ctl {

using hyper::SourceFile;

// hyperctl's commands that talk to a running hyperd (found through --state-dir or --server):
// status, events, drift, reconcile, suspend, resume. status and events also work without a
// hyperd, from the state database. Each returns the process exit code (0 ok, 1 error, 2 for
// `drift` when something is drifted).
struct RemoteOptions {
  std::string stateDir;
  std::string server;           // --server URL
  std::string tokenFile;        // --token-file
  std::string output = "text";  // text | json
};

int runStatus(const RemoteOptions& o);
int runEvents(const RemoteOptions& o, bool follow, int limit);
int runDrift(const RemoteOptions& o);
int runReconcile(const RemoteOptions& o, int waitSeconds);
int runSuspend(const RemoteOptions& o, bool suspend);
// Approves the revision hyperd holds (it would delete too much, controller/hold.h) and waits up
// to `waitSeconds` for the reconcile that applies it.
int runApprove(const RemoteOptions& o, const std::string& revision, int waitSeconds);

// `hyperctl diff` through the running hyperd (POST /v1/plan): hyperd loads `files` with the file
// sources they name (`sources()`: read here, once a hyperd answers), observes and plans
// against its inventory, and applies nothing. nullopt when no hyperd runs for the state dir and
// no --server is given: the caller plans locally.
std::optional<int> runRemoteDiff(
    const RemoteOptions& o, const std::vector<SourceFile>& files,
    const std::function<std::map<std::string, SourceTree::File>()>& sources, bool prune);

// `hyperctl secret reseal` through the running hyperd, which holds the private keys: `count`
// values, each (Secret name, value key, sealed text) from `value(i)`, those not sealed to its
// active key sent to POST /v1/secrets/reseal. nullopt when no hyperd runs for the state dir and no
// --server is given (the caller reseals with the state dir's ring); else every text as it is now
// (unchanged where it was sealed to the active key already), or the error.
struct Resealed {
  std::string active;  // the active key's id
  std::vector<std::string> texts;
};
std::optional<Result<Resealed>> resealThroughHyperd(
    const RemoteOptions& o, size_t count,
    const std::function<std::tuple<std::string, std::string, std::string>(size_t)>& value);

// The active public sealing key of the hyperd --server names (GET /v1/keys), as its text
// ("x25519:<base64>"), for `hyperctl secret seal --server`.
Result<std::string> fetchSealingKey(const RemoteOptions& o);

// `hyperctl logs build/NAME [-f]` through a running hyperd (GET /v1/builds/NAME/events): the
// build's log as the provider wrote it, and with -f what comes until the build ends (exit 1 when
// it failed). nullopt when no hyperd runs for the state dir (nor --server): the caller reads the
// log file itself.
std::optional<int> runBuildLogsRemote(const RemoteOptions& o, const std::string& name, bool follow);

// The line a build log event stands for ("step 1 exit 2", "[1!] text"): the log's own form.
std::string buildEventLine(const nlohmann::json& event);

}  // namespace hyper::ctl
