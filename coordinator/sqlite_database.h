// A thin RAII layer over the SQLite C API that reports errors as absl::Status.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace flatfleet::coordinator {

class SqliteStatement {
 public:
  SqliteStatement(SqliteStatement&& other) noexcept;
  SqliteStatement& operator=(SqliteStatement&&) = delete;
  ~SqliteStatement();

  // Parameters are 1-based, as in SQLite.
  SqliteStatement& Bind(int index, int64_t value);
  SqliteStatement& Bind(int index, std::string_view text);
  SqliteStatement& BindNull(int index);

  // True when a row is ready; false when the statement is done.
  absl::StatusOr<bool> Step();
  // Runs a statement that returns no rows.
  absl::Status Run();
  // Clears the result so the statement can run again with new bindings.
  void Reset();

  int64_t ColumnInt(int column) const;
  std::string ColumnText(int column) const;
  bool ColumnIsNull(int column) const;

 private:
  friend class SqliteDatabase;
  SqliteStatement(sqlite3* db, sqlite3_stmt* statement) : db_(db), statement_(statement) {}

  sqlite3* db_;
  sqlite3_stmt* statement_;
};

class SqliteDatabase {
 public:
  static absl::StatusOr<std::unique_ptr<SqliteDatabase>> Open(const std::string& path);
  ~SqliteDatabase();
  SqliteDatabase(const SqliteDatabase&) = delete;
  SqliteDatabase& operator=(const SqliteDatabase&) = delete;

  // Runs one or more statements that return no rows.
  absl::Status Execute(std::string_view sql);
  absl::StatusOr<SqliteStatement> Prepare(std::string_view sql);
  int64_t ChangedRows() const;
  // Rows changed by every statement on this connection since it opened.
  int64_t TotalChangedRows() const;

 private:
  explicit SqliteDatabase(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

// BEGIN IMMEDIATE (takes the write lock up front, so two writers never deadlock upgrading a
// read lock); rolls back on destruction unless committed.
class SqliteTransaction {
 public:
  static absl::StatusOr<SqliteTransaction> Begin(SqliteDatabase* db);
  SqliteTransaction(SqliteTransaction&& other) noexcept
      : db_(other.db_), changes_at_begin_(other.changes_at_begin_) {
    other.db_ = nullptr;
  }
  ~SqliteTransaction();
  // Commits. `*wrote` (when given) says whether the transaction changed any row.
  absl::Status Commit(bool* wrote = nullptr);

 private:
  explicit SqliteTransaction(SqliteDatabase* db)
      : db_(db), changes_at_begin_(db->TotalChangedRows()) {}
  SqliteDatabase* db_;
  int64_t changes_at_begin_;
};

}  // namespace flatfleet::coordinator
