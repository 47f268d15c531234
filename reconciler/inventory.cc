#include "reconciler/inventory.h"

#include <cctype>
#include <set>

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <iterator>
#include <utility>

#include "base/clock.h"
#include "base/sha256.h"
#include "reconciler/sqlite.h"
#include "reconciler/state_dir.h"

namespace hyper {

namespace {

// Schema migrations: kMigrations[i] takes user_version i to i + 1. Append only; a released
// migration is never edited, because databases in the field already ran it.
constexpr const char* kMigrations[] = {
    // 1: inventory, action journal, revision history.
    R"sql(
CREATE TABLE objects (
  kind TEXT NOT NULL,
  name TEXT NOT NULL,
  provider TEXT NOT NULL,
  labels_json TEXT NOT NULL,
  spec_json TEXT NOT NULL,
  spec_hash TEXT NOT NULL,
  handles_json TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  revision TEXT NOT NULL,
  applied_at INTEGER NOT NULL,
  PRIMARY KEY (kind, name)
);
CREATE TABLE journal (
  id INTEGER PRIMARY KEY,
  reconcile_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  name TEXT NOT NULL,
  action TEXT NOT NULL,
  phase TEXT NOT NULL,
  detail TEXT NOT NULL DEFAULT '',
  started_at INTEGER NOT NULL,
  finished_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX journal_by_phase ON journal (phase);
CREATE TABLE revisions (
  id INTEGER PRIMARY KEY,
  revision TEXT NOT NULL,
  plan_hash TEXT NOT NULL,
  result TEXT NOT NULL,
  at INTEGER NOT NULL
);
)sql",
    // 2: events (hyperd's reconcile results, drift, rejected revisions), newest kept.
    R"sql(
CREATE TABLE events (
  id INTEGER PRIMARY KEY,
  at INTEGER NOT NULL,
  type TEXT NOT NULL,
  level TEXT NOT NULL,
  object TEXT NOT NULL,
  revision TEXT NOT NULL,
  reconcile_id TEXT NOT NULL,
  message TEXT NOT NULL,
  details_json TEXT NOT NULL
);
)sql",
    // 3: the spec a create was started with, so that an object whose create never completed
    // (killed, or failed part-way) can still be deleted by a prune (Inventory::unconfirmed).
    R"sql(
ALTER TABLE journal ADD COLUMN spec_json TEXT NOT NULL DEFAULT '';
CREATE INDEX journal_by_object ON journal (kind, name, id);
CREATE INDEX journal_creates_unconfirmed ON journal (kind, name)
  WHERE action = 'create' AND phase != 'succeeded';
)sql",
    // 4: the artifact digests the inventory referenced when a revision was recorded, so that
    // garbage collection keeps what the last revisions used (a rollback finds it in the store).
    R"sql(
ALTER TABLE revisions ADD COLUMN artifacts_json TEXT NOT NULL DEFAULT '{}';
CREATE INDEX objects_with_artifacts ON objects (kind, name)
  WHERE instr(handles_json, 'sha256:') > 0;
)sql",
    // 5: the build keys each content was applied with, so that applying that content again (a
    // revert, an old commit) takes the same artifacts (Inventory::contentKeys).
    R"sql(
ALTER TABLE revisions ADD COLUMN content TEXT NOT NULL DEFAULT '';
CREATE TABLE content_keys (
  content TEXT NOT NULL,
  object TEXT NOT NULL,
  key TEXT NOT NULL,
  seq INTEGER NOT NULL,
  PRIMARY KEY (content, object, key)
) WITHOUT ROWID;
)sql",
};
constexpr int kSchemaVersion = static_cast<int>(std::size(kMigrations));

using sqlite::exec;
using sqlite::Statement;

// Rows are written by hyper, but the file is on disk and may be damaged or edited: a value that
// does not parse is an error, not a crash.
Result<Json> parseColumn(const std::string& text, const char* column) {
  Json v = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (v.is_discarded()) {
    return Status::error(std::string("column ") + column + " is not valid JSON");
  }
  return v;
}

