#include "reconciler/sqlite.h"

namespace hyper::sqlite {

Status exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    Status s = Status::error(std::string("sqlite: ") + (err ? err : sqlite3_errmsg(db)));
    sqlite3_free(err);
    return s;
  }
  return Status::ok();
}

Result<sqlite3*> openWal(const std::string& path) {
  sqlite3* db = nullptr;
  // NOMUTEX: each owner serialises the use of its connection with its own mutex.
  int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    Status s =
        Status::error(std::string("sqlite: ") + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
    sqlite3_close(db);
    return s;
  }
  // Another process (hyperctl get while hyperd writes) may hold the write lock briefly: wait for
  // it rather than fail.
  sqlite3_busy_timeout(db, 5000);
  // WAL: readers do not block the writer; synchronous=NORMAL is durable across process crashes
  // in WAL mode, and the journal makes a lost last transaction after a power cut recoverable.
  for (const char* pragma :
       {"PRAGMA journal_mode = WAL", "PRAGMA synchronous = NORMAL", "PRAGMA foreign_keys = ON"}) {
    Status s = exec(db, pragma);
    if (!s.isOk()) {
      sqlite3_close(db);
      return s;
    }
  }
  return db;
}

Result<Statement> Statement::prepare(sqlite3* db, const char* sql) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) != SQLITE_OK) {
    return error(db);
  }
  return Statement(db, stmt);
}

Statement& Statement::bind(int index, const std::string& value) {
  note(sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()),
                         SQLITE_TRANSIENT));
  return *this;
}

Statement& Statement::bind(int index, int64_t value) {
  note(sqlite3_bind_int64(stmt_, index, value));
  return *this;
}

Result<bool> Statement::step() {
  if (bindRc_ != SQLITE_OK) {
    return Status::error(std::string("sqlite: bind: ") + sqlite3_errstr(bindRc_));
  }
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) {
    return true;
  }
  if (rc == SQLITE_DONE) {
    return false;
  }
  return error(db_);
}

Status Statement::run() {
  auto r = step();
  return r.isOk() ? Status::ok() : r.status();
}

std::string Statement::text(int column) const {
  const auto* p = sqlite3_column_text(stmt_, column);
  int n = sqlite3_column_bytes(stmt_, column);
  return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
}

}  // namespace hyper::sqlite
