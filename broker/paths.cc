#include "broker/paths.h"

#include <limits.h>
#include <stdlib.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

namespace hyper::broker {

namespace {

bool isUnder(const std::string& path, const std::string& root) {
  if (root == "/") {
    return true;
  }
  return path == root || (path.size() > root.size() && path.compare(0, root.size(), root) == 0 &&
                          path[root.size()] == '/');
}

std::vector<std::string> splitComponents(const std::string& path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) {
      end = path.size();
    }
    if (end > start) {
      parts.push_back(path.substr(start, end - start));
    }
    start = end + 1;
  }
  return parts;
}

std::string joinPath(const std::string& dir, const std::string& name) {
  if (dir.empty() || dir.back() == '/') {
    return dir + name;
  }
  return dir + "/" + name;
}

// realpath of the longest existing prefix of `absolute`, then the rest appended lexically.
Result<std::string> canonicalise(const std::string& absolute) {
  std::vector<std::string> parts = splitComponents(absolute);
  for (size_t keep = parts.size() + 1; keep-- > 0;) {
    std::string prefix = "/";
    for (size_t i = 0; i < keep; ++i) {
      prefix = joinPath(prefix, parts[i]);
    }
    char resolved[PATH_MAX];
    if (::realpath(prefix.c_str(), resolved) == nullptr) {
      if (errno == ENOENT || errno == ENOTDIR) {
        continue;
      }
      return Status::error("resolve " + prefix + " <- " + std::strerror(errno));
    }
    std::string result = resolved;
    for (size_t i = keep; i < parts.size(); ++i) {
      if (parts[i] == "..") {
        return Status::error("\"..\" after the non-existent path " +
                             joinPath(result, parts[i - 1]));
      }
      if (parts[i] != ".") {
        result = joinPath(result, parts[i]);
      }
    }
    return result;
  }
  return Status::error("resolve " + absolute + " <- nothing of it exists");
}

enum class PathOption { Directory, File, IncludeDir };

struct PathArg {
  PathOption kind;
  size_t index;        // the argument that holds the value
  std::string prefix;  // what precedes the value in that argument ("-C", "--file=", "")
  std::string value;
};

const char* describe(PathOption kind) {
  switch (kind) {
    case PathOption::Directory:
      return "make -C/--directory argument";
    case PathOption::File:
      return "make -f/--file argument";
    case PathOption::IncludeDir:
      return "make -I/--include-dir argument";
  }
  return "make argument";
}

// GNU make's long options that name paths; getopt accepts any unambiguous prefix of them. A
// prefix shared with another option ("--d") is treated as a path option too: make rejects it as
// ambiguous, and checking it costs nothing.
bool longPathOption(const std::string& name, PathOption& kind) {
  static const std::pair<const char*, PathOption> options[] = {
      {"directory", PathOption::Directory},
      {"file", PathOption::File},
      {"makefile", PathOption::File},
      {"include-dir", PathOption::IncludeDir},
  };
  for (const auto& [full, k] : options) {
    if (!name.empty() && std::string(full).compare(0, name.size(), name) == 0) {
      kind = k;
      return true;
    }
  }
  return false;
}

// Long options whose required argument may be the next word ("--eval TEXT"): that word is a value,
// not an option or a target.
bool longOptionTakesArgument(const std::string& name) {
  static const char* options[] = {"old-file",   "assume-old", "what-if",        "new-file",
                                  "assume-new", "eval",       "jobserver-auth", "jobserver-style"};
  for (const char* full : options) {
    if (name == full) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::string checkTemplate(const std::string& text) {
  size_t pos = 0;
  while ((pos = text.find('{', pos)) != std::string::npos) {
    size_t end = text.find('}', pos);
    if (end == std::string::npos) {
      return "unclosed \"{\" in \"" + text + "\"";
    }
    std::string name = text.substr(pos + 1, end - pos - 1);
    if (name != "user" && name != "uid" && name != "home") {
      return "unknown template {" + name + "} in \"" + text +
             "\"; expected {user}, {uid} or {home}";
    }
    pos = end + 1;
  }
  return "";
}

bool isEnvName(const std::string& name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return c == '_' || std::isalnum(static_cast<unsigned char>(c));
  });
}

std::string expandTemplate(const std::string& text, const UserInfo& user) {
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t open = text.find('{', pos);
    if (open == std::string::npos) {
      out += text.substr(pos);
      break;
    }
    out += text.substr(pos, open - pos);
    size_t close = text.find('}', open);
    std::string name = close == std::string::npos ? "" : text.substr(open + 1, close - open - 1);
    if (name == "user") {
      out += user.name;
    } else if (name == "uid") {
      out += std::to_string(user.uid);
    } else if (name == "home") {
      out += user.home;
    } else {
      out += text.substr(open, close == std::string::npos ? std::string::npos : close - open + 1);
    }
    pos = close == std::string::npos ? text.size() : close + 1;
  }
  return out;
}

