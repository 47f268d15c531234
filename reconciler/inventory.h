#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "reconciler/managed_record.h"
#include "reconciler/plan.h"
#include "reconciler/record_list.h"

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
  std::string content;     // Revision::content
  bool converged = false;  // the whole plan applied: the inventory matches the content
};

// The embedded state database (SQLite, WAL) in the state directory: managed objects, the action
// journal and the revision history. Thread-safe: the executor records from worker threads.
// Secrets are never written here.
//
// The managed records are read from the database once, by the first snapshot() or list(), and
// kept in memory from then on; put() and remove() write through to the database and to that
// cache (which holds a record as it was put, not as re-read from its stored JSON). This is sound
// because the process holding the state lock (hyperd, or hyperctl apply) is the only writer of
// the objects table. A cached Inventory does not see what another process writes afterwards:
// each hyperctl process opens its own Inventory, and get() always reads the database. The cache
// costs memory (hyper_bench: some 3.5 KB per record) and spares hyperd reading and parsing every
// row on every reconcile (some 65 ms CPU at 10k records).
class Inventory {
 public:
  // Opens (creating if needed) <stateDir>/state.db and migrates its schema.
  static Result<std::unique_ptr<Inventory>> open(const std::string& stateDir);
  ~Inventory();
  Inventory(const Inventory&) = delete;
  Inventory& operator=(const Inventory&) = delete;

  using Records = RecordList;

  // Every managed record, sorted by kind then name, as an immutable value that stays valid (and
  // unchanged) however the inventory is written afterwards: what hyperd plans against on every
  // reconcile. Taking one is cheap; the first after a put() or remove() makes a new list that
  // shares every record not written since (in memory: the database is read only by the first
  // call).
  Result<std::shared_ptr<const Records>> snapshot() const;
  // A copy of *snapshot(), records and all, for callers that want to own the records.
  Result<std::vector<ManagedRecord>> list() const;
  Result<std::optional<ManagedRecord>> get(const ObjectId& id) const;
  Status put(const ManagedRecord& record);  // insert or replace
  Status remove(const ObjectId& id);
  // Many puts and removes as one transaction: all written, or none (the error names the first
  // that failed). What a batch of actions records once its host changes are made: one commit
  // rather than one per record (hyper_net_apply_bench: some 8% of a first apply at 1,000
  // Networks went to commits).
  struct RecordWrite {
    ObjectId id;
    std::optional<ManagedRecord> record;  // nullopt: remove id
  };
  Status write(const std::vector<RecordWrite>& writes);

  // `spec` (a create's desired spec) is kept with the entry: see unconfirmed().
  Result<int64_t> journalBegin(const std::string& reconcileId, const PlanAction& action,
                               const Json* spec = nullptr);
  Status journalEnd(int64_t entryId, bool succeeded, const std::string& detail);
  // journalBegin and journalEnd of many entries, each as one transaction: every entry begun (the
  // ids in the order given) or none, every entry ended or none.
  struct JournalStart {
    const PlanAction* action = nullptr;
    const Json* spec = nullptr;
  };
  Result<std::vector<int64_t>> journalBeginAll(const std::string& reconcileId,
                                               const std::vector<JournalStart>& starts);
  struct JournalOutcome {
    int64_t entryId = 0;
    bool succeeded = false;
    std::string detail;
  };
  Status journalEndAll(const std::vector<JournalOutcome>& outcomes);
  // Entries left "started" by a crash.
  Result<std::vector<JournalEntry>> unfinishedJournal() const;
  // Marks the entries left "started" as failed with kInterrupted as their detail, and returns
  // them as they were: what the holder of the state lock (hyperd at start, hyperctl apply) does
  // before it plans, so that a crash is reported once and the next reconcile finishes the work.
  Result<std::vector<JournalEntry>> closeInterrupted();
  static constexpr const char* kInterrupted =
      "interrupted: the process stopped while this action ran";
  // Objects hyper began to create and never saw created: no record, and their newest journal
  // entry is a create that did not succeed (killed, or failed part-way). Whatever that attempt
  // left on the host (a bridge, a running QEMU) is hyper's, yet no record names it: each comes
  // back as a record built from the entry (kind, name, the spec it was created with, no handles,
  // fingerprint kUnconfirmed) for the engine to delete when a prune finds the object gone from
  // the source (PlanOptions::unconfirmed). Sorted by kind, then name.
  Result<RecordList> unconfirmed() const;
  static constexpr const char* kUnconfirmed = "unconfirmed-create";
  Result<std::vector<JournalEntry>> journal(int limit) const;  // newest first

  // Records an applied revision with the artifact digests ("sha256:<64 hex>" anywhere in a
  // record's handles) each object references now, as {"Kind/name": [digests]}.
  // A converged entry also keeps, for its content, the build key of every record whose handles
  // have one ({"key": "<64 hex>"}, a reproducible kind's): contentKeys() finds them.
  Status recordRevision(const RevisionEntry& entry);
  // The build keys records had when `content` (Revision::content) was recorded converged, by
  // "Kind/name", newest first; empty for a content never applied in full.
  Result<KeptKeys> contentKeys(const std::string& content) const;
  Result<std::optional<RevisionEntry>> lastRevision() const;
  // The artifact digests the records' handles reference now: what garbage collection keeps.
  Result<std::set<std::string>> referencedDigests() const;
  // What garbage collection keeps: referencedDigests() and revisionDigests(lastRevisions).
  Result<std::set<std::string>> artifactRoots(size_t lastRevisions) const;
  // The artifact digests each object ("Build/initrd") referenced when `revision` was last
  // recorded; an error when it never was.
  Result<std::map<std::string, std::set<std::string>>> revisionArtifacts(
      const std::string& revision) const;
  // The digests recorded with the last `lastRevisions` distinct revisions (newest first), so that
  // a rollback to one of them finds its artifacts.
  Result<std::set<std::string>> revisionDigests(size_t lastRevisions) const;

 private:
  explicit Inventory(sqlite3* db) : db_(db) {}
  Result<Records> readRecordsLocked() const;
  Result<std::map<std::string, std::set<std::string>>> digestsByObjectLocked() const;
  Result<std::map<std::string, std::string>> keysByObjectLocked() const;  // "Kind/name" -> key
  Result<KeptKeys> contentKeysLocked(const std::string& content) const;

  sqlite3* db_;
  mutable std::mutex mu_;  // guards db_ and the cache below
  // The cache: null until the first snapshot(). Writes since the last snapshot() are kept in
  // pending_ (nullopt: removed) and merged into a new vector by the next one, so a reconcile that
  // puts many records copies the rest once, not once per put.
  mutable std::shared_ptr<const Records> records_;
  mutable std::map<ObjectId, std::optional<ManagedRecord>> pending_;
};

}  // namespace hyper