constexpr const char* kObjectColumns =
    "kind, name, provider, labels_json, spec_json, spec_hash, handles_json, fingerprint, "
    "revision, applied_at";

Result<ManagedRecord> recordFromRow(const Statement& st) {
  ManagedRecord r;
  r.id = {st.text(0), st.text(1)};
  r.provider = st.text(2);
  HYPER_ASSIGN_OR_RETURN(Json labels, parseColumn(st.text(3), "labels_json"));
  if (!labels.is_object()) {
    return Status::error("column labels_json is not an object");
  }
  for (auto it = labels.begin(); it != labels.end(); ++it) {
    if (!it->is_string()) {
      return Status::error("column labels_json: label " + it.key() + " is not a string");
    }
    r.labels[it.key()] = it->get<std::string>();
  }
  HYPER_ASSIGN_OR_RETURN(r.spec, parseColumn(st.text(4), "spec_json"));
  // Records written before spec.driftPolicy became the envelope's (kEnvelopeSpecField) hold it in
  // the spec; a provider comparing its last applied spec would see a change that is none.
  if (r.spec->is_object()) {
    r.spec.mut().erase(kEnvelopeSpecField);
  }
  r.specHash = st.text(5);
  HYPER_ASSIGN_OR_RETURN(r.handles, parseColumn(st.text(6), "handles_json"));
  r.fingerprint = st.text(7);
  r.revision = st.text(8);
  r.appliedAt = st.integer(9);
  return r;
}

JournalEntry journalFromRow(const Statement& st) {
  JournalEntry e;
  e.id = st.integer(0);
  e.reconcileId = st.text(1);
  e.object = {st.text(2), st.text(3)};
  e.action = st.text(4);
  e.phase = st.text(5);
  e.detail = st.text(6);
  e.startedAt = st.integer(7);
  e.finishedAt = st.integer(8);
  return e;
}

constexpr const char* kJournalColumns =
    "id, reconcile_id, kind, name, action, phase, detail, started_at, finished_at";

Result<std::vector<JournalEntry>> queryJournal(sqlite3* db, const std::string& sql,
                                               std::optional<int64_t> limit) {
  HYPER_ASSIGN_OR_RETURN(Statement st, Statement::prepare(db, sql.c_str()));
  if (limit) {
    st.bind(1, *limit);
  }
  std::vector<JournalEntry> out;
  while (true) {
    HYPER_ASSIGN_OR_RETURN(bool row, st.step());
    if (!row) {
      break;
    }
    out.push_back(journalFromRow(st));
  }
  return out;
}

Result<int64_t> userVersion(sqlite3* db) {
  HYPER_ASSIGN_OR_RETURN(Statement st, Statement::prepare(db, "PRAGMA user_version"));
  HYPER_ASSIGN_OR_RETURN(bool row, st.step());
  return row ? st.integer(0) : 0;
}

Status migrateLocked(sqlite3* db) {
  HYPER_ASSIGN_OR_RETURN(int64_t version, userVersion(db));
  if (version > kSchemaVersion) {
    return Status::error("state database has schema version " + std::to_string(version) +
                         ", newer than this hyper understands (" + std::to_string(kSchemaVersion) +
                         "); upgrade hyper");
  }
  for (int64_t v = version; v < kSchemaVersion; ++v) {
    HYPER_RETURN_IF_ERROR(
        exec(db, kMigrations[v]).withContext("migrate to schema version " + std::to_string(v + 1)));
  }
  if (version != kSchemaVersion) {
    // PRAGMA takes no bound parameters; the value is our own constant.
    std::string set = "PRAGMA user_version = " + std::to_string(kSchemaVersion);
    HYPER_RETURN_IF_ERROR(exec(db, set.c_str()));
  }
  return Status::ok();
}

