#include "broker/rules.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "base/names.h"
#include "base/sha256.h"
#include "broker/bounded_json.h"
#include "broker/paths.h"

namespace hyper::broker {

using Json = nlohmann::json;

namespace {

// Collects the first error of a parse with its location: "<source>: <path>: <what>".
class RuleParser {
 public:
  explicit RuleParser(std::string source) : source_(std::move(source)) {}

  Status fail(const std::string& path, const std::string& what) const {
    return Status::error(source_ + ": " + (path.empty() ? "" : path + ": ") + what);
  }

  static std::string found(const Json& j) {
    std::string dumped = j.dump();
    if (dumped.size() > 60) {
      dumped = dumped.substr(0, 57) + "...";
    }
    return dumped;
  }

  Status checkKeys(const Json& obj, const std::string& path,
                   const std::set<std::string>& allowed) const {
    for (const auto& [key, value] : obj.items()) {
      if (allowed.count(key) == 0) {
        std::string expected;
        for (const auto& a : allowed) {
          expected += (expected.empty() ? "" : ", ") + a;
        }
        return fail(path.empty() ? key : path + "." + key,
                    "unknown field; expected one of: " + expected);
      }
    }
    return Status::ok();
  }

  Result<std::string> string(const Json& obj, const std::string& path, const std::string& key,
                             bool required) const {
    auto it = obj.find(key);
    if (it == obj.end()) {
      if (required) {
        return fail(path + "." + key, "missing; expected a string");
      }
      return std::string();
    }
    if (!it->is_string()) {
      return fail(path + "." + key, "expected a string, got " + found(*it));
    }
    return it->get<std::string>();
  }

  Result<int> positive(const Json& obj, const std::string& path, const std::string& key,
                       int fallback) const {
    auto it = obj.find(key);
    if (it == obj.end()) {
      return fallback;
    }
    if (!it->is_number_integer() || it->get<long long>() < 1 || it->get<long long>() > 1000000) {
      return fail(path + "." + key, "expected an integer from 1 to 1000000, got " + found(*it));
    }
    return static_cast<int>(it->get<long long>());
  }

  // An optional integer from `min` to `max`; 0 when left out.
  Result<long long> limit(const Json& obj, const std::string& path, const std::string& key,
                          long long min, long long max) const {
    auto it = obj.find(key);
    if (it == obj.end()) {
      return 0LL;
    }
    if (!it->is_number_integer() || it->get<long long>() < min || it->get<long long>() > max) {
      return fail(path + "." + key, "expected an integer from " + std::to_string(min) + " to " +
                                        std::to_string(max) + ", got " + found(*it));
    }
    return it->get<long long>();
  }

  Status absolutePath(const std::string& path, const std::string& value) const {
    if (value.empty() || value[0] != '/') {
      return fail(path, "expected an absolute path, got \"" + value + "\"");
    }
    std::string bad = checkTemplate(value);
    if (!bad.empty()) {
      return fail(path, bad);
    }
    return Status::ok();
  }

