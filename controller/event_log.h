#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"

struct sqlite3;

namespace hyper::controller {

// Unix time in milliseconds, as events carry it.
int64_t nowMillis();
// A short random id (12 hex digits) that ties a reconcile's log lines, events and journal rows.
std::string newReconcileId();

// One thing that happened: a reconcile's result, a drift, a rejected revision, a source error.
struct Event {
  int64_t id = 0;     // increasing; the cursor for `hyperctl events -f`
  int64_t at = 0;     // unix milliseconds
  std::string type;   // reconciled | drift | revision-rejected | source-error | action-failed | ...
  std::string level;  // info | warning | error
  std::string object;  // "Network/lab", or empty for the whole host
  std::string revision;
  std::string reconcileId;
  std::string message;                                // one line for humans
  nlohmann::json details = nlohmann::json::object();  // e.g. the field-level diff of a drift

  nlohmann::json toJson() const;
};

// Events in the state database (table `events` of <stateDir>/state.db, its own connection), kept
// to the newest `retain` rows, plus a wake-up for readers that follow the log (SSE). Thread-safe.
// Never given secret values: callers pass plan changes, which carry none for sensitive fields.
class EventLog {
 public:
  static Result<std::unique_ptr<EventLog>> open(const std::string& stateDir, size_t retain = 10000);
  ~EventLog();
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  // Stores the event (setting id and, when zero, at) and wakes followers.
  Result<Event> append(Event event);
  // Events with id > afterId, oldest first, at most `limit`.
  Result<std::vector<Event>> since(int64_t afterId, size_t limit) const;
  // The newest `limit` events, oldest first.
  Result<std::vector<Event>> latest(size_t limit) const;
  // Blocks until an event newer than afterId exists, close() is called, or the timeout passes.
  // Returns the newest id.
  int64_t waitNewer(int64_t afterId, std::chrono::milliseconds timeout);
  void close();  // wakes every waiter for shutdown

 private:
  EventLog(sqlite3* db, size_t retain, int64_t lastId);
  Result<std::vector<Event>> query(const char* sql, int64_t a, int64_t b) const;

  sqlite3* db_;
  size_t retain_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int64_t lastId_;
  bool closed_ = false;
};

}  // namespace hyper::controller
