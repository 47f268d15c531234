#pragma once

#include <map>
#include <string>
#include <vector>

#include "base/status.h"
#include "broker/rules.h"

namespace hyper::broker {

// The caller as the system knows it; fills the templates of a rule.
struct UserInfo {
  std::string name;
  unsigned uid = 0;
  unsigned gid = 0;
  std::string home;
};

// Empty when `text` uses only the templates {user} {uid} {home}, else what is wrong.
std::string checkTemplate(const std::string& text);

// [A-Za-z_][A-Za-z0-9_]*
bool isEnvName(const std::string& name);

// Replaces {user} {uid} {home} with the caller's values.
std::string expandTemplate(const std::string& text, const UserInfo& user);

// Maps a path as the caller sees it (inside a container) to the host path: the longest `from`
// prefix that matches whole components is replaced by its `to`. Unmapped paths are returned as
// they are. Templates are expanded for `user`.
std::string mapPath(const std::string& path, const std::vector<PathMapping>& mapping,
                    const UserInfo& user);

// Resolves `path` (relative to `base` when not absolute) to a canonical path: symlinks and ".."
// of the existing part are resolved by the kernel (realpath); a remainder that does not exist yet
// may not contain "..". Fails when the result is not `root` or under it. `root` must be
// canonical. `what` names the path in the error ("cwd", "make -C argument").
Result<std::string> confine(const std::string& path, const std::string& base,
                            const std::string& root, const std::string& what);

// Checks make's directory and file options (-C/--directory, -f/--file/--makefile,
// -I/--include-dir, in every spelling getopt accepts: "-C dir", "-Cdir", "-sCdir",
// "--directory=dir", "--directory dir", "--dir=dir") against `root`. Relative values are taken
// from the directory make ends up in after all -C options, as make does. Absolute values are path
// mapped first; the returned arguments carry the mapped values. Arguments after "--" are targets
// and are not checked.
Result<std::vector<std::string>> confineMakeArgs(const std::vector<std::string>& args,
                                                 const std::string& cwd, const std::string& root,
                                                 const std::vector<PathMapping>& mapping,
                                                 const UserInfo& user);

// The environment of a run: the request's variables that `allow` names (others are dropped
// silently, as the caller's shell environment is full of them), then PATH, HOME, USER and LOGNAME
// from the system when the request did not pass them. "NAME=value" strings, sorted.
std::vector<std::string> filterEnv(const std::map<std::string, std::string>& requested,
                                   const std::vector<std::string>& allow, const UserInfo& user);

}  // namespace hyper::broker