// The whole migration is one transaction, taken for writing up front so that two processes
// opening a fresh database cannot both create the tables.
Status migrate(sqlite3* db) {
  return sqlite::transaction(
      db, [&] { return migrateLocked(db); }, "BEGIN IMMEDIATE");
}

}  // namespace

Result<std::unique_ptr<Inventory>> Inventory::open(const std::string& stateDir) {
  const std::string path = stateDir + "/state.db";
  const std::string context = "inventory open " + path;
  HYPER_RETURN_IF_ERROR(ensureStateDirectory(stateDir).withContext(context));

  auto opened = sqlite::openWal(path);
  if (!opened.isOk()) {
    return opened.status().withContext(context);
  }
  sqlite3* db = *opened;
  // Owned from here on: every error below closes the connection.
  std::unique_ptr<Inventory> inventory(new Inventory(db));
  HYPER_RETURN_IF_ERROR(migrate(db).withContext(context));
  return inventory;
}

Inventory::~Inventory() { sqlite3_close_v2(db_); }

Result<Inventory::Records> Inventory::readRecordsLocked() const {
  const std::string context = "inventory list";
  std::string sql = std::string("SELECT ") + kObjectColumns + " FROM objects ORDER BY kind, name";
  auto st = Statement::prepare(db_, sql.c_str());
  if (!st.isOk()) {
    return st.status().withContext(context);
  }
  std::vector<ManagedRecord> out;
  while (true) {
    auto row = st->step();
    if (!row.isOk()) {
      return row.status().withContext(context);
    }
    if (!*row) {
      break;
    }
    auto record = recordFromRow(*st);
    if (!record.isOk()) {
      return record.status().withContext(context + " <- row " + st->text(0) + "/" + st->text(1));
    }
    out.push_back(std::move(record).value());
  }
  // SQLite's BINARY collation orders like std::string; sorting again only guards the invariant.
  auto byId = [](const ManagedRecord& a, const ManagedRecord& b) { return a.id < b.id; };
  if (!std::is_sorted(out.begin(), out.end(), byId)) {
    std::sort(out.begin(), out.end(), byId);
  }
  return Records(std::move(out));
}

Result<std::shared_ptr<const Inventory::Records>> Inventory::snapshot() const {
  std::lock_guard<std::mutex> lk(mu_);
  if (!records_) {
    HYPER_ASSIGN_OR_RETURN(Records read, readRecordsLocked());
    records_ = std::make_shared<const Records>(std::move(read));
    pending_.clear();
    return records_;
  }
  if (pending_.empty()) {
    return records_;
  }
  // Merge two sorted sequences: the previous snapshot, which others may still hold and so is
  // copied, and the writes since, which are moved.
  std::vector<RecordList::Item> next;
  next.reserve(records_->size() + pending_.size());
  const std::vector<RecordList::Item>& previous = records_->items();
  auto old = previous.begin();
  for (auto& [id, written] : pending_) {
    for (; old != previous.end() && (*old)->id < id; ++old) {
      next.push_back(*old);
    }
    if (old != previous.end() && (*old)->id == id) {
      ++old;  // replaced or removed
    }
    if (written) {
      next.push_back(std::make_shared<const ManagedRecord>(std::move(*written)));
    }
  }
  next.insert(next.end(), old, previous.end());
  pending_.clear();
  records_ = std::make_shared<const Records>(std::move(next));
  return records_;
}

Result<std::vector<ManagedRecord>> Inventory::list() const {
  HYPER_ASSIGN_OR_RETURN(std::shared_ptr<const Records> records, snapshot());
  return (*records).copy();
}

Result<std::optional<ManagedRecord>> Inventory::get(const ObjectId& id) const {
  std::lock_guard<std::mutex> lk(mu_);
  const std::string context = "inventory get " + id.str();
  std::string sql =
      std::string("SELECT ") + kObjectColumns + " FROM objects WHERE kind = ?1 AND name = ?2";
  auto st = Statement::prepare(db_, sql.c_str());
  if (!st.isOk()) {
    return st.status().withContext(context);
  }
  st->bind(1, id.kind).bind(2, id.name);
  auto row = st->step();
  if (!row.isOk()) {
    return row.status().withContext(context);
  }
  if (!*row) {
    return std::optional<ManagedRecord>();
  }
  auto record = recordFromRow(*st);
  if (!record.isOk()) {
    return record.status().withContext(context);
  }
  return std::optional<ManagedRecord>(std::move(record).value());
}