  Result<Rule> rule(const Json& j, const std::string& path) const {
    if (!j.is_object()) {
      return fail(path, "expected an object, got " + found(j));
    }
    HYPER_RETURN_IF_ERROR(
        checkKeys(j, path,
                  {"name", "command", "callers", "workspace", "pathMapping", "env", "timeout",
                   "concurrency", "noNewPrivs", "pidsMax", "memoryMaxBytes"}));
    Rule r;
    HYPER_ASSIGN_OR_RETURN(r.name, string(j, path, "name", true));
    if (std::string bad = checkDnsLabel(r.name); !bad.empty()) {
      return fail(path + ".name", bad);
    }
    HYPER_ASSIGN_OR_RETURN(r.command, string(j, path, "command", true));
    if (r.command.empty() || r.command[0] != '/' || r.command.back() == '/' ||
        r.command.find('{') != std::string::npos) {
      return fail(path + ".command",
                  "expected an absolute path to an executable, got \"" + r.command + "\"");
    }
    auto callers = j.find("callers");
    if (callers == j.end() || !callers->is_object()) {
      return fail(path + ".callers",
                  "expected an object with uids and/or groups, got " +
                      (callers == j.end() ? std::string("nothing") : found(*callers)));
    }
    HYPER_RETURN_IF_ERROR(checkKeys(*callers, path + ".callers", {"uids", "groups"}));
    if (auto uids = callers->find("uids"); uids != callers->end()) {
      if (!uids->is_array()) {
        return fail(path + ".callers.uids", "expected a list of uids, got " + found(*uids));
      }
      for (size_t i = 0; i < uids->size(); ++i) {
        const Json& u = (*uids)[i];
        if (!u.is_number_integer() || u.get<long long>() < 0 || u.get<long long>() > 0xfffffffeLL) {
          return fail(path + ".callers.uids[" + std::to_string(i) + "]",
                      "expected a uid (an integer >= 0), got " + found(u));
        }
        r.uids.push_back(static_cast<unsigned>(u.get<long long>()));
      }
    }
    if (auto groups = callers->find("groups"); groups != callers->end()) {
      if (!groups->is_array()) {
        return fail(path + ".callers.groups",
                    "expected a list of group names, got " + found(*groups));
      }
      for (size_t i = 0; i < groups->size(); ++i) {
        const Json& g = (*groups)[i];
        if (!g.is_string() || g.get<std::string>().empty()) {
          return fail(path + ".callers.groups[" + std::to_string(i) + "]",
                      "expected a group name, got " + found(g));
        }
        r.groups.push_back(g.get<std::string>());
      }
    }
    if (r.uids.empty() && r.groups.empty()) {
      return fail(path + ".callers", "expected at least one uid or group");
    }
    HYPER_ASSIGN_OR_RETURN(r.workspace, string(j, path, "workspace", true));
    HYPER_RETURN_IF_ERROR(absolutePath(path + ".workspace", r.workspace));
    if (auto mapping = j.find("pathMapping"); mapping != j.end()) {
      if (!mapping->is_array()) {
        return fail(path + ".pathMapping", "expected a list of {from, to}, got " + found(*mapping));
      }
      for (size_t i = 0; i < mapping->size(); ++i) {
        std::string mpath = path + ".pathMapping[" + std::to_string(i) + "]";
        const Json& m = (*mapping)[i];
        if (!m.is_object()) {
          return fail(mpath, "expected {from, to}, got " + found(m));
        }
        HYPER_RETURN_IF_ERROR(checkKeys(m, mpath, {"from", "to"}));
        PathMapping pm;
        HYPER_ASSIGN_OR_RETURN(pm.from, string(m, mpath, "from", true));
        HYPER_ASSIGN_OR_RETURN(pm.to, string(m, mpath, "to", true));
        HYPER_RETURN_IF_ERROR(absolutePath(mpath + ".from", pm.from));
        HYPER_RETURN_IF_ERROR(absolutePath(mpath + ".to", pm.to));
        r.pathMapping.push_back(std::move(pm));
      }
    }
    if (auto env = j.find("env"); env != j.end()) {
      if (!env->is_array()) {
        return fail(path + ".env", "expected a list of variable names, got " + found(*env));
      }
      for (size_t i = 0; i < env->size(); ++i) {
        const Json& e = (*env)[i];
        if (!e.is_string() || !isEnvName(e.get<std::string>())) {
          return fail(path + ".env[" + std::to_string(i) + "]",
                      "expected a variable name ([A-Za-z_][A-Za-z0-9_]*), got " + found(e));
        }
        r.env.push_back(e.get<std::string>());
      }
    }
    if (auto timeout = j.find("timeout"); timeout != j.end()) {
      if (!timeout->is_object()) {
        return fail(path + ".timeout",
                    "expected {defaultSeconds, maxSeconds}, got " + found(*timeout));
      }
      HYPER_RETURN_IF_ERROR(
          checkKeys(*timeout, path + ".timeout", {"defaultSeconds", "maxSeconds"}));
      HYPER_ASSIGN_OR_RETURN(r.defaultTimeoutSec,
                             positive(*timeout, path + ".timeout", "defaultSeconds", 600));
      HYPER_ASSIGN_OR_RETURN(r.maxTimeoutSec, positive(*timeout, path + ".timeout", "maxSeconds",
                                                       std::max(1800, r.defaultTimeoutSec)));
      if (r.maxTimeoutSec < r.defaultTimeoutSec) {
        return fail(path + ".timeout.maxSeconds", "expected at least defaultSeconds (" +
                                                      std::to_string(r.defaultTimeoutSec) +
                                                      "), got " + std::to_string(r.maxTimeoutSec));
      }
    }
    HYPER_ASSIGN_OR_RETURN(r.concurrency, positive(j, path, "concurrency", 1));
    if (auto nnp = j.find("noNewPrivs"); nnp != j.end()) {
      if (!nnp->is_boolean()) {
        return fail(path + ".noNewPrivs", "expected true or false, got " + found(*nnp));
      }
      r.noNewPrivs = nnp->get<bool>();
    }
    HYPER_ASSIGN_OR_RETURN(r.pidsMax, limit(j, path, "pidsMax", 1, 4194304));
    HYPER_ASSIGN_OR_RETURN(r.memoryMaxBytes,
                           limit(j, path, "memoryMaxBytes", 1024 * 1024, 1LL << 50));
    return r;
  }

