#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <utility>

#include "base/status.h"

namespace hyper::sqlite {

inline Status error(sqlite3* db) {
  return Status::error(std::string("sqlite: ") + sqlite3_errmsg(db));
}

// Runs SQL without parameters (schema, pragmas, transactions).
Status exec(sqlite3* db, const char* sql);

// Runs `body` (returning a Status) as one transaction: `begin` ("BEGIN", or "BEGIN IMMEDIATE" to
// take the write lock up front), then COMMIT; ROLLBACK when the body or the commit fails, and
// that error is returned.
template <typename Body>
Status transaction(sqlite3* db, Body&& body, const char* begin = "BEGIN") {
  HYPER_RETURN_IF_ERROR(exec(db, begin));
  Status done = body();
  if (done.isOk()) {
    done = exec(db, "COMMIT");
  }
  if (!done.isOk()) {
    (void)exec(db, "ROLLBACK");
  }
  return done;
}

// Opens (creating) a database file in WAL mode with a busy timeout, so several connections (the
// inventory's, the event log's, a reading hyperctl) share it.
Result<sqlite3*> openWal(const std::string& path);

// A prepared statement with bound parameters; values never become SQL text.
class Statement {
 public:
  static Result<Statement> prepare(sqlite3* db, const char* sql);
  Statement(Statement&& other) noexcept
      : db_(other.db_), stmt_(std::exchange(other.stmt_, nullptr)), bindRc_(other.bindRc_) {}
  Statement& operator=(Statement&&) = delete;
  Statement(const Statement&) = delete;
  ~Statement() { sqlite3_finalize(stmt_); }

  // Parameters are numbered from 1. A bind error (out of range, out of memory) is reported by
  // the next step().
  Statement& bind(int index, const std::string& value);
  Statement& bind(int index, int64_t value);

  // Makes it ready to run again with new parameters (a batch of inserts prepared once).
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    bindRc_ = SQLITE_OK;
  }

  // true: a row is available; false: done.
  Result<bool> step();
  Status run();

  std::string text(int column) const;
  int64_t integer(int column) const { return sqlite3_column_int64(stmt_, column); }

 private:
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  void note(int rc) {
    if (bindRc_ == SQLITE_OK) {
      bindRc_ = rc;
    }
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_;
  int bindRc_ = SQLITE_OK;
};

}  // namespace hyper::sqlite