namespace {
// The item an error of a many-item write names (`item()`, made only for an error); a one-item
// write names it in its context already.
template <typename Item>
Status naming(Status s, size_t items, Item&& item) {
  return s.isOk() || items == 1 ? s : s.withContext(item());
}
}  // namespace

Status Inventory::put(const ManagedRecord& record) {
  return write({RecordWrite{record.id, record}});
}

Status Inventory::remove(const ObjectId& id) {
  // Removing an absent object is not an error: deletes are idempotent.
  return write({RecordWrite{id, std::nullopt}});
}

Status Inventory::write(const std::vector<RecordWrite>& writes) {
  if (writes.empty()) {
    return Status::ok();
  }
  std::lock_guard<std::mutex> lk(mu_);
  const std::string context =
      writes.size() == 1 ? std::string(writes[0].record ? "inventory put " : "inventory remove ") +
                               writes[0].id.str()
                         : "inventory write of " + std::to_string(writes.size()) + " records";
  Status written = sqlite::transaction(db_, [&]() -> Status {
    std::optional<Statement> insert;
    std::optional<Statement> erase;
    for (const RecordWrite& w : writes) {
      auto what = [&] { return std::string(w.record ? "put " : "remove ") + w.id.str(); };
      if (!w.record) {
        if (!erase) {
          auto st = Statement::prepare(db_, "DELETE FROM objects WHERE kind = ?1 AND name = ?2");
          if (!st.isOk()) {
            return st.status();
          }
          erase.emplace(std::move(st).value());
        }
        erase->reset();
        erase->bind(1, w.id.kind).bind(2, w.id.name);
        HYPER_RETURN_IF_ERROR(naming(erase->run(), writes.size(), what));
        continue;
      }
      if (!insert) {
        std::string sql = std::string("INSERT OR REPLACE INTO objects (") + kObjectColumns +
                          ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
        auto st = Statement::prepare(db_, sql.c_str());
        if (!st.isOk()) {
          return st.status();
        }
        insert.emplace(std::move(st).value());
      }
      const ManagedRecord& record = *w.record;
      Json labels = Json::object();
      for (const auto& [k, v] : record.labels) {
        labels[k] = v;
      }
      insert->reset();
      insert->bind(1, record.id.kind)
          .bind(2, record.id.name)
          .bind(3, record.provider)
          .bind(4, canonicalJson(labels))
          .bind(5, canonicalJson(record.spec))
          .bind(6, record.specHash)
          .bind(7, canonicalJson(record.handles))
          .bind(8, record.fingerprint)
          .bind(9, record.revision)
          .bind(10, record.appliedAt);
      HYPER_RETURN_IF_ERROR(naming(insert->run(), writes.size(), what));
    }
    return Status::ok();
  });
  HYPER_RETURN_IF_ERROR(written.withContext(context));
  if (records_) {
    for (const RecordWrite& w : writes) {
      pending_.insert_or_assign(w.id, w.record);
    }
  }
  return Status::ok();
}

Result<int64_t> Inventory::journalBegin(const std::string& reconcileId, const PlanAction& action,
                                        const Json* spec) {
  HYPER_ASSIGN_OR_RETURN(std::vector<int64_t> ids,
                         journalBeginAll(reconcileId, {JournalStart{&action, spec}}));
  return ids.at(0);
}

