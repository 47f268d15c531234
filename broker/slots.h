#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

namespace hyper::broker {

// How a wait for a slot ended.
enum class SlotWait {
  Acquired,   // a slot is held; give it back with release()
  Abandoned,  // `abandoned` said so (client gone, daemon stopping)
  Refused,    // `onQueued` refused to wait (the caller's queue limit)
  TimedOut,   // the deadline passed first
};

// The concurrency limit of one rule: at most `limit` runs hold a slot; others wait in arrival
// order (FIFO tickets, so a steady stream of new requests cannot starve an old one). The limit may
// change on a rule reload; runs already started keep their slot.
class RuleSlots {
 public:
  explicit RuleSlots(int limit) : limit_(limit) {}

  void setLimit(int limit);

  // Blocks until a slot is free and this caller is first in line, or `deadline` passes.
  // `abandoned` is polled while waiting (a client that hung up, a daemon that stops); when it
  // returns true the wait ends without a slot. `onQueued` is called once, before the first wait,
  // if the caller has to wait; when it returns false the caller leaves the line at once (Refused).
  // Whatever the outcome other than Acquired, the caller's place in line is given up, so the
  // callers behind it move up.
  SlotWait acquire(std::chrono::steady_clock::time_point deadline,
                   const std::function<bool()>& abandoned, const std::function<bool()>& onQueued);
  void release();

  int running() const;

 private:
  // Moves the head of the line past the ticket just served and any that left the line.
  void advance();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  int limit_;
  int running_ = 0;
  uint64_t nextTicket_ = 0;
  uint64_t serving_ = 0;        // the ticket at the head of the queue
  std::set<uint64_t> skipped_;  // tickets whose callers left the line before their turn
};

// RuleSlots by rule name, kept across reloads.
class SlotTable {
 public:
  std::shared_ptr<RuleSlots> forRule(const std::string& name, int limit);

 private:
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<RuleSlots>> slots_;
};

}  // namespace hyper::broker