std::string mapPath(const std::string& path, const std::vector<PathMapping>& mapping,
                    const UserInfo& user) {
  const PathMapping* best = nullptr;
  std::string bestFrom;
  for (const auto& m : mapping) {
    std::string from = expandTemplate(m.from, user);
    while (from.size() > 1 && from.back() == '/') {
      from.pop_back();
    }
    if (isUnder(path, from) && (best == nullptr || from.size() > bestFrom.size())) {
      best = &m;
      bestFrom = from;
    }
  }
  if (best == nullptr) {
    return path;
  }
  std::string to = expandTemplate(best->to, user);
  std::string rest = bestFrom == "/" ? path : path.substr(bestFrom.size());
  if (rest.empty()) {
    return to;
  }
  if (!to.empty() && to.back() == '/' && rest[0] == '/') {
    return to + rest.substr(1);
  }
  return rest[0] == '/' ? to + rest : to + "/" + rest;
}

Result<std::string> confine(const std::string& path, const std::string& base,
                            const std::string& root, const std::string& what) {
  if (path.empty()) {
    return Status::error(what + " is empty");
  }
  if (path.find('\0') != std::string::npos) {
    return Status::error(what + " contains a NUL byte");
  }
  std::string absolute = path[0] == '/' ? path : joinPath(base, path);
  auto canonical = canonicalise(absolute);
  if (!canonical.isOk()) {
    return canonical.status().withContext(what + " " + path);
  }
  if (!isUnder(*canonical, root)) {
    std::string resolvedNote = *canonical == path ? "" : " (resolves to " + *canonical + ")";
    return Status::error(what + " " + path + resolvedNote + " is outside the workspace " + root);
  }
  return canonical;
}

Result<std::vector<std::string>> confineMakeArgs(const std::vector<std::string>& args,
                                                 const std::string& cwd, const std::string& root,
                                                 const std::vector<PathMapping>& mapping,
                                                 const UserInfo& user) {
  std::vector<PathArg> found;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {
      break;
    }
    if (a.rfind("--", 0) == 0) {
      size_t eq = a.find('=');
      std::string name = a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
      PathOption kind;
      bool isPath = longPathOption(name, kind);
      if (eq != std::string::npos) {
        if (isPath) {
          found.push_back({kind, i, a.substr(0, eq + 1), a.substr(eq + 1)});
        }
        continue;
      }
      if (isPath || longOptionTakesArgument(name)) {
        if (i + 1 >= args.size()) {
          return Status::error("make option " + a + " needs an argument");
        }
        ++i;
        if (isPath) {
          found.push_back({kind, i, "", args[i]});
        }
      }
      continue;
    }
    if (a.size() < 2 || a[0] != '-') {
      continue;  // a target or a variable assignment
    }
    for (size_t j = 1; j < a.size(); ++j) {
      char c = a[j];
      if (c == 'C' || c == 'f' || c == 'I' || c == 'o' || c == 'W' || c == 'E') {
        size_t index = i;
        std::string prefix = a.substr(0, j + 1);
        std::string value = a.substr(j + 1);
        if (value.empty()) {
          if (i + 1 >= args.size()) {
            return Status::error(std::string("make option -") + c + " needs an argument");
          }
          index = ++i;
          prefix.clear();
          value = args[i];
        }
        if (c == 'C') {
          found.push_back({PathOption::Directory, index, prefix, value});
        } else if (c == 'f') {
          found.push_back({PathOption::File, index, prefix, value});
        } else if (c == 'I') {
          found.push_back({PathOption::IncludeDir, index, prefix, value});
        }
        break;
      }
      if (c == 'j' || c == 'l' || c == 'O') {
        break;  // the rest of the word is this option's optional argument
      }
    }
  }

  std::vector<std::string> out = args;
  std::string dir = cwd;
  auto check = [&](PathArg& p, const std::string& base) -> Result<std::string> {
    std::string value = p.value;
    if (!value.empty() && value[0] == '/') {
      value = mapPath(value, mapping, user);
    }
    HYPER_ASSIGN_OR_RETURN(std::string canonical, confine(value, base, root, describe(p.kind)));
    out[p.index] = p.prefix + value;
    return canonical;
  };
  for (auto& p : found) {
    if (p.kind == PathOption::Directory) {
      HYPER_ASSIGN_OR_RETURN(dir, check(p, dir));
    }
  }
  for (auto& p : found) {
    if (p.kind != PathOption::Directory) {
      HYPER_ASSIGN_OR_RETURN(std::string ignored, check(p, dir));
      (void)ignored;
    }
  }
  return out;
}

std::vector<std::string> filterEnv(const std::map<std::string, std::string>& requested,
                                   const std::vector<std::string>& allow, const UserInfo& user) {
  std::map<std::string, std::string> env;
  for (const auto& name : allow) {
    auto it = requested.find(name);
    if (it != requested.end() && it->second.find('\0') == std::string::npos) {
      env[name] = it->second;
    }
  }
  env.emplace("PATH", "/usr/local/bin:/usr/bin:/bin");
  env.emplace("HOME", user.home.empty() ? "/" : user.home);
  env.emplace("USER", user.name);
  env.emplace("LOGNAME", user.name);
  std::vector<std::string> out;
  for (const auto& [k, v] : env) {
    out.push_back(k + "=" + v);
  }
  return out;
}

}  // namespace hyper::broker