Result<std::vector<int64_t>> Inventory::journalBeginAll(const std::string& reconcileId,
                                                        const std::vector<JournalStart>& starts) {
  std::vector<int64_t> ids;
  if (starts.empty()) {
    return ids;
  }
  std::lock_guard<std::mutex> lk(mu_);
  auto describe = [](const PlanAction& action) {
    return std::string(actionTypeName(action.type)) + " " + action.id.str();
  };
  const std::string context =
      starts.size() == 1 ? "inventory journal " + describe(*starts[0].action)
                         : "inventory journal of " + std::to_string(starts.size()) + " actions";
  const int64_t now = nowSeconds();
  Status begun = sqlite::transaction(db_, [&]() -> Status {
    auto st = Statement::prepare(
        db_,
        "INSERT INTO journal (reconcile_id, kind, name, action, phase, started_at, spec_json) "
        "VALUES (?1, ?2, ?3, ?4, 'started', ?5, ?6)");
    if (!st.isOk()) {
      return st.status();
    }
    for (const JournalStart& start : starts) {
      const PlanAction& action = *start.action;
      const bool keepSpec = action.type == ActionType::Create && start.spec != nullptr;
      st->reset();
      st->bind(1, reconcileId)
          .bind(2, action.id.kind)
          .bind(3, action.id.name)
          .bind(4, std::string(actionTypeName(action.type)))
          .bind(5, now)
          .bind(6, keepSpec ? canonicalJson(*start.spec) : std::string());
      HYPER_RETURN_IF_ERROR(naming(st->run(), starts.size(), [&] { return describe(action); }));
      ids.push_back(static_cast<int64_t>(sqlite3_last_insert_rowid(db_)));
    }
    return Status::ok();
  });
  HYPER_RETURN_IF_ERROR(begun.withContext(context));
  return ids;
}

Status Inventory::journalEnd(int64_t entryId, bool succeeded, const std::string& detail) {
  return journalEndAll({JournalOutcome{entryId, succeeded, detail}});
}

Status Inventory::journalEndAll(const std::vector<JournalOutcome>& outcomes) {
  if (outcomes.empty()) {
    return Status::ok();
  }
  std::lock_guard<std::mutex> lk(mu_);
  const std::string context =
      outcomes.size() == 1
          ? "inventory journal end #" + std::to_string(outcomes[0].entryId)
          : "inventory journal end of " + std::to_string(outcomes.size()) + " entries";
  const int64_t now = nowSeconds();
  return sqlite::transaction(
             db_,
             [&]() -> Status {
               auto st = Statement::prepare(
                   db_,
                   "UPDATE journal SET phase = ?1, detail = ?2, finished_at = ?3 WHERE id = ?4");
               if (!st.isOk()) {
                 return st.status();
               }
               for (const JournalOutcome& o : outcomes) {
                 auto what = [&] { return "#" + std::to_string(o.entryId); };
                 st->reset();
                 st->bind(1, std::string(o.succeeded ? "succeeded" : "failed"))
                     .bind(2, o.detail)
                     .bind(3, now)
                     .bind(4, o.entryId);
                 HYPER_RETURN_IF_ERROR(naming(st->run(), outcomes.size(), what));
                 if (sqlite3_changes(db_) == 0) {
                   return outcomes.size() == 1 ? Status::error("no such journal entry")
                                               : Status::error("no such journal entry " + what());
                 }
               }
               return Status::ok();
             })
      .withContext(context);
}

Result<std::vector<JournalEntry>> Inventory::unfinishedJournal() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::string sql = std::string("SELECT ") + kJournalColumns +
                    " FROM journal WHERE phase = 'started' ORDER BY id";
  auto r = queryJournal(db_, sql, std::nullopt);
  if (!r.isOk()) {
    return r.status().withContext("inventory unfinished journal");
  }
  return r;
}

