#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "reconciler/status.h"

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

  // The base name requests use to ask for this rule's command ("make" for /usr/bin/make).
  std::string commandName() const;
};

// The rules as loaded, and the hash that identifies them: sha256 of the file's bytes, so that
// whoever wrote the file can tell whether the broker runs what it wrote.
struct RuleSet {
  std::vector<Rule> rules;
  std::string hash;
};

// Parses a rule file:
//   {"schemaVersion":"1","rules":[{"name":"make","command":"/usr/bin/make",
//     "callers":{"uids":[1000],"groups":["users"]},"workspace":"/home/{user}/workspace",
//     "pathMapping":[{"from":"/workspace","to":"/home/{user}/workspace"}],
//     "env":["PATH","HOME"],"timeout":{"defaultSeconds":600,"maxSeconds":1800},
//     "concurrency":2}]}
// Unknown fields are errors. Errors name the source, the field path, what was found and what was
// expected: "rules.json: rules[0].command: expected an absolute path, got \"make\"".
Result<RuleSet> parseRules(const std::string& text, const std::string& sourceName);

// Reads and parses `path`.
Result<RuleSet> loadRules(const std::string& path);

// The file form of `rules` (what parseRules reads), one stable serialisation.
nlohmann::json rulesToJson(const std::vector<Rule>& rules);
nlohmann::json ruleToJson(const Rule& rule);

}  // namespace hyper::broker
