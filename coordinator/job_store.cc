#include "coordinator/job_store.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "coordinator/batch_output_line.h"
#include "coordinator/random_id.h"
#include "nlohmann/json.hpp"

namespace flatfleet::coordinator {
namespace {

// Schema version 2 (PRAGMA user_version). Version 0 had no jobs.error / jobs.invalid_lines
// and required requests.custom_id; MigrateToVersion1 upgrades such a file in place. Version 1
// had no jobs.idempotency_key; MigrateToVersion2 adds it.
constexpr int kSchemaVersion = 2;

constexpr std::string_view kJobsTable = R"sql(
CREATE TABLE IF NOT EXISTS jobs (
  position INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  model TEXT NOT NULL,
  state TEXT NOT NULL,
  options TEXT NOT NULL,
  max_attempts INTEGER NOT NULL CHECK (max_attempts >= 1),
  next_sequence INTEGER NOT NULL DEFAULT 0,
  created_at_ms INTEGER NOT NULL,
  updated_at_ms INTEGER NOT NULL,
  error TEXT,
  invalid_lines INTEGER NOT NULL DEFAULT 0,
  idempotency_key TEXT
);
)sql";

// One batch per client-chosen key (NULL keys repeat freely).
constexpr std::string_view kIdempotencyIndex =
    "CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_idempotency_key ON jobs (idempotency_key);";

// `custom_id` is NULL for an invalid input line that gave no usable one (SQLite's UNIQUE lets
// NULLs repeat). Invalid lines are stored as failed requests with an empty body.
constexpr std::string_view kRequestsColumns = R"sql( (
  job_id TEXT NOT NULL REFERENCES jobs (id),
  line_number INTEGER NOT NULL,
  custom_id TEXT,
  body TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  lease_owner TEXT,
  lease_expires_ms INTEGER,
  last_error TEXT,
  PRIMARY KEY (job_id, line_number),
  UNIQUE (job_id, custom_id)
) WITHOUT ROWID;
)sql";

constexpr std::string_view kIndexesAndResults = R"sql(
CREATE INDEX IF NOT EXISTS requests_by_state ON requests (state, job_id, line_number);
CREATE TABLE IF NOT EXISTS results (
  job_id TEXT NOT NULL,
  sequence INTEGER NOT NULL,
  line_number INTEGER NOT NULL,
  outcome TEXT NOT NULL,
  output_line TEXT NOT NULL,
  PRIMARY KEY (job_id, sequence),
  UNIQUE (job_id, line_number),
  FOREIGN KEY (job_id, line_number) REFERENCES requests (job_id, line_number)
) WITHOUT ROWID;
)sql";

// Prefixes a status with the operation and job it belongs to.
absl::Status Annotate(const absl::Status& status, std::string_view operation,
                      std::string_view job_id) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(std::string(operation), "(job ",
                                                  std::string(job_id), "): ", status.message()));
}

std::string NewJobId() { return absl::StrCat("batch_", RandomHexId()); }

// The output line of a request that never finished because its job was cancelled.
std::string CancelledLine(std::string_view custom_id) {
  return FormatErrorLine(custom_id, "batch_cancelled",
                         "the batch was cancelled before this request finished");
}

std::string_view OutcomeName(ResultOutcome outcome) {
  return outcome == ResultOutcome::kSucceeded ? "succeeded" : "failed";
}

