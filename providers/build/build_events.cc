#include "providers/build/build_events.h"

#include <cctype>

namespace hyper::providers::build {

namespace {

bool startsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// The number at the front of `s` and what follows it; false when there is none (or it is huge).
bool leadingNumber(std::string_view& s, int& out) {
  size_t i = 0;
  long v = 0;
  while (i < s.size() && i < 6 && std::isdigit(static_cast<unsigned char>(s[i])) != 0) {
    v = v * 10 + (s[i] - '0');
    ++i;
  }
  if (i == 0 || (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])) != 0)) {
    return false;
  }
  out = static_cast<int>(v);
  s.remove_prefix(i);
  return true;
}

}  // namespace

bool isFinalBuildLine(std::string_view line) {
  return startsWith(line, "built in ") || startsWith(line, "failed: ") ||
         startsWith(line, "apply: cached");
}

nlohmann::json buildLogEvent(std::string_view line, int64_t number) {
  nlohmann::json e = {{"line", number}};
  std::string_view rest = line;
  int step = 0;
  // "step 2 start", "step 2 exit 1", "step 2 signal 9" (what the agent said, relayed).
  if (startsWith(rest, "step ")) {
    rest.remove_prefix(5);
    if (leadingNumber(rest, step)) {
      int code = 0;
      std::string_view after = rest;
      if (after == " start") {
        e.update({{"type", "step"}, {"step", step}, {"phase", "start"}});
        return e;
      }
      for (std::string_view phase : {std::string_view("exit"), std::string_view("signal")}) {
        std::string_view tail = after;
        if (startsWith(tail, " ") && startsWith(tail.substr(1), phase)) {
          tail.remove_prefix(1 + phase.size());
          if (startsWith(tail, " ")) {
            tail.remove_prefix(1);
            if (leadingNumber(tail, code) && tail.empty()) {
              e.update({{"type", "step"}, {"step", step}, {"phase", phase}, {"code", code}});
              return e;
            }
          }
        }
      }
    }
  }
  // "[2] text" / "[2!] text": a step's stdout / stderr.
  rest = line;
  if (startsWith(rest, "[")) {
    rest.remove_prefix(1);
    if (leadingNumber(rest, step)) {
      bool err = startsWith(rest, "!");
      if (err) {
        rest.remove_prefix(1);
      }
      if (startsWith(rest, "] ")) {
        rest.remove_prefix(2);
        e.update({{"type", "log"},
                  {"step", step},
                  {"stream", err ? "err" : "out"},
                  {"text", std::string(rest)}});
        return e;
      }
    }
  }
  const std::string text(line);
  if (startsWith(line, "build ")) {
    e.update({{"type", "status"}, {"state", "started"}, {"text", text}});
  } else if (startsWith(line, "built in ")) {
    e.update({{"type", "status"}, {"state", "succeeded"}, {"text", text}});
  } else if (startsWith(line, "failed: ")) {
    e.update({{"type", "status"}, {"state", "failed"}, {"text", text}});
  } else if (startsWith(line, "apply: cached")) {
    e.update({{"type", "status"}, {"state", "cached"}, {"text", text}});
  } else {
    e.update({{"type", "log"}, {"text", text}});
  }
  return e;
}

}  // namespace hyper::providers::build