 private:
  std::string source_;
};

}  // namespace

std::string Rule::commandName() const {
  auto slash = command.rfind('/');
  return slash == std::string::npos ? command : command.substr(slash + 1);
}

Result<RuleSet> parseRules(const std::string& text, const std::string& sourceName) {
  RuleParser p(sourceName);
  auto parsed = parseBoundedJson(text, JsonLimits{kMaxRuleFileBytes, kMaxRuleFileDepth});
  if (!parsed.isOk()) {
    return p.fail("", parsed.status().message());
  }
  Json doc = std::move(parsed).value();
  if (!doc.is_object()) {
    return p.fail("", "expected an object {\"schemaVersion\":\"1\",\"rules\":[...]}");
  }
  HYPER_RETURN_IF_ERROR(p.checkKeys(doc, "", {"schemaVersion", "rules"}));
  auto version = doc.find("schemaVersion");
  if (version == doc.end() || *version != "1") {
    return p.fail(
        "schemaVersion",
        "expected \"1\", got " + (version == doc.end() ? "nothing" : RuleParser::found(*version)));
  }
  auto rules = doc.find("rules");
  if (rules == doc.end() || !rules->is_array()) {
    return p.fail("rules", "expected a list of rules");
  }
  RuleSet set;
  set.hash = sha256Hex(text);
  std::set<std::string> names;
  for (size_t i = 0; i < rules->size(); ++i) {
    std::string path = "rules[" + std::to_string(i) + "]";
    HYPER_ASSIGN_OR_RETURN(Rule r, p.rule((*rules)[i], path));
    if (!names.insert(r.name).second) {
      return p.fail(path + ".name", "duplicate rule name \"" + r.name + "\"");
    }
    set.rules.push_back(std::move(r));
  }
  return set;
}

Result<RuleSet> loadRules(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status::error("read rules " + path + " <- " + std::strerror(errno));
  }
  // Read at most one byte more than the limit: a huge (or endless) file is refused by size
  // without being held in memory.
  std::string text(kMaxRuleFileBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) {
    return Status::error("read rules " + path + " <- read failed");
  }
  text.resize(static_cast<size_t>(in.gcount()));
  return parseRules(text, path);
}

Json ruleToJson(const Rule& r) {
  Json j = {{"name", r.name}, {"command", r.command}, {"workspace", r.workspace}};
  Json callers = Json::object();
  if (!r.uids.empty()) {
    callers["uids"] = r.uids;
  }
  if (!r.groups.empty()) {
    callers["groups"] = r.groups;
  }
  j["callers"] = callers;
  if (!r.pathMapping.empty()) {
    Json m = Json::array();
    for (const auto& pm : r.pathMapping) {
      m.push_back({{"from", pm.from}, {"to", pm.to}});
    }
    j["pathMapping"] = m;
  }
  j["env"] = r.env;
  j["timeout"] = {{"defaultSeconds", r.defaultTimeoutSec}, {"maxSeconds", r.maxTimeoutSec}};
  j["concurrency"] = r.concurrency;
  // Written only when set, so that a file of rules without them keeps its bytes (and hash).
  if (!r.noNewPrivs) {
    j["noNewPrivs"] = false;
  }
  if (r.pidsMax > 0) {
    j["pidsMax"] = r.pidsMax;
  }
  if (r.memoryMaxBytes > 0) {
    j["memoryMaxBytes"] = r.memoryMaxBytes;
  }
  return j;
}

Json rulesToJson(const std::vector<Rule>& rules) {
  Json list = Json::array();
  for (const auto& r : rules) {
    list.push_back(ruleToJson(r));
  }
  return {{"schemaVersion", "1"}, {"rules", list}};
}

}  // namespace hyper::broker
