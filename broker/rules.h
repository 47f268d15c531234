#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace hyper::broker {

// A container path prefix and the host path prefix it stands for. Both may use the templates
// {user} {uid} {home} (see expandTemplate).
struct PathMapping {
  std::string from;
  std::string to;
};

// One allow-listed host command and who may run it where. The rule file holds a list of these;
// providers/broker writes it from BrokerRule manifests, and an operator may write it by hand.
struct Rule {
  std::string name;     // a DNS label, unique in the file
  std::string command;  // absolute path; requests name it by its base name
  std::vector<unsigned> uids;
  std::vector<std::string> groups;  // group names; a caller matches by primary or supplementary
  std::string workspace;            // template; cwd and path arguments must stay under it
  std::vector<PathMapping> pathMapping;
  std::vector<std::string> env;  // names of variables passed from the request
  int defaultTimeoutSec = 600;
  int maxTimeoutSec = 1800;
  int concurrency = 1;  // at most this many runs at once; more wait in a FIFO queue
  // PR_SET_NO_NEW_PRIVS in the run (setuid binaries and file capabilities then give nothing).
  bool noNewPrivs = true;
  // The run's own cgroup limits (pids.max, memory.max; 0: none), where the host lets the broker
  // create cgroups (see broker/cgroup.h).
  long long pidsMax = 0;
  long long memoryMaxBytes = 0;

  // The base name requests use to ask for this rule's command ("make" for /usr/bin/make).
  std::string commandName() const;
};

// The rules as loaded, and the hash that identifies them: sha256 of the file's bytes, so that
// whoever wrote the file can tell whether the broker runs what it wrote.
struct RuleSet {
  std::vector<Rule> rules;
  std::string hash;
};

// Bounds of a rule file: far above any real one (a rule is a few hundred bytes, nested 5 deep),
// checked before anything is built from it.
constexpr size_t kMaxRuleFileBytes = 4 * 1024 * 1024;
constexpr int kMaxRuleFileDepth = 16;

// Parses a rule file:
//   {"schemaVersion":"1","rules":[{"name":"make","command":"/usr/bin/make",
//     "callers":{"uids":[1000],"groups":["users"]},"workspace":"/home/{user}/workspace",
//     "pathMapping":[{"from":"/workspace","to":"/home/{user}/workspace"}],
//     "env":["PATH","HOME"],"timeout":{"defaultSeconds":600,"maxSeconds":1800},
//     "concurrency":2}]}
// Unknown fields are errors. Errors name the source, the field path, what was found and what was
// expected: "rules.json: rules[0].command: expected an absolute path, got \"make\"".
// A plain function of its arguments with no global state (the fuzz target's entry point); text
// longer than kMaxRuleFileBytes or nested deeper than kMaxRuleFileDepth is refused unparsed.
Result<RuleSet> parseRules(const std::string& text, const std::string& sourceName);

// Reads and parses `path`.
Result<RuleSet> loadRules(const std::string& path);

// The file form of `rules` (what parseRules reads), one stable serialisation.
nlohmann::json rulesToJson(const std::vector<Rule>& rules);
nlohmann::json ruleToJson(const Rule& rule);

}  // namespace hyper::broker