Result<RecordList> Inventory::unconfirmed() const {
  std::lock_guard<std::mutex> lk(mu_);
  // The partial index holds only the creates that did not succeed, and the one on (kind, name,
  // id) finds each one's newest entry: hyperd runs this every reconcile, and a journal of 100k
  // entries with 200 failed creates costs some 0.3 ms (6 ms through the phase index alone).
  auto st = Statement::prepare(db_,
                               "SELECT j.kind, j.name, j.spec_json FROM journal j "
                               "WHERE j.action = 'create' AND j.phase != 'succeeded' "
                               "AND j.id = (SELECT MAX(k.id) FROM journal k "
                               "            WHERE k.kind = j.kind AND k.name = j.name) "
                               "AND NOT EXISTS (SELECT 1 FROM objects o "
                               "                WHERE o.kind = j.kind AND o.name = j.name) "
                               "ORDER BY j.kind, j.name");
  if (!st.isOk()) {
    return st.status().withContext("inventory unconfirmed creates");
  }
  std::vector<ManagedRecord> out;
  while (true) {
    HYPER_ASSIGN_OR_RETURN(bool row, st->step());
    if (!row) {
      break;
    }
    ManagedRecord r;
    r.id = {st->text(0), st->text(1)};
    // An entry written before the spec was kept, or a damaged one: the provider then falls back
    // to the names it derives from the object's name.
    Json spec = Json::parse(st->text(2), nullptr, /*allow_exceptions=*/false);
    r.spec = spec.is_object() ? std::move(spec) : Json::object();
    r.handles = Json::object();
    r.fingerprint = kUnconfirmed;
    out.push_back(std::move(r));
  }
  return RecordList(std::move(out));
}

Result<std::vector<JournalEntry>> Inventory::closeInterrupted() {
  HYPER_ASSIGN_OR_RETURN(std::vector<JournalEntry> unfinished, unfinishedJournal());
  for (const auto& entry : unfinished) {
    HYPER_RETURN_IF_ERROR(journalEnd(entry.id, false, kInterrupted));
  }
  return unfinished;
}

Result<std::vector<JournalEntry>> Inventory::journal(int limit) const {
  std::lock_guard<std::mutex> lk(mu_);
  std::string sql =
      std::string("SELECT ") + kJournalColumns + " FROM journal ORDER BY id DESC LIMIT ?1";
  // A negative LIMIT means "no limit" to SQLite, which is what a negative argument should mean.
  auto r = queryJournal(db_, sql, limit < 0 ? int64_t{-1} : int64_t{limit});
  if (!r.isOk()) {
    return r.status().withContext("inventory journal");
  }
  return r;
}

// Every "sha256:<64 hex>" in `text`.
static void findDigests(std::string_view text, std::set<std::string>& out) {
  static constexpr std::string_view kPrefix = "sha256:";
  for (size_t at = text.find(kPrefix); at != std::string_view::npos;
       at = text.find(kPrefix, at + 1)) {
    bool ok = isSha256Hex(text.substr(at + kPrefix.size(), 64));
    // Exactly 64: a longer run of hex is something else.
    size_t end = at + kPrefix.size() + 64;
    if (ok && end < text.size() && std::isxdigit(static_cast<unsigned char>(text[end]))) {
      ok = false;
    }
    if (ok) {
      out.insert(std::string(text.substr(at, kPrefix.size() + 64)));
    }
  }
}

// The partial index objects_with_artifacts holds only the rows whose handles name a digest, so
// this reads those and not the whole table (hyper_bench: a scan of 10,000 rows doubled the empty
// apply hyperd runs after every reconcile). The WHERE term must stay the index's, word for word.
Result<std::map<std::string, std::set<std::string>>> Inventory::digestsByObjectLocked() const {
  auto st = Statement::prepare(db_,
                               "SELECT kind, name, handles_json FROM objects WHERE "
                               "instr(handles_json, 'sha256:') > 0");
  if (!st.isOk()) {
    return st.status();
  }
  std::map<std::string, std::set<std::string>> out;
  for (;;) {
    HYPER_ASSIGN_OR_RETURN(bool row, st->step());
    if (!row) {
      break;
    }
    std::set<std::string> digests;
    findDigests(st->text(2), digests);
    if (!digests.empty()) {
      out[st->text(0) + "/" + st->text(1)] = std::move(digests);
    }
  }
  return out;
}

