#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"

namespace hyper::test {

// A unique network namespace name for this process: "hyt-<pid>-<n>-<tag>" (short enough for
// interface-style names in error messages).
std::string uniqueNetnsName(const std::string& tag);

// A named network namespace (`ip netns add`), deleted on destruction. It is not entered.
class NamedNetns {
 public:
  static Result<std::unique_ptr<NamedNetns>> create(std::string name);
  ~NamedNetns();
  NamedNetns(const NamedNetns&) = delete;
  NamedNetns& operator=(const NamedNetns&) = delete;

  const std::string& name() const { return name_; }
  // Runs argv inside this namespace (`ip netns exec NAME argv...`); never a shell.
  Result<std::string> run(const std::vector<std::string>& argv) const;
  // Exit code of argv inside the namespace (for commands expected to fail, like ping).
  Result<int> exitCode(const std::vector<std::string>& argv) const;

 private:
  explicit NamedNetns(std::string name) : name_(std::move(name)) {}
  std::string name_;
};

// Creates a named namespace and moves the calling thread into it (setns); child processes the
// thread starts inherit it. The destructor moves the thread back to the namespace it came from
// and deletes the test namespace, so a failed assertion still cleans up. Only the calling thread
// changes namespace: use it from the test's own thread.
class EnteredNetns {
 public:
  static Result<std::unique_ptr<EnteredNetns>> enter(const std::string& tag);
  ~EnteredNetns();
  EnteredNetns(const EnteredNetns&) = delete;
  EnteredNetns& operator=(const EnteredNetns&) = delete;

  const std::string& name() const { return ns_->name(); }
  // True when the calling thread is in this namespace (checked before touching anything).
  bool active() const;

 private:
  EnteredNetns(std::unique_ptr<NamedNetns> ns, int original)
      : ns_(std::move(ns)), original_(original) {}
  std::unique_ptr<NamedNetns> ns_;
  int original_ = -1;  // fd of the namespace the thread was in
};

}  // namespace hyper::test
