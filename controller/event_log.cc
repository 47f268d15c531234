#include "controller/event_log.h"

#include <chrono>

#include <sodium.h>

#include "reconciler/inventory.h"
#include "reconciler/sqlite.h"

namespace hyper::controller {

namespace {

constexpr const char* kColumns =
    "id, at, type, level, object, revision, reconcile_id, message, details_json";

Event eventFromRow(const sqlite::Statement& st) {
  Event e;
  e.id = st.integer(0);
  e.at = st.integer(1);
  e.type = st.text(2);
  e.level = st.text(3);
  e.object = st.text(4);
  e.revision = st.text(5);
  e.reconcileId = st.text(6);
  e.message = st.text(7);
  // Written by hyper, but the file may be damaged: a bad value becomes null, not a crash.
  e.details = nlohmann::json::parse(st.text(8), nullptr, /*allow_exceptions=*/false);
  if (e.details.is_discarded()) {
    e.details = nullptr;
  }
  return e;
}

}  // namespace

int64_t nowMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string newReconcileId() {
  unsigned char bytes[6];
  randombytes_buf(bytes, sizeof bytes);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 0xf];
  }
  return out;
}

nlohmann::json Event::toJson() const {
  return {{"id", id},
          {"at", at},
          {"type", type},
          {"level", level},
          {"object", object},
          {"revision", revision},
          {"reconcileId", reconcileId},
          {"message", message},
          {"details", details}};
}

Result<std::unique_ptr<EventLog>> EventLog::open(const std::string& stateDir, size_t retain) {
  const std::string context = "event log open " + stateDir;
  // The inventory owns the schema: opening it migrates the database, events table included.
  {
    auto inventory = Inventory::open(stateDir);
    if (!inventory.isOk()) {
      return inventory.status().withContext(context);
    }
  }
  auto db = sqlite::openWal(stateDir + "/state.db");
  if (!db.isOk()) {
    return db.status().withContext(context);
  }
  int64_t lastId = 0;
  {
    auto st = sqlite::Statement::prepare(*db, "SELECT COALESCE(MAX(id), 0) FROM events");
    if (!st.isOk()) {
      sqlite3_close(*db);
      return st.status().withContext(context);
    }
    auto row = st->step();
    if (row.isOk() && *row) {
      lastId = st->integer(0);
    }
  }
  return std::unique_ptr<EventLog>(new EventLog(*db, retain, lastId));
}

EventLog::EventLog(sqlite3* db, size_t retain, int64_t lastId)
    : db_(db), retain_(retain), lastId_(lastId) {}

EventLog::~EventLog() { sqlite3_close_v2(db_); }

Result<Event> EventLog::append(Event event) {
  if (event.at == 0) {
    event.at = nowMillis();
  }
  std::unique_lock<std::mutex> lk(mu_);
  auto st = sqlite::Statement::prepare(
      db_,
      "INSERT INTO events (at, type, level, object, revision, reconcile_id, message, "
      "details_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  if (!st.isOk()) {
    return st.status().withContext("event append");
  }
  st->bind(1, event.at)
      .bind(2, event.type)
      .bind(3, event.level)
      .bind(4, event.object)
      .bind(5, event.revision)
      .bind(6, event.reconcileId)
      .bind(7, event.message)
      .bind(8, event.details.dump());
  HYPER_RETURN_IF_ERROR(st->run().withContext("event append"));
  event.id = sqlite3_last_insert_rowid(db_);
  lastId_ = event.id;
  // Keep the newest `retain_` rows; ids only grow, so one range delete does it.
  if (event.id % 256 == 0 && event.id > static_cast<int64_t>(retain_)) {
    auto trim = sqlite::Statement::prepare(db_, "DELETE FROM events WHERE id <= ?1");
    if (trim.isOk()) {
      (void)trim->bind(1, event.id - static_cast<int64_t>(retain_)).run();
    }
  }
  lk.unlock();
  cv_.notify_all();
  return event;
}

Result<std::vector<Event>> EventLog::query(const char* sql, int64_t a, int64_t b) const {
  std::lock_guard<std::mutex> lk(mu_);
  HYPER_ASSIGN_OR_RETURN(auto st, sqlite::Statement::prepare(db_, sql));
  st.bind(1, a).bind(2, b);
  std::vector<Event> out;
  while (true) {
    HYPER_ASSIGN_OR_RETURN(bool row, st.step());
    if (!row) {
      break;
    }
    out.push_back(eventFromRow(st));
  }
  return out;
}

Result<std::vector<Event>> EventLog::since(int64_t afterId, size_t limit) const {
  static const std::string sql =
      std::string("SELECT ") + kColumns + " FROM events WHERE id > ?1 ORDER BY id LIMIT ?2";
  return query(sql.c_str(), afterId, static_cast<int64_t>(limit));
}

Result<std::vector<Event>> EventLog::latest(size_t limit) const {
  static const std::string sql =
      std::string("SELECT * FROM (SELECT ") + kColumns +
      " FROM events WHERE id > ?1 ORDER BY id DESC LIMIT ?2) ORDER BY id";
  return query(sql.c_str(), 0, static_cast<int64_t>(limit));
}

int64_t EventLog::waitNewer(int64_t afterId, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait_for(lk, timeout, [&] { return closed_ || lastId_ > afterId; });
  return lastId_;
}

void EventLog::close() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    closed_ = true;
  }
  cv_.notify_all();
}

}  // namespace hyper::controller