Result<std::set<std::string>> Inventory::referencedDigests() const {
  std::lock_guard<std::mutex> lk(mu_);
  auto r = digestsByObjectLocked();
  if (!r.isOk()) {
    return r.status().withContext("inventory artifact digests");
  }
  std::set<std::string> out;
  for (const auto& [object, digests] : *r) {
    out.insert(digests.begin(), digests.end());
  }
  return out;
}

Result<std::set<std::string>> Inventory::artifactRoots(size_t lastRevisions) const {
  HYPER_ASSIGN_OR_RETURN(std::set<std::string> roots, referencedDigests());
  HYPER_ASSIGN_OR_RETURN(std::set<std::string> recent, revisionDigests(lastRevisions));
  roots.insert(recent.begin(), recent.end());
  return roots;
}

Result<std::map<std::string, std::set<std::string>>> Inventory::revisionArtifacts(
    const std::string& revision) const {
  std::lock_guard<std::mutex> lk(mu_);
  const std::string context = "inventory artifacts of revision " + revision;
  auto st = Statement::prepare(
      db_, "SELECT artifacts_json FROM revisions WHERE revision = ?1 ORDER BY id DESC LIMIT 1");
  if (!st.isOk()) {
    return st.status().withContext(context);
  }
  st->bind(1, revision);
  auto row = st->step();
  if (!row.isOk()) {
    return row.status().withContext(context);
  }
  if (!*row) {
    return Status::error(context + ": no such revision was applied with this state dir");
  }
  HYPER_ASSIGN_OR_RETURN(Json j, parseColumn(st->text(0), "artifacts_json"));
  std::map<std::string, std::set<std::string>> out;
  if (j.is_object()) {
    for (const auto& [object, digests] : j.items()) {
      findDigests(digests.dump(), out[object]);
    }
  }
  return out;
}

Result<std::set<std::string>> Inventory::revisionDigests(size_t lastRevisions) const {
  std::lock_guard<std::mutex> lk(mu_);
  const std::string context = "inventory artifact digests of the last revisions";
  auto st =
      Statement::prepare(db_, "SELECT revision, artifacts_json FROM revisions ORDER BY id DESC");
  if (!st.isOk()) {
    return st.status().withContext(context);
  }
  std::set<std::string> revisions;
  std::set<std::string> out;
  for (;;) {
    auto row = st->step();
    if (!row.isOk()) {
      return row.status().withContext(context);
    }
    if (!*row) {
      break;
    }
    // Every record of the newest revisions (hyperd records one per reconcile that applied).
    std::string revision = st->text(0);
    if (revisions.count(revision) == 0 && revisions.size() >= lastRevisions) {
      break;
    }
    revisions.insert(revision);
    findDigests(st->text(1), out);
  }
  return out;
}