std::string OptionsToJson(const JobOptions& options) {
  nlohmann::json json = {{"max_attempts", options.max_attempts}, {"metadata", options.metadata}};
  if (!options.endpoint.empty()) json["endpoint"] = options.endpoint;
  if (!options.input_file_id.empty()) json["input_file_id"] = options.input_file_id;
  if (!options.completion_window.empty()) json["completion_window"] = options.completion_window;
  if (options.expires_at_ms > 0) json["expires_at_ms"] = options.expires_at_ms;
  return json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// The state a job moves to given its requests' counts (unchanged when nothing follows).
JobState NextJobState(JobState state, const RequestCounts& counts) {
  const bool running = counts.pending > 0 || counts.in_flight > 0;
  if (state == JobState::kInProgress && !running) return JobState::kCompleted;
  if (state == JobState::kCancelling && counts.in_flight == 0) return JobState::kCancelled;
  return state;
}

std::string RequestsTableSql(std::string_view name) {
  return absl::StrCat("CREATE TABLE IF NOT EXISTS ", std::string(name),
                      std::string(kRequestsColumns));
}

absl::StatusOr<int64_t> ReadInt(SqliteDatabase& db, std::string_view sql) {
  FF_ASSIGN_OR_RETURN(SqliteStatement statement, db.Prepare(sql));
  FF_ASSIGN_OR_RETURN(bool row, statement.Step());
  if (!row) return absl::InternalError(absl::StrCat("no row from ", std::string(sql)));
  return statement.ColumnInt(0);
}

// A version-0 file: adds the jobs columns, and rebuilds requests (SQLite cannot drop a NOT
// NULL constraint in place). Runs inside the caller's transaction with foreign keys off.
absl::Status MigrateToVersion1(SqliteDatabase& db) {
  FF_RETURN_IF_ERROR(
      db.Execute("ALTER TABLE jobs ADD COLUMN error TEXT; "
                 "ALTER TABLE jobs ADD COLUMN invalid_lines INTEGER NOT NULL DEFAULT 0;"));
  FF_RETURN_IF_ERROR(db.Execute(RequestsTableSql("requests_v1")));
  return db.Execute(
      "INSERT INTO requests_v1 SELECT job_id, line_number, custom_id, body, state, attempts, "
      "lease_owner, lease_expires_ms, last_error FROM requests; "
      "DROP TABLE requests; ALTER TABLE requests_v1 RENAME TO requests;");
}

// OK when SQLite's quick_check finds the file sound; else what it found (its first lines).
absl::Status CheckIntegrity(SqliteDatabase& db) {
  constexpr int kProblemsShown = 3;
  FF_ASSIGN_OR_RETURN(SqliteStatement check, db.Prepare("PRAGMA quick_check"));
  std::string problems;
  int count = 0;
  while (true) {
    FF_ASSIGN_OR_RETURN(bool row, check.Step());
    if (!row) break;
    const std::string line = check.ColumnText(0);
    if (line == "ok") continue;
    if (++count <= kProblemsShown) absl::StrAppend(&problems, count > 1 ? "; " : "", line);
  }
  if (count == 0) return absl::OkStatus();
  if (count > kProblemsShown) absl::StrAppend(&problems, "; ...");
  return absl::DataLossError(absl::StrCat("integrity check failed: ", problems));
}

// Creates the schema, or brings an older file up to kSchemaVersion.
absl::Status EnsureSchema(SqliteDatabase& db) {
  FF_ASSIGN_OR_RETURN(int64_t version, ReadInt(db, "PRAGMA user_version"));
  if (version > kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat("the job store has schema version ", version,
                                                      "; this build reads up to ", kSchemaVersion));
  }
  FF_ASSIGN_OR_RETURN(
      int64_t has_requests,
      ReadInt(db, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'requests'"));
  if (version == 0 && has_requests > 0) FF_RETURN_IF_ERROR(MigrateToVersion1(db));
  if (version < 2 && has_requests > 0) {
    FF_RETURN_IF_ERROR(db.Execute("ALTER TABLE jobs ADD COLUMN idempotency_key TEXT;"));
  }
  FF_RETURN_IF_ERROR(db.Execute(kJobsTable));
  FF_RETURN_IF_ERROR(db.Execute(kIdempotencyIndex));
  FF_RETURN_IF_ERROR(db.Execute(RequestsTableSql("requests")));
  FF_RETURN_IF_ERROR(db.Execute(kIndexesAndResults));
  return db.Execute(absl::StrCat("PRAGMA user_version = ", kSchemaVersion));
}

}  // namespace

absl::StatusOr<std::unique_ptr<JobStore>> JobStore::Open(const std::string& path, Options options) {
  const auto annotate = [&](const absl::Status& status) {
    return absl::Status(status.code(),
                        absl::StrCat("JobStore::Open(", path, "): ", status.message()));
  };
  absl::StatusOr<std::unique_ptr<SqliteDatabase>> db = SqliteDatabase::Open(path);
  if (!db.ok()) return annotate(db.status());
  // Foreign keys stay off until the schema is settled: a migration rebuilds a referenced
  // table (and the pragma has no effect inside a transaction).
  const std::string pragmas =
      absl::StrCat("PRAGMA busy_timeout = ", options.busy_timeout_ms,
                   "; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;");
  absl::Status pragmas_set = (*db)->Execute(pragmas);
  if (!pragmas_set.ok() && !absl::IsDataLoss(pragmas_set)) return annotate(pragmas_set);
  if (options.check_integrity || !pragmas_set.ok()) {
    absl::Status status = pragmas_set.ok() ? CheckIntegrity(**db) : pragmas_set;
    if (!status.ok()) {
      return absl::DataLossError(absl::StrCat(
          "the job store ", path, " is damaged (", status.message(),
          "); refusing to serve it. Restore the file from a backup (docs/RELIABILITY.md), or "
          "move it and its -wal file aside to start with an empty store"));
    }
  }

  std::unique_ptr<JobStore> store(new JobStore(*std::move(db), std::move(options)));
  absl::MutexLock lock(&store->mutex_);
  {
    absl::StatusOr<SqliteTransaction> schema = SqliteTransaction::Begin(store->db_.get());
    if (!schema.ok()) return annotate(schema.status());
    if (absl::Status status = EnsureSchema(*store->db_); !status.ok()) return annotate(status);
    if (absl::Status status = schema->Commit(); !status.ok()) return annotate(status);
  }
  if (absl::Status status = store->db_->Execute("PRAGMA foreign_keys = ON;"); !status.ok()) {
    return annotate(status);
  }
  absl::StatusOr<SqliteTransaction> transaction = SqliteTransaction::Begin(store->db_.get());
  if (!transaction.ok()) return annotate(transaction.status());
  absl::StatusOr<RequeueReport> recovered = store->RequeueWhere(
      store->options_.recover_in_flight ? "1" : "0", [](SqliteStatement&) {},
      "coordinator restarted", /*spend_attempt=*/false);
  if (!recovered.ok()) return annotate(recovered.status());
  if (absl::Status status = transaction->Commit(); !status.ok()) return annotate(status);
  store->recovered_on_open_ = recovered->requeued + recovered->cancelled;
  return store;
}

int64_t JobStore::NowMs() const {
  if (options_.clock_ms) return options_.clock_ms();
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

static bool IsStorageFailure(const absl::Status& status) {
  // What SQLite reports for a full disk, an I/O error or a file it cannot write (see
  // sqlite_database.cc); not a request's own error (not found, bad argument, wrong state).
  switch (status.code()) {
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kDataLoss:
      return true;
    default:
      return false;
  }
}

absl::Status JobStore::NoteFailure(const absl::Status& status, std::string_view operation,
                                   std::string_view job_id) {
  absl::Status annotated = Annotate(status, operation, job_id);
  if (IsStorageFailure(status)) {
    {
      absl::MutexLock lock(&health_mutex_);
      last_storage_failure_ = std::string(annotated.message());
      ++storage_failures_;
    }
    if (options_.on_storage_failure) options_.on_storage_failure(operation);
  }
  return annotated;
}

absl::Status JobStore::Committed(SqliteTransaction& transaction) {
  bool wrote = false;
  absl::Status status = transaction.Commit(&wrote);
  // Only a commit that wrote proves the storage works again (an empty claim writes nothing).
  if (status.ok() && wrote) {
    absl::MutexLock lock(&health_mutex_);
    last_storage_failure_.reset();
  }
  return status;
}

std::optional<std::string> JobStore::StorageFailure() const {
  absl::MutexLock lock(&health_mutex_);
  return last_storage_failure_;
}

void JobStore::Checkpoint(std::string_view point) const {
  if (options_.fault_hook) options_.fault_hook(point);
}

absl::StatusOr<JobRecord> JobStore::ReadJob(std::string_view job_id) {
  FF_ASSIGN_OR_RETURN(SqliteStatement job,
                      db_->Prepare("SELECT position, model, state, options, "
                                   "created_at_ms, updated_at_ms, max_attempts, error, "
                                   "invalid_lines FROM jobs WHERE id = ?1"));
  job.Bind(1, job_id);
  FF_ASSIGN_OR_RETURN(bool found, job.Step());
  if (!found) return absl::NotFoundError("no such job");
  JobRecord record;
  record.id = std::string(job_id);
  record.position = job.ColumnInt(0);
  record.options.model = job.ColumnText(1);
  const std::string state = job.ColumnText(2);
  const std::optional<JobState> parsed_state = ParseJobState(state);
  if (!parsed_state) return absl::DataLossError(absl::StrCat("unknown job state '", state, "'"));
  record.state = *parsed_state;
  const nlohmann::json options = nlohmann::json::parse(job.ColumnText(3), nullptr, false);
  if (options.is_object() && options.contains("metadata") && options["metadata"].is_object()) {
    for (const auto& [key, value] : options["metadata"].items()) {
      if (value.is_string()) record.options.metadata[key] = value.get<std::string>();
    }
  }
  if (options.is_object()) {
    const auto text = [&](const char* key) {
      auto it = options.find(key);
      return it != options.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    const auto number = [&](const char* key) {
      auto it = options.find(key);
      return it != options.end() && it->is_number_integer() ? it->get<int64_t>() : int64_t{0};
    };
    record.options.endpoint = text("endpoint");
    record.options.input_file_id = text("input_file_id");
    record.options.completion_window = text("completion_window");
    record.options.expires_at_ms = number("expires_at_ms");
    record.expired_at_ms = number("expired_at_ms");
  }
  record.created_at_ms = job.ColumnInt(4);
  record.updated_at_ms = job.ColumnInt(5);
  record.options.max_attempts = static_cast<int>(job.ColumnInt(6));
  record.error = job.ColumnText(7);
  record.counts.invalid = job.ColumnInt(8);

  // One count per state through the (state, job_id) index: a scan of the job's rows would read
  // every request body.
  FF_ASSIGN_OR_RETURN(
      SqliteStatement counts,
      db_->Prepare("SELECT s.name, (SELECT COUNT(*) FROM requests r "
                   "WHERE r.state = s.name AND r.job_id = ?1) FROM (SELECT 'pending' AS name "
                   "UNION ALL SELECT 'in_flight' UNION ALL SELECT 'succeeded' "
                   "UNION ALL SELECT 'failed' UNION ALL SELECT 'cancelled') s"));
  counts.Bind(1, job_id);
  while (true) {
    FF_ASSIGN_OR_RETURN(bool row, counts.Step());
    if (!row) break;
    const std::string request_state = counts.ColumnText(0);
    const int64_t count = counts.ColumnInt(1);
    record.counts.total += count;
    if (request_state == RequestStateName(RequestState::kPending)) {
      record.counts.pending = count;
    } else if (request_state == RequestStateName(RequestState::kInFlight)) {
      record.counts.in_flight = count;
    } else if (request_state == RequestStateName(RequestState::kSucceeded)) {
      record.counts.completed = count;
    } else if (request_state == RequestStateName(RequestState::kFailed)) {
      record.counts.failed = count;
    } else if (request_state == RequestStateName(RequestState::kCancelled)) {
      record.counts.cancelled = count;
    } else {
      return absl::DataLossError(absl::StrCat("unknown request state '", request_state, "'"));
    }
  }
  return record;
}

absl::Status JobStore::UpdateJobState(std::string_view job_id) {
  // Runs with every result, so it asks the state index only whether work remains, instead of
  // counting every request of the job (quadratic over a large job).
  FF_ASSIGN_OR_RETURN(SqliteStatement read,
                      db_->Prepare("SELECT state, "
                                   "EXISTS (SELECT 1 FROM requests WHERE state = 'pending' "
                                   "AND job_id = ?1), "
                                   "EXISTS (SELECT 1 FROM requests WHERE state = 'in_flight' "
                                   "AND job_id = ?1) FROM jobs WHERE id = ?1"));
  read.Bind(1, job_id);
  FF_ASSIGN_OR_RETURN(bool found, read.Step());
  if (!found) return absl::NotFoundError("no such job");
  const std::string state_name = read.ColumnText(0);
  const std::optional<JobState> state = ParseJobState(state_name);
  if (!state) return absl::DataLossError(absl::StrCat("unknown job state '", state_name, "'"));
  RequestCounts remaining;
  remaining.pending = read.ColumnInt(1);
  remaining.in_flight = read.ColumnInt(2);
  const JobState next = NextJobState(*state, remaining);
  FF_ASSIGN_OR_RETURN(SqliteStatement update,
                      db_->Prepare("UPDATE jobs SET state = ?2, updated_at_ms = ?3 WHERE id = ?1"));
  update.Bind(1, job_id).Bind(2, JobStateName(next)).Bind(3, NowMs());
  return update.Run();
}

absl::StatusOr<int64_t> JobStore::AppendResult(std::string_view job_id, int64_t line_number,
                                               ResultOutcome outcome,
                                               std::string_view output_line) {
  FF_ASSIGN_OR_RETURN(SqliteStatement next, db_->Prepare("UPDATE jobs SET next_sequence = "
                                                         "next_sequence + 1 WHERE id = ?1 "
                                                         "RETURNING next_sequence - 1"));
  next.Bind(1, job_id);
  FF_ASSIGN_OR_RETURN(bool found, next.Step());
  if (!found) return absl::NotFoundError("no such job");
  const int64_t sequence = next.ColumnInt(0);
  FF_RETURN_IF_ERROR(next.Step().status());  // Finishes the UPDATE.
  FF_ASSIGN_OR_RETURN(SqliteStatement insert,
                      db_->Prepare("INSERT INTO results (job_id, sequence, line_number, outcome, "
                                   "output_line) VALUES (?1, ?2, ?3, ?4, ?5)"));
  insert.Bind(1, job_id).Bind(2, sequence).Bind(3, line_number).Bind(4, OutcomeName(outcome));
  insert.Bind(5, output_line);
  FF_RETURN_IF_ERROR(insert.Run());
  return sequence;
}

absl::StatusOr<JobRecord> JobStore::CreateJob(const JobOptions& options,
                                              absl::Span<const BatchRequestLine> requests,
                                              absl::Span<const LineError> invalid_lines) {
  const std::string job_id = NewJobId();
  const auto annotate = [&](const absl::Status& status) {
    return NoteFailure(status, "CreateJob", job_id);
  };
  if (options.model.empty()) return annotate(absl::InvalidArgumentError("model is empty"));
  if (options.max_attempts < 1) {
    return annotate(absl::InvalidArgumentError("max_attempts must be at least 1"));
  }
  if (requests.empty() && invalid_lines.empty()) {
    return annotate(absl::InvalidArgumentError("a job needs requests"));
  }
  // With no valid line there is nothing to run: the job fails as a whole, with its invalid
  // lines' results kept for the client to read.
  const bool all_invalid = requests.empty();
  std::string job_error;
  if (all_invalid) {
    job_error = absl::StrCat("all ", invalid_lines.size(), " request lines are invalid; first: ",
                             DescribeLineError(invalid_lines.front()));
  }

  absl::MutexLock lock(&mutex_);
  absl::StatusOr<SqliteTransaction> transaction = SqliteTransaction::Begin(db_.get());
  if (!transaction.ok()) return annotate(transaction.status());
  const int64_t now = NowMs();
  std::string created_id = job_id;
  absl::Status status = [&]() -> absl::Status {
    if (!options.idempotency_key.empty()) {
      // A retry of a creation that went through: the job it made, not a second one.
      FF_ASSIGN_OR_RETURN(SqliteStatement earlier,
                          db_->Prepare("SELECT id, model FROM jobs WHERE idempotency_key = ?1"));
      earlier.Bind(1, options.idempotency_key);
      FF_ASSIGN_OR_RETURN(bool found, earlier.Step());
      if (found) {
        if (earlier.ColumnText(1) != options.model) {
          return absl::FailedPreconditionError(
              absl::StrCat("idempotency_key '", options.idempotency_key, "' was used by job ",
                           earlier.ColumnText(0), " of model ", earlier.ColumnText(1)));
        }
        created_id = earlier.ColumnText(0);
        return absl::OkStatus();
      }
    }
    FF_ASSIGN_OR_RETURN(SqliteStatement job,
                        db_->Prepare("INSERT INTO jobs (id, model, state, options, max_attempts, "
                                     "created_at_ms, updated_at_ms, error, invalid_lines, "
                                     "idempotency_key) "
                                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8, ?9)"));
    job.Bind(1, job_id).Bind(2, options.model);
    job.Bind(3, JobStateName(all_invalid ? JobState::kFailed : JobState::kInProgress));
    job.Bind(4, OptionsToJson(options)).Bind(5, options.max_attempts).Bind(6, now);
    if (all_invalid) {
      job.Bind(7, job_error);
    } else {
      job.BindNull(7);
    }
    job.Bind(8, static_cast<int64_t>(invalid_lines.size()));
    if (options.idempotency_key.empty()) {
      job.BindNull(9);
    } else {
      job.Bind(9, options.idempotency_key);
    }
    FF_RETURN_IF_ERROR(job.Run());
    FF_ASSIGN_OR_RETURN(SqliteStatement insert,
                        db_->Prepare("INSERT INTO requests (job_id, line_number, custom_id, body, "
                                     "state, last_error) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"));
    const auto inserted = [&](int64_t line_number) -> absl::Status {
      absl::Status run = insert.Run();
      insert.Reset();
      if (run.ok()) return run;
      return absl::Status(run.code(),
                          absl::StrCat("request on line ", line_number, ": ", run.message()));
    };
    for (const BatchRequestLine& request : requests) {
      insert.Bind(1, job_id).Bind(2, request.line_number).Bind(3, request.custom_id);
      insert.Bind(4, request.body_json).Bind(5, RequestStateName(RequestState::kPending));
      insert.BindNull(6);
      FF_RETURN_IF_ERROR(inserted(request.line_number));
    }
    // Invalid lines: failed requests with their error result, first in the output.
    for (const LineError& error : invalid_lines) {
      insert.Bind(1, job_id).Bind(2, error.line_number);
      if (error.custom_id) {
        insert.Bind(3, *error.custom_id);
      } else {
        insert.BindNull(3);
      }
      insert.Bind(4, "").Bind(5, RequestStateName(RequestState::kFailed));
      insert.Bind(6, DescribeLineError(error));
      FF_RETURN_IF_ERROR(inserted(error.line_number));
      FF_RETURN_IF_ERROR(
          AppendResult(job_id, error.line_number, ResultOutcome::kFailed, FormatInvalidLine(error))
              .status());
    }
    Checkpoint("create_job.requests_inserted");
    return Committed(*transaction);
  }();
  if (!status.ok()) return annotate(status);
  absl::StatusOr<JobRecord> record = ReadJob(created_id);
  if (!record.ok()) return annotate(record.status());
  return record;
}

absl::StatusOr<JobRecord> JobStore::GetJob(std::string_view job_id) {
  absl::MutexLock lock(&mutex_);
  absl::StatusOr<JobRecord> record = ReadJob(job_id);
  if (!record.ok()) return NoteFailure(record.status(), "GetJob", job_id);
  return record;
}

absl::StatusOr<std::vector<JobRecord>> JobStore::ListJobs(int limit,
                                                          std::optional<int64_t> before_position) {
  absl::MutexLock lock(&mutex_);
  const auto annotate = [this](const absl::Status& status) {
    return NoteFailure(status, "ListJobs", "*");
  };
  // One read transaction so the page is a consistent snapshot.
  if (absl::Status status = db_->Execute("BEGIN"); !status.ok()) return annotate(status);
  absl::StatusOr<std::vector<JobRecord>> jobs = [&]() -> absl::StatusOr<std::vector<JobRecord>> {
    FF_ASSIGN_OR_RETURN(SqliteStatement list,
                        db_->Prepare("SELECT id FROM jobs WHERE position < ?1 "
                                     "ORDER BY position DESC LIMIT ?2"));
    list.Bind(1, before_position.value_or(std::numeric_limits<int64_t>::max()));
    list.Bind(2, std::max(limit, 0));
    std::vector<std::string> ids;
    while (true) {
      FF_ASSIGN_OR_RETURN(bool row, list.Step());
      if (!row) break;
      ids.push_back(list.ColumnText(0));
    }
    std::vector<JobRecord> records;
    for (const std::string& id : ids) {
      FF_ASSIGN_OR_RETURN(JobRecord record, ReadJob(id));
      records.push_back(std::move(record));
    }
    return records;
  }();
  db_->Execute("COMMIT").IgnoreError();
  if (!jobs.ok()) return annotate(jobs.status());
  return jobs;
}

absl::StatusOr<std::vector<ClaimedRequest>> JobStore::ClaimPending(std::string_view model,
                                                                   int max_requests,
                                                                   std::string_view worker,
                                                                   int64_t lease_ms) {
  const auto annotate = [&](const absl::Status& status) {
    return NoteFailure(status, "ClaimPending", absl::StrCat("* of model ", std::string(model)));
  };
  absl::MutexLock lock(&mutex_);
  absl::StatusOr<SqliteTransaction> transaction = SqliteTransaction::Begin(db_.get());
  if (!transaction.ok()) return annotate(transaction.status());
  absl::StatusOr<std::vector<ClaimedRequest>> claimed =
      [&]() -> absl::StatusOr<std::vector<ClaimedRequest>> {
    FF_ASSIGN_OR_RETURN(
        SqliteStatement select,
        db_->Prepare("SELECT r.job_id, r.line_number, r.custom_id, r.body, r.attempts "
                     "FROM requests r JOIN jobs j ON j.id = r.job_id "
                     "WHERE r.state = 'pending' AND j.model = ?1 AND j.state = 'in_progress' "
                     "ORDER BY j.position, r.line_number LIMIT ?2"));
    select.Bind(1, model).Bind(2, std::max(max_requests, 0));
    std::vector<ClaimedRequest> requests;
    while (true) {
      FF_ASSIGN_OR_RETURN(bool row, select.Step());
      if (!row) break;
      ClaimedRequest request;
      request.key.job_id = select.ColumnText(0);
      request.key.line_number = select.ColumnInt(1);
      request.custom_id = select.ColumnText(2);
      request.body_json = select.ColumnText(3);
      request.attempt = static_cast<int>(select.ColumnInt(4)) + 1;
      requests.push_back(std::move(request));
    }
    FF_RETURN_IF_ERROR(MarkClaimed(requests, worker, lease_ms));
    Checkpoint("claim.requests_marked");
    FF_RETURN_IF_ERROR(Committed(*transaction));
    return requests;
  }();
  if (!claimed.ok()) return annotate(claimed.status());
  return claimed;
}

absl::Status JobStore::MarkClaimed(const std::vector<ClaimedRequest>& requests,
                                   std::string_view worker, int64_t lease_ms) {
  FF_ASSIGN_OR_RETURN(
      SqliteStatement mark,
      db_->Prepare("UPDATE requests SET state = 'in_flight', attempts = attempts + 1, "
                   "lease_owner = ?3, lease_expires_ms = ?4 "
                   "WHERE job_id = ?1 AND line_number = ?2 AND state = 'pending'"));
  const int64_t expires = NowMs() + lease_ms;
  for (const ClaimedRequest& request : requests) {
    mark.Bind(1, request.key.job_id).Bind(2, request.key.line_number).Bind(3, worker);
    mark.Bind(4, expires);
    FF_RETURN_IF_ERROR(mark.Run());
    if (db_->ChangedRows() != 1) return absl::InternalError("a claimed request changed state");
    mark.Reset();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ClaimedRequest>> JobStore::ClaimPendingRoundRobin(
    std::string_view model, int max_requests, std::string_view worker, int64_t lease_ms,
    RoundRobinCursor& cursor) {
  const auto annotate = [&](const absl::Status& status) {
    return NoteFailure(status, "ClaimPendingRoundRobin",
                       absl::StrCat("* of model ", std::string(model)));
  };
  absl::MutexLock lock(&mutex_);
  absl::StatusOr<SqliteTransaction> transaction = SqliteTransaction::Begin(db_.get());
  if (!transaction.ok()) return annotate(transaction.status());
  absl::StatusOr<std::vector<ClaimedRequest>> claimed =
      [&]() -> absl::StatusOr<std::vector<ClaimedRequest>> {
    if (max_requests <= 0) return std::vector<ClaimedRequest>{};
    // Jobs after the cursor come first, then the rest (wrapping around).
    FF_ASSIGN_OR_RETURN(SqliteStatement jobs_query,
                        db_->Prepare("SELECT id, position FROM jobs "
                                     "WHERE model = ?1 AND state = 'in_progress' "
                                     "ORDER BY position <= ?2, position"));
    jobs_query.Bind(1, model).Bind(2, cursor.last_job_position);
    std::vector<std::pair<std::string, int64_t>> jobs;
    while (true) {
      FF_ASSIGN_OR_RETURN(bool row, jobs_query.Step());
      if (!row) break;
      jobs.emplace_back(jobs_query.ColumnText(0), jobs_query.ColumnInt(1));
    }
    FF_ASSIGN_OR_RETURN(SqliteStatement pending_query,
                        db_->Prepare("SELECT line_number, custom_id, body, attempts "
                                     "FROM requests WHERE state = 'pending' AND job_id = ?1 "
                                     "ORDER BY line_number LIMIT ?2"));
    // Each job's first `max_requests` pending requests, then dealt out one per job per round.
    std::vector<std::vector<ClaimedRequest>> per_job;
    for (const auto& [job_id, position] : jobs) {
      pending_query.Bind(1, job_id).Bind(2, max_requests);
      std::vector<ClaimedRequest> pending;
      while (true) {
        FF_ASSIGN_OR_RETURN(bool row, pending_query.Step());
        if (!row) break;
        ClaimedRequest request;
        request.key = RequestKey{job_id, pending_query.ColumnInt(0)};
        request.custom_id = pending_query.ColumnText(1);
        request.body_json = pending_query.ColumnText(2);
        request.attempt = static_cast<int>(pending_query.ColumnInt(3)) + 1;
        pending.push_back(std::move(request));
      }
      pending_query.Reset();
      per_job.push_back(std::move(pending));
    }
    std::vector<ClaimedRequest> requests;
    for (size_t round = 0; requests.size() < static_cast<size_t>(max_requests); ++round) {
      bool any = false;
      for (size_t j = 0; j < per_job.size() && requests.size() < static_cast<size_t>(max_requests);
           ++j) {
        if (round >= per_job[j].size()) continue;
        any = true;
        requests.push_back(std::move(per_job[j][round]));
        cursor.last_job_position = jobs[j].second;
      }
      if (!any) break;
    }
    FF_RETURN_IF_ERROR(MarkClaimed(requests, worker, lease_ms));
    Checkpoint("claim.requests_marked");
    FF_RETURN_IF_ERROR(Committed(*transaction));
    return requests;
  }();
  if (!claimed.ok()) return annotate(claimed.status());
  return claimed;
}

absl::StatusOr<bool> JobStore::ReleaseInFlight(const RequestKey& request, std::string_view reason) {
  const auto annotate = [&](const absl::Status& status) {
    return NoteFailure(status, "ReleaseInFlight",
                       absl::StrCat(request.job_id, ", line ", request.line_number));
  };
  absl::MutexLock lock(&mutex_);
  absl::StatusOr<SqliteTransaction> transaction = SqliteTransaction::Begin(db_.get());
  if (!transaction.ok()) return annotate(transaction.status());
  absl::StatusOr<RequeueReport> report = RequeueWhere(
      "r.job_id = ?1 AND r.line_number = ?2",
      [&](SqliteStatement& statement) {
        statement.Bind(1, request.job_id).Bind(2, request.line_number);
      },
      reason, /*spend_attempt=*/false);
  if (!report.ok()) return annotate(report.status());
  if (absl::Status status = Committed(*transaction); !status.ok()) return annotate(status);
  return report->requeued + report->cancelled + report->failed > 0;
}

absl::StatusOr<bool> JobStore::RecordResult(const RequestKey& request, const ResultRecord& result) {
  const auto annotate = [&](const absl::Status& status) {
    return NoteFailure(status, "RecordResult",
                       absl::StrCat(request.job_id, ", line ", request.line_number));
  };
  absl::MutexLock lock(&mutex_);
  absl::StatusOr<SqliteTransaction> transaction = SqliteTransaction::Begin(db_.get());
  if (!transaction.ok()) return annotate(transaction.status());
  absl::StatusOr<bool> recorded = [&]() -> absl::StatusOr<bool> {
    FF_ASSIGN_OR_RETURN(SqliteStatement select,
                        db_->Prepare("SELECT state FROM requests "
                                     "WHERE job_id = ?1 AND line_number = ?2"));
    select.Bind(1, request.job_id).Bind(2, request.line_number);
    FF_ASSIGN_OR_RETURN(bool found, select.Step());
    if (!found) return absl::NotFoundError("no such request");
    const std::string state = select.ColumnText(0);
    // Only pending (requeued, then answered late) or in-flight requests take a result.
    if (state != RequestStateName(RequestState::kPending) &&
        state != RequestStateName(RequestState::kInFlight)) {
      return false;
    }
    FF_RETURN_IF_ERROR(
        AppendResult(request.job_id, request.line_number, result.outcome, result.output_line)
            .status());
    Checkpoint("record_result.result_inserted");
    FF_ASSIGN_OR_RETURN(SqliteStatement update,
                        db_->Prepare("UPDATE requests SET state = ?3, lease_owner = NULL, "
                                     "lease_expires_ms = NULL "
                                     "WHERE job_id = ?1 AND line_number = ?2"));
    update.Bind(1, request.job_id).Bind(2, request.line_number);
    update.Bind(
        3, RequestStateName(result.outcome == ResultOutcome::kSucceeded ? RequestState::kSucceeded
                                                                        : RequestState::kFailed));
    FF_RETURN_IF_ERROR(update.Run());
    FF_RETURN_IF_ERROR(UpdateJobState(request.job_id));
    FF_RETURN_IF_ERROR(Committed(*transaction));
    return true;
  }();
  if (!recorded.ok()) return annotate(recorded.status());
  return recorded;
}

absl::StatusOr<RequeueReport> JobStore::RequeueWhere(
    std::string_view condition, const std::function<void(SqliteStatement&)>& bind,
    std::string_view reason, bool spend_attempt) {
  FF_ASSIGN_OR_RETURN(
      SqliteStatement select,
      db_->Prepare(absl::StrCat(
          "SELECT r.job_id, r.line_number, r.custom_id, r.attempts, j.max_attempts, j.state "
          "FROM requests r JOIN jobs j ON j.id = r.job_id "
          "WHERE r.state = 'in_flight' AND (",
          std::string(condition), ") ORDER BY r.job_id, r.line_number")));
  bind(select);
  struct Row {
    RequestKey key;
    std::string custom_id;
    int64_t attempts;
    int64_t max_attempts;
    std::string job_state;
  };
  std::vector<Row> rows;
  while (true) {
    FF_ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) break;
    rows.push_back(Row{{select.ColumnText(0), select.ColumnInt(1)},
                       select.ColumnText(2),
                       select.ColumnInt(3),
                       select.ColumnInt(4),
                       select.ColumnText(5)});
  }
  FF_ASSIGN_OR_RETURN(
      SqliteStatement update,
      db_->Prepare("UPDATE requests SET state = ?3, attempts = ?4, last_error = ?5, "
                   "lease_owner = NULL, lease_expires_ms = NULL "
                   "WHERE job_id = ?1 AND line_number = ?2"));
  RequeueReport report;
  std::set<std::string> jobs;
  for (const Row& row : rows) {
    const int64_t attempts = spend_attempt ? row.attempts : std::max<int64_t>(row.attempts - 1, 0);
    RequestState next = RequestState::kPending;
    if (row.job_state == JobStateName(JobState::kCancelling)) {
      next = RequestState::kCancelled;
      ++report.cancelled;
      FF_RETURN_IF_ERROR(AppendResult(row.key.job_id, row.key.line_number, ResultOutcome::kFailed,
                                      CancelledLine(row.custom_id))
                             .status());
    } else if (spend_attempt && attempts >= row.max_attempts) {
      next = RequestState::kFailed;
      ++report.failed;
      const std::string message =
          absl::StrCat("gave up after ", attempts, " attempts; last: ", std::string(reason));
      FF_RETURN_IF_ERROR(
          AppendResult(row.key.job_id, row.key.line_number, ResultOutcome::kFailed,
                       FormatErrorLine(row.custom_id, "max_attempts_exceeded", message))
              .status());
    } else {
      ++report.requeued;
    }
    update.Bind(1, row.key.job_id).Bind(2, row.key.line_number).Bind(3, RequestStateName(next));
    update.Bind(4, attempts).Bind(5, reason);
    FF_RETURN_IF_ERROR(update.Run());
    update.Reset();
    jobs.insert(row.key.job_id);
  }
  for (const std::string& job_id : jobs) FF_RETURN_IF_ERROR(UpdateJobState(job_id));
  return report;
}

absl::StatusOr<RequeueReport> JobStore::RequeueWorker(std::string_view worker,
                                                      std::string_view reason) {
  const auto annotate = [&](const absl::Status& status) {
    return NoteFailure(status, "RequeueWorker", absl::StrCat("* of worker ", std::string(worker)));
  };
  absl::MutexLock lock(&mutex_);
  absl::StatusOr<SqliteTransaction> transaction = SqliteTransaction::Begin(db_.get());
  if (!transaction.ok()) return annotate(transaction.status());
  absl::StatusOr<RequeueReport> report = RequeueWhere(
      "r.lease_owner = ?1", [&](SqliteStatement& statement) { statement.Bind(1, worker); }, reason,
      /*spend_attempt=*/true);
  if (!report.ok()) return annotate(report.status());
  if (absl::Status status = Committed(*transaction); !status.ok()) return annotate(status);
  return report;
}

absl::StatusOr<RequeueReport> JobStore::RequeueExpiredLeases(std::string_view reason) {
  const auto annotate = [&](const absl::Status& status) {
    return NoteFailure(status, "RequeueExpiredLeases", "*");
  };
  absl::MutexLock lock(&mutex_);
  absl::StatusOr<SqliteTransaction> transaction = SqliteTransaction::Begin(db_.get());
  if (!transaction.ok()) return annotate(transaction.status());
  const int64_t now = NowMs();
  absl::StatusOr<RequeueReport> report = RequeueWhere(
      "r.lease_expires_ms <= ?1", [&](SqliteStatement& statement) { statement.Bind(1, now); },
      reason, /*spend_attempt=*/true);
  if (!report.ok()) return annotate(report.status());
  if (absl::Status status = Committed(*transaction); !status.ok()) return annotate(status);
  return report;
}

absl::StatusOr<CancelReport> JobStore::CancelJob(std::string_view job_id) {
  const auto annotate = [&](const absl::Status& status) {
    return NoteFailure(status, "CancelJob", job_id);
  };
  absl::MutexLock lock(&mutex_);
  absl::StatusOr<SqliteTransaction> transaction = SqliteTransaction::Begin(db_.get());
  if (!transaction.ok()) return annotate(transaction.status());
  absl::StatusOr<CancelReport> report = [&]() -> absl::StatusOr<CancelReport> {
    FF_ASSIGN_OR_RETURN(JobRecord job, ReadJob(job_id));
    if (job.state == JobState::kCompleted || job.state == JobState::kFailed) {
      return absl::FailedPreconditionError(
          absl::StrCat("the job is already ", std::string(JobStateName(job.state))));
    }
    CancelReport cancel;
    if (job.state != JobState::kCancelled) {
      // Each cancelled request gets its error line, so every custom_id ends with one line.
      FF_ASSIGN_OR_RETURN(SqliteStatement pending,
                          db_->Prepare("UPDATE requests SET state = 'cancelled' "
                                       "WHERE job_id = ?1 AND state = 'pending' "
                                       "RETURNING line_number, custom_id"));
      pending.Bind(1, job_id);
      std::vector<std::pair<int64_t, std::string>> cancelled;
      while (true) {
        FF_ASSIGN_OR_RETURN(bool row, pending.Step());
        if (!row) break;
        cancelled.emplace_back(pending.ColumnInt(0), pending.ColumnText(1));
      }
      std::sort(cancelled.begin(), cancelled.end());
      for (const auto& [line_number, custom_id] : cancelled) {
        FF_RETURN_IF_ERROR(
            AppendResult(job_id, line_number, ResultOutcome::kFailed, CancelledLine(custom_id))
                .status());
      }
      FF_ASSIGN_OR_RETURN(SqliteStatement mark,
                          db_->Prepare("UPDATE jobs SET state = 'cancelling' WHERE id = ?1"));
      mark.Bind(1, job_id);
      FF_RETURN_IF_ERROR(mark.Run());
      FF_RETURN_IF_ERROR(UpdateJobState(job_id));  // cancelled at once if nothing runs
      FF_ASSIGN_OR_RETURN(SqliteStatement running,
                          db_->Prepare("SELECT line_number FROM requests "
                                       "WHERE job_id = ?1 AND state = 'in_flight' "
                                       "ORDER BY line_number"));
      running.Bind(1, job_id);
      while (true) {
        FF_ASSIGN_OR_RETURN(bool row, running.Step());
        if (!row) break;
        cancel.in_flight.push_back(RequestKey{std::string(job_id), running.ColumnInt(0)});
      }
    }
    FF_ASSIGN_OR_RETURN(cancel.job, ReadJob(job_id));
    FF_RETURN_IF_ERROR(Committed(*transaction));
    return cancel;
  }();
  if (!report.ok()) return annotate(report.status());
  return report;
}

absl::Status JobStore::SetSizeLimit(int64_t max_bytes) {
  absl::MutexLock lock(&mutex_);
  FF_ASSIGN_OR_RETURN(int64_t page_bytes, ReadInt(*db_, "PRAGMA page_size"));
  // 4294967294 is SQLite's own largest page count (its default).
  const int64_t pages = max_bytes > 0 ? std::max<int64_t>(1, max_bytes / page_bytes) : 4294967294;
  return db_->Execute(absl::StrCat("PRAGMA max_page_count = ", pages));
}

absl::Status JobStore::BackupTo(const std::string& path) {
  absl::MutexLock lock(&mutex_);
  FF_ASSIGN_OR_RETURN(SqliteStatement backup, db_->Prepare("VACUUM INTO ?1"));
  backup.Bind(1, path);
  if (absl::Status status = backup.Run(); !status.ok()) {
    return absl::Status(status.code(),
                        absl::StrCat("backup of the job store to ", path, ": ", status.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<CancelReport> JobStore::ExpireJob(std::string_view job_id) {
  {
    absl::MutexLock lock(&mutex_);
    absl::StatusOr<SqliteStatement> mark = db_->Prepare(
        "UPDATE jobs SET options = json_set(options, '$.expired_at_ms', ?2) "
        "WHERE id = ?1 AND state IN ('validating', 'in_progress') "
        "AND json_extract(options, '$.expired_at_ms') IS NULL");
    if (!mark.ok()) return NoteFailure(mark.status(), "ExpireJob", job_id);
    mark->Bind(1, job_id).Bind(2, NowMs());
    if (absl::Status run = mark->Run(); !run.ok()) return NoteFailure(run, "ExpireJob", job_id);
  }
  // A crash between the two leaves the job marked but running; the next sweep cancels it.
  return CancelJob(job_id);
}

absl::StatusOr<std::vector<std::string>> JobStore::ListJobsPastExpiry() {
  absl::MutexLock lock(&mutex_);
  absl::StatusOr<SqliteStatement> select = db_->Prepare(
      "SELECT id FROM jobs WHERE state IN ('validating', 'in_progress') "
      "AND json_extract(options, '$.expires_at_ms') > 0 "
      "AND json_extract(options, '$.expires_at_ms') <= ?1 ORDER BY position");
  if (!select.ok()) return NoteFailure(select.status(), "ListJobsPastExpiry", "");
  select->Bind(1, NowMs());
  std::vector<std::string> ids;
  while (true) {
    absl::StatusOr<bool> row = select->Step();
    if (!row.ok()) return NoteFailure(row.status(), "ListJobsPastExpiry", "");
    if (!*row) break;
    ids.push_back(select->ColumnText(0));
  }
  return ids;
}

absl::StatusOr<std::vector<StoredResult>> JobStore::ReadResults(std::string_view job_id,
                                                                int64_t from_sequence, int limit) {
  const auto annotate = [&](const absl::Status& status) {
    return NoteFailure(status, "ReadResults", job_id);
  };
  absl::MutexLock lock(&mutex_);
  absl::StatusOr<std::vector<StoredResult>> results =
      [&]() -> absl::StatusOr<std::vector<StoredResult>> {
    FF_ASSIGN_OR_RETURN(
        SqliteStatement select,
        db_->Prepare("SELECT s.sequence, s.line_number, r.custom_id, s.outcome, s.output_line "
                     "FROM results s JOIN requests r "
                     "ON r.job_id = s.job_id AND r.line_number = s.line_number "
                     "WHERE s.job_id = ?1 AND s.sequence >= ?2 ORDER BY s.sequence LIMIT ?3"));
    select.Bind(1, job_id).Bind(2, from_sequence).Bind(3, std::max(limit, 0));
    std::vector<StoredResult> rows;
    while (true) {
      FF_ASSIGN_OR_RETURN(bool row, select.Step());
      if (!row) break;
      StoredResult result;
      result.sequence = select.ColumnInt(0);
      result.line_number = select.ColumnInt(1);
      result.custom_id = select.ColumnText(2);
      result.outcome = select.ColumnText(3) == OutcomeName(ResultOutcome::kSucceeded)
                           ? ResultOutcome::kSucceeded
                           : ResultOutcome::kFailed;
      result.output_line = select.ColumnText(4);
      rows.push_back(std::move(result));
    }
    if (rows.empty()) {
      // Tell an unknown job from one without results yet.
      FF_RETURN_IF_ERROR(ReadJob(job_id).status());
    }
    return rows;
  }();
  if (!results.ok()) return annotate(results.status());
  return results;
}

}  // namespace flatfleet::coordinator
