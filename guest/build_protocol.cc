#include "guest/build_protocol.h"

#include <charconv>

#include "base/base64.h"
#include "base/text_escape.h"

namespace hyper::guest {

namespace {

constexpr size_t kMaxSteps = 64;
constexpr size_t kMaxArgs = 256;
constexpr size_t kMaxArgBytes = 4096;
constexpr size_t kMaxEnv = 128;

std::string excerpt(std::string_view text) { return quotedExcerpt(text, 60); }

bool parseInt(std::string_view text, int& out) {
  if (text.empty() || text.size() > 11) {
    return false;
  }
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

// Splits off the next space-separated word.
std::string_view word(std::string_view& rest) {
  size_t sp = rest.find(' ');
  std::string_view w = rest.substr(0, sp);
  rest = sp == std::string_view::npos ? std::string_view() : rest.substr(sp + 1);
  return w;
}

}  // namespace

nlohmann::json BuildJob::toJson() const {
  nlohmann::json j = {{"steps", steps}, {"env", env}, {"workdir", workdir}};
  if (uid >= 0) {
    j["uid"] = uid;
  }
  if (gid >= 0) {
    j["gid"] = gid;
  }
  return j;
}

Result<BuildJob> BuildJob::fromJson(const nlohmann::json& j) {
  BuildJob job;
  if (!j.is_object() || !j.contains("steps") || !j["steps"].is_array()) {
    return Status::error("job: expected an object with steps: [[argv...]]");
  }
  if (j["steps"].size() > kMaxSteps) {
    return Status::error("job: more than " + std::to_string(kMaxSteps) + " steps");
  }
  for (const auto& step : j["steps"]) {
    if (!step.is_array() || step.empty() || step.size() > kMaxArgs) {
      return Status::error("job: a step is a list of 1 to " + std::to_string(kMaxArgs) +
                           " arguments");
    }
    std::vector<std::string> argv;
    for (const auto& a : step) {
      if (!a.is_string() || a.get<std::string>().size() > kMaxArgBytes ||
          a.get<std::string>().find('\0') != std::string::npos) {
        return Status::error("job: an argument is a string of at most " +
                             std::to_string(kMaxArgBytes) + " bytes without NUL");
      }
      argv.push_back(a.get<std::string>());
    }
    job.steps.push_back(std::move(argv));
  }
  if (j.contains("env")) {
    if (!j["env"].is_object() || j["env"].size() > kMaxEnv) {
      return Status::error("job: env is a mapping of at most " + std::to_string(kMaxEnv));
    }
    for (const auto& [k, v] : j["env"].items()) {
      if (!v.is_string() || k.empty() || k.find('=') != std::string::npos ||
          k.find('\0') != std::string::npos ||
          v.get<std::string>().find('\0') != std::string::npos) {
        return Status::error("job: env " + excerpt(k) + ": expected NAME: string");
      }
      job.env[k] = v.get<std::string>();
    }
  }
  if (j.contains("workdir")) {
    if (!j["workdir"].is_string()) {
      return Status::error("job: workdir is an absolute path");
    }
    job.workdir = j["workdir"].get<std::string>();
  }
  if (job.workdir.empty() || job.workdir[0] != '/' || job.workdir.size() > kMaxArgBytes ||
      job.workdir.find('\0') != std::string::npos) {
    return Status::error("job: workdir is an absolute path");
  }
  for (auto [name, id] : {std::pair{"uid", &job.uid}, std::pair{"gid", &job.gid}}) {
    if (!j.contains(name)) {
      continue;
    }
    if (!j[name].is_number_integer() || j[name].get<int64_t>() < 0 ||
        j[name].get<int64_t>() > 0x7fffffff) {
      return Status::error(std::string("job: ") + name + " is a number from 0");
    }
    *id = static_cast<int>(j[name].get<int64_t>());
  }
  return job;
}

Result<AgentLine> parseAgentLine(std::string_view line) {
  if (line.size() > kMaxBuildLine) {
    return Status::error("a line of " + std::to_string(line.size()) + " bytes (at most " +
                         std::to_string(kMaxBuildLine) + ")");
  }
  std::string_view rest = line;
  const std::string_view verb = word(rest);
  AgentLine out;
  auto stepNumber = [&]() -> bool { return parseInt(word(rest), out.step) && out.step >= 0; };
  if (verb == "hello") {
    out.kind = AgentLine::Kind::Hello;
    out.data = std::string(rest);
    return out;
  }
  if (verb == "alive" && rest.empty()) {
    out.kind = AgentLine::Kind::Alive;
    return out;
  }
  if (verb == "out" || verb == "err") {
    out.kind = verb == "out" ? AgentLine::Kind::Out : AgentLine::Kind::Err;
    if (stepNumber() && decodeBase64(rest, out.data, kOutputChunk)) {
      return out;
    }
    return Status::error("expected " + std::string(verb) + " <step> <base64 of at most " +
                         std::to_string(kOutputChunk) + " bytes>, got " + excerpt(line));
  }
  if (verb == "step") {
    if (stepNumber()) {
      const std::string_view what = word(rest);
      if (what == "start" && rest.empty()) {
        out.kind = AgentLine::Kind::StepStart;
        return out;
      }
      if ((what == "exit" || what == "signal") && parseInt(rest, out.code)) {
        out.kind = what == "exit" ? AgentLine::Kind::StepExit : AgentLine::Kind::StepSignal;
        return out;
      }
    }
    return Status::error("expected step <n> start|exit <code>|signal <number>, got " +
                         excerpt(line));
  }
  if (verb == "result") {
    out.kind = AgentLine::Kind::Result;
    const std::string_view what = word(rest);
    if (what == "ok" && rest.empty()) {
      out.ok = true;
      return out;
    }
    if (what == "failed" && stepNumber() && parseInt(rest, out.code)) {
      return out;
    }
    if (what == "error") {
      out.error = true;
      out.data = std::string(rest.substr(0, 512));
      return out;
    }
    return Status::error("expected result ok|failed <step> <code>|error <reason>, got " +
                         excerpt(line));
  }
  return Status::error("unexpected line " + excerpt(line) +
                       " (expected hello, step, out, err, alive or result)");
}

std::string outputLine(bool err, int step, std::string_view bytes) {
  return std::string(err ? "err " : "out ") + std::to_string(step) + " " + encodeBase64(bytes);
}

}  // namespace hyper::guest