Status Inventory::recordRevision(const RevisionEntry& entry) {
  std::lock_guard<std::mutex> lk(mu_);
  const std::string context = "inventory record revision " + entry.revision;
  auto digests = digestsByObjectLocked();
  if (!digests.isOk()) {
    return digests.status().withContext(context);
  }
  Json artifacts = Json::object();
  for (const auto& [object, set] : *digests) {
    artifacts[object] = set;
  }
  auto st = Statement::prepare(db_,
                               "INSERT INTO revisions (revision, plan_hash, result, at, "
                               "artifacts_json, content) VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
  if (!st.isOk()) {
    return st.status().withContext(context);
  }
  st->bind(1, entry.revision)
      .bind(2, entry.planHash)
      .bind(3, entry.result)
      .bind(4, entry.at)
      .bind(5, artifacts.dump())
      .bind(6, entry.content);
  HYPER_RETURN_IF_ERROR(st->run().withContext(context));
  if (!entry.converged || entry.content.empty()) {
    return Status::ok();
  }
  // The content's build keys: only those it does not have yet are written, so that hyperd's
  // converged reconciles (every one of them records) write nothing.
  const int64_t seq = sqlite3_last_insert_rowid(db_);
  auto keys = keysByObjectLocked();
  if (!keys.isOk()) {
    return keys.status().withContext(context);
  }
  auto known = contentKeysLocked(entry.content);
  if (!known.isOk()) {
    return known.status().withContext(context);
  }
  std::vector<std::pair<std::string, std::string>> fresh;
  for (const auto& [object, key] : *keys) {
    auto it = known->find(object);
    if (it == known->end() ||
        std::find(it->second.begin(), it->second.end(), key) == it->second.end()) {
      fresh.emplace_back(object, key);
    }
  }
  if (fresh.empty()) {
    return Status::ok();
  }
  return sqlite::transaction(
             db_,
             [&]() -> Status {
               auto insert = Statement::prepare(db_,
                                                "INSERT OR REPLACE INTO content_keys (content, "
                                                "object, key, seq) VALUES (?1, ?2, ?3, ?4)");
               if (!insert.isOk()) {
                 return insert.status();
               }
               for (const auto& [object, key] : fresh) {
                 insert->reset();
                 insert->bind(1, entry.content).bind(2, object).bind(3, key).bind(4, seq);
                 HYPER_RETURN_IF_ERROR(insert->run());
               }
               return Status::ok();
             })
      .withContext(context);
}

Result<std::map<std::string, std::string>> Inventory::keysByObjectLocked() const {
  auto st = Statement::prepare(db_,
                               "SELECT kind, name, handles_json FROM objects WHERE "
                               "instr(handles_json, 'sha256:') > 0");
  if (!st.isOk()) {
    return st.status();
  }
  std::map<std::string, std::string> out;
  for (;;) {
    HYPER_ASSIGN_OR_RETURN(bool row, st->step());
    if (!row) {
      break;
    }
    Json handles = Json::parse(st->text(2), nullptr, /*allow_exceptions=*/false);
    if (!handles.is_object() || !handles.contains("key") || !handles["key"].is_string()) {
      continue;
    }
    const std::string key = handles["key"];
    if (key.size() == 64 && std::all_of(key.begin(), key.end(), [](char c) {
          return std::isxdigit(static_cast<unsigned char>(c)) != 0;
        })) {
      out[st->text(0) + "/" + st->text(1)] = key;
    }
  }
  return out;
}

Result<KeptKeys> Inventory::contentKeysLocked(const std::string& content) const {
  auto st = Statement::prepare(
      db_, "SELECT object, key FROM content_keys WHERE content = ?1 ORDER BY object, seq DESC");
  if (!st.isOk()) {
    return st.status();
  }
  st->bind(1, content);
  KeptKeys out;
  for (;;) {
    HYPER_ASSIGN_OR_RETURN(bool row, st->step());
    if (!row) {
      break;
    }
    out[st->text(0)].push_back(st->text(1));
  }
  return out;
}

Result<KeptKeys> Inventory::contentKeys(const std::string& content) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto keys = contentKeysLocked(content);
  if (!keys.isOk()) {
    return keys.status().withContext("inventory build keys of content " + content);
  }
  return keys;
}

Result<std::optional<RevisionEntry>> Inventory::lastRevision() const {
  std::lock_guard<std::mutex> lk(mu_);
  const std::string context = "inventory last revision";
  auto st = Statement::prepare(
      db_, "SELECT revision, plan_hash, result, at FROM revisions ORDER BY id DESC LIMIT 1");
  if (!st.isOk()) {
    return st.status().withContext(context);
  }
  auto row = st->step();
  if (!row.isOk()) {
    return row.status().withContext(context);
  }
  if (!*row) {
    return std::optional<RevisionEntry>();
  }
  RevisionEntry e;
  e.revision = st->text(0);
  e.planHash = st->text(1);
  e.result = st->text(2);
  e.at = st->integer(3);
  return std::optional<RevisionEntry>(std::move(e));
}

}  // namespace hyper
