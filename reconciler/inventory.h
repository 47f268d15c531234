#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "reconciler/managed_record.h"
#include "reconciler/plan.h"
#include "reconciler/status.h"

struct sqlite3;

namespace hyper {

// One row of the action journal: written before an action runs ("started") and updated after
// ("succeeded" / "failed"), so a crash leaves a visible "started" row for the next reconcile.
struct JournalEntry {
  int64_t id = 0;
  std::string reconcileId;
  ObjectId object;
  std::string action;  // create | update | replace | delete
  std::string phase;   // started | succeeded | failed
  std::string detail;  // error message on failure
  int64_t startedAt = 0;
  int64_t finishedAt = 0;
};

struct RevisionEntry {
  std::string revision;
  std::string planHash;
  std::string result;  // applied | failed | partial
  int64_t at = 0;
};

// The embedded state database (SQLite, WAL) in the state directory: managed objects, the action
// journal and the revision history. Thread-safe: the executor records from worker threads.
// Secrets are never written here.
class Inventory {
 public:
  // Opens (creating if needed) <stateDir>/state.db and migrates its schema.
  static Result<std::unique_ptr<Inventory>> open(const std::string& stateDir);
  ~Inventory();
  Inventory(const Inventory&) = delete;
  Inventory& operator=(const Inventory&) = delete;

  Result<std::vector<ManagedRecord>> list() const;
  Result<std::optional<ManagedRecord>> get(const ObjectId& id) const;
  Status put(const ManagedRecord& record);  // insert or replace
  Status remove(const ObjectId& id);

  Result<int64_t> journalBegin(const std::string& reconcileId, const PlanAction& action);
  Status journalEnd(int64_t entryId, bool succeeded, const std::string& detail);
  // Entries left "started" by a crash.
  Result<std::vector<JournalEntry>> unfinishedJournal() const;
  Result<std::vector<JournalEntry>> journal(int limit) const;  // newest first

  Status recordRevision(const RevisionEntry& entry);
  Result<std::optional<RevisionEntry>> lastRevision() const;

 private:
  explicit Inventory(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  mutable std::mutex mu_;
};

}  // namespace hyper
