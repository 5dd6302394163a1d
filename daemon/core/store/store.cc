// SPDX-License-Identifier: Apache-2.0
#include "core/store/store.h"

#include "core/base/text.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <limits>

#include "core/base/unique_fd.h"

namespace agentcage::core {
namespace {

constexpr int kSchemaVersion = 1;
constexpr int kBusyTimeoutMs = 10000;
const std::string kZeroHash(kHashBytes, '\0');

// --- small SQLite RAII helpers ---

std::unexpected<Error> db_error(sqlite3* db, const std::string& what, const std::string& path) {
  int code = db ? sqlite3_extended_errcode(db) : SQLITE_ERROR;
  std::string hint;
  if ((code & 0xff) == SQLITE_READONLY || (code & 0xff) == SQLITE_CANTOPEN || (code & 0xff) == SQLITE_PERM)
    hint = "check that the directory and the file are writable by this user (the daemon runs as root)";
  else if ((code & 0xff) == SQLITE_BUSY)
    hint = "another process holds the store's write lock for too long";
  else if ((code & 0xff) == SQLITE_CORRUPT || (code & 0xff) == SQLITE_NOTADB)
    hint = "the file is not an agentcage store or is damaged";
  return error(fmt::format("sqlite {} ({}): {}", what, path, db ? sqlite3_errmsg(db) : "out of memory"), hint);
}

class Stmt {
 public:
  Stmt() = default;
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(Stmt&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  Stmt& operator=(Stmt&& o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  static Result<Stmt> prepare(sqlite3* db, const std::string& sql, const std::string& path) {
    Stmt st;
    if (sqlite3_prepare_v2(db, sql.c_str(), static_cast<int>(sql.size()), &st.s_, nullptr) != SQLITE_OK)
      return db_error(db, "prepare \"" + sql.substr(0, 60) + "\"", path);
    return st;
  }
  sqlite3_stmt* get() const { return s_; }
  void bind(int i, int64_t v) { sqlite3_bind_int64(s_, i, v); }
  // SQLite integers are signed: a bound above 2^63-1 (a --from-seq of 2^64-1) is the
  // largest one, not a wrapped negative number that would match every row.
  void bind_u(int i, uint64_t v) { sqlite3_bind_int64(s_, i, static_cast<int64_t>(std::min(v, kMaxSeq))); }
  void bind(int i, std::string_view v) { sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT); }
  void bind_blob(int i, std::string_view v) {
    sqlite3_bind_blob(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void bind_null(int i) { sqlite3_bind_null(s_, i); }
  int step() { return sqlite3_step(s_); }
  void reset() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  uint64_t col_u(int i) const { return static_cast<uint64_t>(sqlite3_column_int64(s_, i)); }
  bool col_null(int i) const { return sqlite3_column_type(s_, i) == SQLITE_NULL; }
  std::string col_blob(int i) const {
    auto* p = static_cast<const char*>(sqlite3_column_blob(s_, i));
    return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(s_, i))) : std::string();
  }
  std::string col_text(int i) const {
    auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, i));
    return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(s_, i))) : std::string();
  }

 private:
  sqlite3_stmt* s_ = nullptr;
};

Status exec(sqlite3* db, const char* sql, const std::string& path) {
  char* msg = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &msg) != SQLITE_OK) {
    sqlite3_free(msg);
    return db_error(db, std::string("exec \"") + sql + "\"", path);
  }
  return {};
}

// Rolls back unless committed: every early return inside a write leaves the file as it was.
class Txn {
 public:
  Txn(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  ~Txn() {
    if (open_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  // IMMEDIATE takes the write lock now, so the head read inside is the head we extend.
  Status begin(bool immediate) {
    auto r = exec(db_, immediate ? "BEGIN IMMEDIATE" : "BEGIN", path_);
    if (r) open_ = true;
    return r;
  }
  Status commit() {
    auto r = exec(db_, "COMMIT", path_);
    if (r) open_ = false;
    return r;
  }

 private:
  sqlite3* db_;
  std::string path_;
  bool open_ = false;
};

Result<std::optional<std::string>> meta_get(sqlite3* db, const std::string& key, const std::string& path) {
  auto st = Stmt::prepare(db, "SELECT value FROM meta WHERE key = ?", path);
  if (!st) return std::unexpected(st.error());
  st->bind(1, key);
  int rc = st->step();
  if (rc == SQLITE_ROW) return std::optional<std::string>(st->col_blob(0));
  if (rc == SQLITE_DONE) return std::optional<std::string>();
  return db_error(db, "read meta " + key, path);
}

Status meta_put(sqlite3* db, const std::string& key, std::string_view value, const std::string& path,
                bool replace = true) {
  auto st = Stmt::prepare(
      db, std::string(replace ? "INSERT OR REPLACE" : "INSERT OR IGNORE") + " INTO meta(key, value) VALUES(?, ?)", path);
  if (!st) return std::unexpected(st.error());
  st->bind(1, key);
  st->bind_blob(2, value);
  if (st->step() != SQLITE_DONE) return db_error(db, "write meta " + key, path);
  return {};
}

std::string hex(std::string_view b) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : b) {
    out += d[c >> 4];
    out += d[c & 15];
  }
  return out;
}

uint64_t now_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

}  // namespace

namespace {
// Oneof case number -> name, built once from the descriptor (the append path calls
// event_kind per event; a descriptor lookup each time would be a hash probe).
struct KindTable {
  std::vector<std::string> by_number;
  std::vector<std::string> names;
  std::string joined;
  KindTable() {
    const auto* oneof = v1::Event::descriptor()->FindOneofByName("kind");
    for (int i = 0; i < oneof->field_count(); ++i) {
      const auto* f = oneof->field(i);
      if (static_cast<size_t>(f->number()) >= by_number.size()) by_number.resize(static_cast<size_t>(f->number()) + 1);
      by_number[static_cast<size_t>(f->number())] = f->name();
    }
    for (const auto& n : by_number)
      if (!n.empty()) names.push_back(n);
    for (const auto& n : names) joined += (joined.empty() ? "" : ", ") + n;
  }
};
const KindTable& kinds() {
  static const KindTable t;
  return t;
}
}  // namespace

std::string event_kind(const v1::Event& ev) {
  auto n = static_cast<size_t>(ev.kind_case());
  const auto& t = kinds().by_number;
  return n < t.size() ? t[n] : std::string();
}

const std::vector<std::string>& event_kinds() { return kinds().names; }
const std::string& event_kinds_joined() { return kinds().joined; }

std::string canonical_bytes(const v1::Event& ev) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream sos(&out);
    google::protobuf::io::CodedOutputStream cos(&sos);
    // Deterministic: no map-order or other serializer latitude in what is hashed.
    cos.SetSerializationDeterministic(true);
    ev.SerializeToCodedStream(&cos);
  }  // the CodedOutputStream flushes into `out` when destroyed
  return out;
}

std::string chain_hash(std::string_view prev_hash, std::string_view bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  EVP_DigestUpdate(ctx, prev_hash.data(), prev_hash.size());
  EVP_DigestUpdate(ctx, bytes.data(), bytes.size());
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  return std::string(reinterpret_cast<char*>(md), len);
}

void EventStore::ReaderDeleter::operator()(sqlite3* db) const { sqlite3_close_v2(db); }

EventStore::EventStore(std::string path, StoreOptions opts)
    : path_(std::move(path)),
      opts_(std::move(opts)),
      last_retention_ns_(std::chrono::steady_clock::now().time_since_epoch().count()) {}

EventStore::~EventStore() {
  pool_.clear();
  if (writer_) sqlite3_close_v2(writer_);
}

Result<std::unique_ptr<EventStore>> EventStore::open(const std::string& path, const StoreOptions& opts) {
  if (path.empty()) return error("open event store: empty path", "pass --db FILE");
  std::unique_ptr<EventStore> s(new EventStore(path, opts));
  if (opts.read_only) {
    if (!std::filesystem::exists(path))
      return error(fmt::format("open event store {}: no such file", path), "check --db; the daemon creates the store");
  } else if (opts.create_dirs) {
    auto dir = std::filesystem::path(path).parent_path();
    std::error_code ec;
    if (!dir.empty() && !std::filesystem::exists(dir, ec)) {
      std::filesystem::create_directories(dir, ec);
      if (ec) return sys_error(fmt::format("mkdir {}", dir.string()), ec.value());
      ::chmod(dir.c_str(), 0700);
    }
  }
  if (!opts.read_only) {
    // The store holds the argv and paths of every user's sandboxes: owner-only. Created
    // 0600 before SQLite opens it (SQLite gives the -wal and -shm files the database
    // file's mode), and an older world-readable store we own is narrowed.
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) return sys_error(fmt::format("open event store {}", path), errno, "check --db and its directory");
    struct stat st{};
    if (::fstat(fd.get(), &st) == 0 && st.st_uid == ::geteuid() && (st.st_mode & 077))
      (void)::fchmod(fd.get(), st.st_mode & 0700);
    for (const char* suffix : {"-wal", "-shm"})
      if (struct stat ws{}; ::stat((path + suffix).c_str(), &ws) == 0 && ws.st_uid == ::geteuid() && (ws.st_mode & 077))
        (void)::chmod((path + suffix).c_str(), ws.st_mode & 0700);
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path.c_str(), &s->writer_, flags, nullptr) != SQLITE_OK)
      return db_error(s->writer_, "open", path);
    sqlite3_busy_timeout(s->writer_, kBusyTimeoutMs);
    if (auto r = s->init_schema(); !r) return std::unexpected(r.error());
  } else {
    // Schema checks on a reader: a read-only open never creates or changes anything.
    auto rd = s->reader();
    if (!rd) return std::unexpected(rd.error());
    auto id = meta_get(rd->get(), "store_id", path);
    if (!id) return std::unexpected(id.error());
    if (!*id) return error(fmt::format("open event store {}: not an agentcage store (no meta.store_id)", path));
    s->store_id_ = **id;
    auto mode = meta_get(rd->get(), "mode", path);
    if (!mode) return std::unexpected(mode.error());
    s->opts_.collector = mode->value_or("node") == "collector";
    s->release(std::move(*rd));
  }
  if (auto r = s->refresh_last_seq(); !r) return std::unexpected(r.error());
  return s;
}

Status EventStore::init_schema() {
  sqlite3* db = writer_;
  // auto_vacuum must be chosen before the first table exists; it lets retention give
  // freed pages back to the file system (incremental_vacuum) without a full VACUUM.
  if (auto r = exec(db, "PRAGMA auto_vacuum = INCREMENTAL", path_); !r) return r;
  if (auto r = exec(db, "PRAGMA journal_mode = WAL", path_); !r) return r;
  if (auto r = exec(db, opts_.durable ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL", path_); !r)
    return r;
  Txn t(db, path_);
  if (auto r = t.begin(true); !r) return r;
  static const char* kSchema = R"sql(
    CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS kv(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS events(
      seq          INTEGER PRIMARY KEY,  -- gap-free, assigned by the store
      time_ns      INTEGER NOT NULL,     -- wall clock, ns since the epoch (from the event)
      sandbox_id   TEXT NOT NULL,
      kind         TEXT NOT NULL,        -- the Event oneof case
      is_violation INTEGER NOT NULL,
      node         TEXT NOT NULL,
      origin_store TEXT,                 -- collector stores: the sending node's store id
      origin_seq   INTEGER,              -- collector stores: the seq on the sending node
      event        BLOB NOT NULL,        -- canonical bytes (what is hashed)
      prev_hash    BLOB NOT NULL,
      hash         BLOB NOT NULL);
    CREATE INDEX IF NOT EXISTS events_time ON events(time_ns);
    CREATE INDEX IF NOT EXISTS events_sandbox ON events(sandbox_id, seq);
    CREATE INDEX IF NOT EXISTS events_kind ON events(kind, seq);
    CREATE INDEX IF NOT EXISTS events_violations ON events(seq) WHERE is_violation = 1;
    CREATE UNIQUE INDEX IF NOT EXISTS events_origin ON events(node, origin_store, origin_seq)
      WHERE origin_seq IS NOT NULL;
  )sql";
  if (auto r = exec(db, kSchema, path_); !r) return r;

  unsigned char rnd[16];
  if (getrandom(rnd, sizeof rnd, 0) != static_cast<ssize_t>(sizeof rnd)) return sys_error("getrandom(store id)");
  std::string mode = opts_.collector ? "collector" : "node";
  // INSERT OR IGNORE: an existing store keeps its identity, chain and mode.
  for (auto [k, v] : std::initializer_list<std::pair<const char*, std::string>>{
           {"schema", std::to_string(kSchemaVersion)},
           {"mode", mode},
           {"store_id", hex(std::string_view(reinterpret_cast<char*>(rnd), sizeof rnd))},
           {"checkpoint_seq", "0"},
           {"checkpoint_hash", kZeroHash},
           {"head_seq", "0"},
           {"head_hash", kZeroHash}})
    if (auto r = meta_put(db, k, v, path_, false); !r) return r;

  auto schema = meta_get(db, "schema", path_);
  if (!schema) return std::unexpected(schema.error());
  if (parse_u64(schema->value_or("")).value_or(0) != kSchemaVersion)
    return error(fmt::format("open event store {}: schema version {} is not {}", path_, schema->value_or("?"),
                             kSchemaVersion),
                 "this agentcage is older or newer than the one that created the store");
  auto stored_mode = meta_get(db, "mode", path_);
  if (!stored_mode) return std::unexpected(stored_mode.error());
  if (stored_mode->value_or("") != mode)
    return error(fmt::format("open event store {}: it is a {} store, not a {} store", path_,
                             stored_mode->value_or("?"), mode),
                 "a collector and a node must not share a store file");
  auto id = meta_get(db, "store_id", path_);
  if (!id) return std::unexpected(id.error());
  store_id_ = id->value_or("");
  return t.commit();
}

Result<EventStore::Reader> EventStore::reader() const {
  {
    std::lock_guard lk(pool_mu_);
    if (!pool_.empty()) {
      Reader r = std::move(pool_.back());
      pool_.pop_back();
      return r;
    }
  }
  sqlite3* db = nullptr;
  int flags = SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX;
  int rc = sqlite3_open_v2(path_.c_str(), &db, flags, nullptr);
  Reader r(db);
  if (rc != SQLITE_OK) return db_error(db, "open for reading", path_);
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  return r;
}

void EventStore::release(Reader r) const {
  std::lock_guard lk(pool_mu_);
  if (pool_.size() < 4) pool_.push_back(std::move(r));
}

Result<EventStore::Head> EventStore::read_head(sqlite3* db) const {
  auto s = meta_get(db, "head_seq", path_);
  if (!s) return std::unexpected(s.error());
  auto h = meta_get(db, "head_hash", path_);
  if (!h) return std::unexpected(h.error());
  if (!*s || !*h) return error(fmt::format("event store {}: meta head missing", path_), "the store is damaged");
  return Head{parse_u64(**s).value_or(0), **h};
}

Result<uint64_t> EventStore::refresh_last_seq() {
  auto rd = reader();
  if (!rd) return std::unexpected(rd.error());
  auto h = read_head(rd->get());
  release(std::move(*rd));
  if (!h) return std::unexpected(h.error());
  note_appended(h->seq);
  return h->seq;
}

void EventStore::note_appended(uint64_t seq) {
  uint64_t cur = last_seq_.load(std::memory_order_acquire);
  while (seq > cur && !last_seq_.compare_exchange_weak(cur, seq, std::memory_order_acq_rel)) {
  }
  std::lock_guard lk(append_mu_);
  append_cv_.notify_all();
}

uint64_t EventStore::wait_for_append(uint64_t after, std::chrono::milliseconds timeout) const {
  std::unique_lock lk(append_mu_);
  append_cv_.wait_for(lk, timeout, [&] { return last_seq() > after; });
  return last_seq();
}

Status EventStore::write_head(const Head& head) {
  if (auto r = meta_put(writer_, "head_seq", std::to_string(head.seq), path_); !r) return r;
  return meta_put(writer_, "head_hash", head.hash, path_);
}

Status EventStore::insert_row(sqlite3_stmt* ins, const v1::Event& ev, const std::string& bytes, Head& head,
                              const std::string& origin_node, const std::string& origin_store,
                              uint64_t origin_seq) {
  uint64_t seq = head.seq + 1;
  std::string hash = chain_hash(head.hash, bytes);
  sqlite3_reset(ins);
  sqlite3_clear_bindings(ins);
  sqlite3_bind_int64(ins, 1, static_cast<int64_t>(seq));
  sqlite3_bind_int64(ins, 2, static_cast<int64_t>(ev.time_ns()));
  sqlite3_bind_text(ins, 3, ev.sandbox_id().data(), static_cast<int>(ev.sandbox_id().size()), SQLITE_STATIC);
  std::string kind = event_kind(ev);
  sqlite3_bind_text(ins, 4, kind.data(), static_cast<int>(kind.size()), SQLITE_STATIC);
  sqlite3_bind_int(ins, 5, ev.has_violation() ? 1 : 0);
  const std::string& node = opts_.collector ? origin_node : ev.node();
  sqlite3_bind_text(ins, 6, node.data(), static_cast<int>(node.size()), SQLITE_STATIC);
  if (opts_.collector) {
    sqlite3_bind_text(ins, 7, origin_store.data(), static_cast<int>(origin_store.size()), SQLITE_STATIC);
    sqlite3_bind_int64(ins, 8, static_cast<int64_t>(origin_seq));
  }
  sqlite3_bind_blob(ins, 9, bytes.data(), static_cast<int>(bytes.size()), SQLITE_STATIC);
  sqlite3_bind_blob(ins, 10, head.hash.data(), static_cast<int>(head.hash.size()), SQLITE_STATIC);
  sqlite3_bind_blob(ins, 11, hash.data(), static_cast<int>(hash.size()), SQLITE_STATIC);
  if (sqlite3_step(ins) != SQLITE_DONE) return db_error(writer_, fmt::format("insert event seq {}", seq), path_);
  // INSERT OR IGNORE in collector stores: no change means (node, store, seq) was a replay.
  if (sqlite3_changes(writer_) == 1) head = Head{seq, std::move(hash)};
  return {};
}

static constexpr const char* kInsertSql =
    "INSERT INTO events(seq, time_ns, sandbox_id, kind, is_violation, node, origin_store, origin_seq, event, "
    "prev_hash, hash) VALUES(?,?,?,?,?,?,?,?,?,?,?)";
static constexpr const char* kInsertIgnoreSql =
    "INSERT OR IGNORE INTO events(seq, time_ns, sandbox_id, kind, is_violation, node, origin_store, origin_seq, "
    "event, prev_hash, hash) VALUES(?,?,?,?,?,?,?,?,?,?,?)";

// Caller holds write_mu_ and an IMMEDIATE transaction; `head` is the current head.
Result<uint64_t> EventStore::insert_locked(std::vector<v1::Event>& evs, Head& head) {
  auto ins = Stmt::prepare(writer_, kInsertSql, path_);
  if (!ins) return std::unexpected(ins.error());
  uint64_t stamp = 0;
  for (auto& ev : evs) {
    if (ev.time_ns() == 0) ev.set_time_ns(stamp ? stamp : (stamp = now_ns()));
    ev.set_seq(head.seq + 1);
    std::string bytes = canonical_bytes(ev);
    if (auto r = insert_row(ins->get(), ev, bytes, head, {}, {}, 0); !r) return std::unexpected(r.error());
  }
  if (auto r = write_head(head); !r) return std::unexpected(r.error());
  return head.seq;
}

Result<uint64_t> EventStore::append(v1::Event& ev) {
  // A one-element vector would copy the event; swap it in and out instead.
  std::vector<v1::Event> one(1);
  one[0].Swap(&ev);
  auto r = append_batch(one);
  one[0].Swap(&ev);
  return r;
}

Result<uint64_t> EventStore::append_batch(std::vector<v1::Event>& evs) {
  if (opts_.collector) return error("append to a collector store", "collector stores take events through ingest()");
  if (!writer_) return error(fmt::format("append to {}: opened read-only", path_));
  std::unique_lock lk(write_mu_);
  Txn t(writer_, path_);
  if (auto r = t.begin(true); !r) return std::unexpected(r.error());
  auto head = read_head(writer_);
  if (!head) return std::unexpected(head.error());
  if (evs.empty()) return head->seq;
  auto last = insert_locked(evs, *head);
  if (!last) {
    for (auto& ev : evs) ev.set_seq(0);  // nothing was stored
    return last;
  }
  if (auto r = t.commit(); !r) {
    for (auto& ev : evs) ev.set_seq(0);
    return std::unexpected(r.error());
  }
  note_appended(*last);
  lk.unlock();
  if (opts_.max_bytes || opts_.max_age.count() > 0) {
    int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
    int64_t prev = last_retention_ns_.load();
    if (now - prev >= std::chrono::nanoseconds(opts_.retention_every).count() &&
        last_retention_ns_.compare_exchange_strong(prev, now))
      if (auto r = apply_retention(); !r) spdlog::warn("retention on {}: {}", path_, r.error().message());
  }
  return *last;
}

Result<std::vector<IngestResult>> EventStore::ingest(std::span<const IngestBatch> batches) {
  if (!opts_.collector) return error("ingest into a node store", "open the store with StoreOptions::collector");
  if (!writer_) return error(fmt::format("ingest into {}: opened read-only", path_));
  std::lock_guard lk(write_mu_);
  Txn t(writer_, path_);
  if (auto r = t.begin(true); !r) return std::unexpected(r.error());
  auto head = read_head(writer_);
  if (!head) return std::unexpected(head.error());
  auto ins = Stmt::prepare(writer_, kInsertIgnoreSql, path_);
  if (!ins) return std::unexpected(ins.error());
  std::vector<IngestResult> out(batches.size());
  for (size_t i = 0; i < batches.size(); ++i) {
    const auto& b = batches[i];
    for (auto& ev : *b.events) {
      // Events travel with their node; stamp it where the sender left it empty, so a
      // stored event names its origin on its own.
      if (ev.node().empty()) ev.set_node(b.node);
      uint64_t before = head->seq;
      std::string bytes = canonical_bytes(ev);
      if (auto r = insert_row(ins->get(), ev, bytes, *head, b.node, b.store_id, ev.seq()); !r)
        return std::unexpected(r.error());
      if (head->seq != before) ++out[i].inserted; else ++out[i].duplicates;
    }
  }
  if (auto r = write_head(*head); !r) return std::unexpected(r.error());
  if (auto r = t.commit(); !r) return std::unexpected(r.error());
  note_appended(head->seq);
  return out;
}

Result<uint64_t> EventStore::origin_high(const std::string& node, const std::string& store_id) {
  auto rd = reader();
  if (!rd) return std::unexpected(rd.error());
  auto st = Stmt::prepare(rd->get(), "SELECT max(origin_seq) FROM events WHERE node = ? AND origin_store = ?", path_);
  if (!st) return std::unexpected(st.error());
  st->bind(1, node);
  st->bind(2, store_id);
  if (st->step() != SQLITE_ROW) return db_error(rd->get(), "read origin high-water mark", path_);
  uint64_t v = st->col_null(0) ? 0 : st->col_u(0);
  st = Stmt();
  release(std::move(*rd));
  return v;
}

Status EventStore::query(const StoreQuery& q, const std::function<bool(const v1::Event&)>& fn) const {
  std::string sql = "SELECT event, seq, time_ns, sandbox_id, node FROM events WHERE seq >= ?1";
  if (q.to_seq) sql += " AND seq <= ?2";
  if (q.since_ns) sql += " AND time_ns >= ?3";
  if (q.until_ns) sql += " AND time_ns < ?4";
  if (!q.sandbox_id.empty()) sql += " AND sandbox_id = ?5";
  if (!q.node.empty()) sql += " AND node = ?6";
  // Literal `is_violation = 1` so SQLite can use the partial index events_violations.
  if (q.violations_only) sql += " AND is_violation = 1";
  if (!q.kinds.empty()) {
    sql += " AND kind IN (";
    for (size_t i = 0; i < q.kinds.size(); ++i) sql += fmt::format("{}?{}", i ? "," : "", 10 + i);
    sql += ")";
  }
  sql += " ORDER BY seq";
  if (q.limit) sql += " LIMIT ?7";
  auto rd = reader();
  if (!rd) return std::unexpected(rd.error());
  sqlite3* db = rd->get();
  auto st = Stmt::prepare(db, sql, path_);
  if (!st) return std::unexpected(st.error());
  st->bind_u(1, q.from_seq);
  if (q.to_seq) st->bind_u(2, q.to_seq);
  if (q.since_ns) st->bind_u(3, q.since_ns);
  if (q.until_ns) st->bind_u(4, q.until_ns);
  if (!q.sandbox_id.empty()) st->bind(5, q.sandbox_id);
  if (!q.node.empty()) st->bind(6, q.node);
  if (q.limit) st->bind_u(7, q.limit);
  for (size_t i = 0; i < q.kinds.size(); ++i) st->bind(static_cast<int>(10 + i), q.kinds[i]);
  v1::Event ev;
  int rc;
  while ((rc = st->step()) == SQLITE_ROW) {
    auto* p = sqlite3_column_blob(st->get(), 0);
    int n = sqlite3_column_bytes(st->get(), 0);
    ev.Clear();
    if (!ev.ParseFromArray(p, n)) {
      // A damaged row is evidence too, but never a reason to stop reading: the reader gets
      // a loss event in its place (seq and time from the row's columns) and goes on.
      ev.Clear();
      ev.set_seq(st->col_u(1));
      ev.set_time_ns(st->col_u(2));
      ev.set_sandbox_id(st->col_text(3));
      ev.set_node(st->col_text(4));
      auto* loss = ev.mutable_loss();
      loss->set_count(1);
      loss->set_reason("decode_error");
      loss->set_where(fmt::format("store row {} does not decode (run 'agentcage audit verify')", st->col_u(1)));
    }
    if (!fn(ev)) {
      rc = SQLITE_DONE;
      break;
    }
  }
  if (rc != SQLITE_DONE) return db_error(db, "query events", path_);
  st = Stmt();
  release(std::move(*rd));
  return {};
}

Result<VerifyReport> EventStore::verify() const {
  auto rd = reader();
  if (!rd) return std::unexpected(rd.error());
  sqlite3* db = rd->get();
  VerifyReport rep;
  {
    // One read transaction: the whole check runs on one WAL snapshot while writers go on.
    Txn t(db, path_);
    if (auto r = t.begin(false); !r) return std::unexpected(r.error());
    auto cps = meta_get(db, "checkpoint_seq", path_);
    auto cph = meta_get(db, "checkpoint_hash", path_);
    if (!cps) return std::unexpected(cps.error());
    if (!cph) return std::unexpected(cph.error());
    auto head = read_head(db);
    if (!head) return std::unexpected(head.error());
    rep.checkpoint_seq = parse_u64(cps->value_or("")).value_or(0);
    rep.first_seq = rep.checkpoint_seq + 1;
    rep.last_seq = head->seq;
    auto broken = [&](uint64_t seq, std::string what) {
      rep.ok = false;
      rep.first_bad_seq = seq;
      rep.what = std::move(what);
      return rep;
    };

    auto st = Stmt::prepare(db,
                            "SELECT seq, time_ns, sandbox_id, kind, is_violation, node, origin_store, origin_seq, "
                            "event, prev_hash, hash FROM events ORDER BY seq",
                            path_);
    if (!st) return std::unexpected(st.error());
    uint64_t expect = rep.first_seq;
    std::string prev = cph->value_or(kZeroHash);
    v1::Event ev;
    int rc;
    while ((rc = st->step()) == SQLITE_ROW) {
      uint64_t seq = st->col_u(0);
      if (seq < expect)
        return broken(seq, fmt::format("inserted: row seq {} is at or below the retention checkpoint {}", seq,
                                       rep.checkpoint_seq));
      if (seq > expect)
        return broken(expect, seq - 1 == expect
                                  ? fmt::format("deleted: seq {} is missing (the next row is seq {})", expect, seq)
                                  : fmt::format("deleted: seq {}..{} are missing (the next row is seq {})", expect,
                                                seq - 1, seq));
      if (seq > head->seq)
        return broken(seq, fmt::format("inserted: row seq {} is past the recorded head seq {}", seq, head->seq));
      std::string bytes = st->col_blob(8), prev_col = st->col_blob(9), hash_col = st->col_blob(10);
      bool parsed = ev.ParseFromString(bytes);
      if (chain_hash(prev_col, bytes) != hash_col) {
        if (parsed && !opts_.collector && ev.seq() != seq)
          return broken(seq, fmt::format("reordered: row seq {} holds the event stored as seq {}", seq, ev.seq()));
        return broken(seq, "edited: the event's bytes do not match the row's hash");
      }
      if (!parsed) return broken(seq, "edited: the row's event does not decode as agentcage.v1.Event");
      if (!opts_.collector && ev.seq() != seq)
        return broken(seq, fmt::format("reordered: row seq {} holds the event stored as seq {}", seq, ev.seq()));
      if (prev_col != prev)
        return broken(seq, seq == rep.first_seq
                               ? "chain break: prev_hash does not match the retention checkpoint"
                               : fmt::format("chain break: prev_hash does not match the hash of seq {} "
                                             "(that row was rewritten, or rows were reordered)",
                                             seq - 1));
      // The query columns must say what the hashed event says, or a filter could hide it.
      auto col_mismatch = [&](const char* col, const std::string& have, const std::string& want) {
        return broken(seq, fmt::format("edited: column {} ('{}') does not match the event ('{}')", col, have, want));
      };
      if (st->col_u(1) != ev.time_ns())
        return col_mismatch("time_ns", std::to_string(st->col_u(1)), std::to_string(ev.time_ns()));
      if (st->col_text(2) != ev.sandbox_id()) return col_mismatch("sandbox_id", st->col_text(2), ev.sandbox_id());
      if (st->col_text(3) != event_kind(ev)) return col_mismatch("kind", st->col_text(3), event_kind(ev));
      if ((st->col_u(4) != 0) != ev.has_violation())
        return col_mismatch("is_violation", std::to_string(st->col_u(4)), ev.has_violation() ? "1" : "0");
      // Collector stores: `node` is the sender (a dedup key), which may differ from the name
      // the event was recorded under (a renamed host ships its older events).
      if (!opts_.collector && st->col_text(5) != ev.node())
        return col_mismatch("node", st->col_text(5), ev.node());
      if (opts_.collector && (st->col_null(7) || st->col_u(7) != ev.seq()))
        return col_mismatch("origin_seq", st->col_null(7) ? "NULL" : std::to_string(st->col_u(7)),
                            std::to_string(ev.seq()));
      prev = std::move(hash_col);
      ++rep.checked;
      ++expect;
    }
    if (rc != SQLITE_DONE) return db_error(db, "verify: read events", path_);
    if (expect - 1 < head->seq)
      return broken(expect, expect == head->seq
                                ? fmt::format("deleted: seq {} is missing at the end (the head is seq {})", expect,
                                              head->seq)
                                : fmt::format("deleted: seq {}..{} are missing at the end (the head is seq {})",
                                              expect, head->seq, head->seq));
    if (prev != head->hash)
      return broken(head->seq, "edited: the last row's hash does not match the recorded head hash");
  }
  rep.ok = true;
  release(std::move(*rd));
  return rep;
}

Status EventStore::kv_set(const std::string& key, const std::string& value) {
  if (!writer_) return error(fmt::format("write {}: opened read-only", path_));
  std::lock_guard lk(write_mu_);
  auto st = Stmt::prepare(writer_, "INSERT OR REPLACE INTO kv(key, value) VALUES(?, ?)", path_);
  if (!st) return std::unexpected(st.error());
  st->bind(1, key);
  st->bind(2, value);
  if (st->step() != SQLITE_DONE) return db_error(writer_, "write kv " + key, path_);
  return {};
}

Result<std::optional<std::string>> EventStore::kv_get(const std::string& key) const {
  auto rd = reader();
  if (!rd) return std::unexpected(rd.error());
  auto st = Stmt::prepare(rd->get(), "SELECT value FROM kv WHERE key = ?", path_);
  if (!st) return std::unexpected(st.error());
  st->bind(1, key);
  std::optional<std::string> v;
  int rc = st->step();
  if (rc == SQLITE_ROW) v = st->col_text(0);
  else if (rc != SQLITE_DONE) return db_error(rd->get(), "read kv " + key, path_);
  st = Stmt();
  release(std::move(*rd));
  return v;
}

// Lowest acknowledged seq over all endpoints: age retention keeps what is above it.
// UINT64_MAX when no endpoint ever acknowledged anything (nothing to keep for).
Result<uint64_t> EventStore::retention_pin() const {
  auto st = Stmt::prepare(writer_, "SELECT value FROM kv WHERE substr(key, 1, length(?1)) = ?1", path_);
  if (!st) return std::unexpected(st.error());
  st->bind(1, opts_.retention_pin_prefix);
  uint64_t pin = std::numeric_limits<uint64_t>::max();
  int rc;
  while ((rc = st->step()) == SQLITE_ROW) pin = std::min(pin, parse_u64(st->col_text(0)).value_or(0));
  if (rc != SQLITE_DONE) return db_error(writer_, "read retention pins", path_);
  return pin;
}

// Caller holds write_mu_. Deletes rows up to `seq`, moves the checkpoint to the last
// deleted row, and (if any deleted row was not yet shipped) records a Loss event.
Status EventStore::delete_through(uint64_t seq, uint64_t unshipped) {
  Txn t(writer_, path_);
  if (auto r = t.begin(true); !r) return r;
  auto st = Stmt::prepare(writer_, "SELECT hash FROM events WHERE seq = ?", path_);
  if (!st) return std::unexpected(st.error());
  st->bind_u(1, seq);
  if (st->step() != SQLITE_ROW) return error(fmt::format("retention: seq {} not in {}", seq, path_));
  std::string hash = st->col_blob(0);
  st = Stmt();
  auto del = Stmt::prepare(writer_, "DELETE FROM events WHERE seq <= ?", path_);
  if (!del) return std::unexpected(del.error());
  del->bind_u(1, seq);
  if (del->step() != SQLITE_DONE) return db_error(writer_, "retention delete", path_);
  if (auto r = meta_put(writer_, "checkpoint_seq", std::to_string(seq), path_); !r) return r;
  if (auto r = meta_put(writer_, "checkpoint_hash", hash, path_); !r) return r;
  uint64_t last = 0;
  if (unshipped > 0 && !opts_.collector) {
    auto head = read_head(writer_);
    if (!head) return std::unexpected(head.error());
    std::vector<v1::Event> loss(1);
    loss[0].mutable_loss()->set_count(unshipped);
    loss[0].mutable_loss()->set_reason("retention_unshipped");
    loss[0].mutable_loss()->set_where("store");
    auto r = insert_locked(loss, *head);
    if (!r) return std::unexpected(r.error());
    last = *r;
  }
  if (auto r = t.commit(); !r) return r;
  if (last) note_appended(last);
  if (unshipped)
    spdlog::warn("retention: the store exceeded its size limit and deleted {} events the audit endpoint had not "
                 "acknowledged (recorded as a Loss event)",
                 unshipped);
  return {};
}

Status EventStore::apply_retention() {
  if (!writer_) return error(fmt::format("retention on {}: opened read-only", path_));
  if (!opts_.max_bytes && opts_.max_age.count() == 0) return {};
  std::lock_guard lk(write_mu_);
  auto pin = retention_pin();
  if (!pin) return std::unexpected(pin.error());
  auto scalar = [&](const std::string& sql) -> Result<uint64_t> {
    auto st = Stmt::prepare(writer_, sql, path_);
    if (!st) return std::unexpected(st.error());
    if (st->step() != SQLITE_ROW) return db_error(writer_, sql, path_);
    return st->col_null(0) ? 0 : st->col_u(0);
  };

  if (opts_.max_age.count() > 0) {
    uint64_t cutoff = now_ns() - static_cast<uint64_t>(std::chrono::nanoseconds(opts_.max_age).count());
    // Only a prefix is ever deleted (the chain stays one piece): everything before the
    // first row that is young enough.
    auto young = scalar(fmt::format("SELECT min(seq) FROM events WHERE time_ns >= {}", cutoff));
    if (!young) return std::unexpected(young.error());
    auto last = scalar("SELECT max(seq) FROM events");
    if (!last) return std::unexpected(last.error());
    uint64_t through = *young ? *young - 1 : *last;
    through = std::min(through, *pin);  // age is soft: keep what is not yet shipped
    auto first = scalar("SELECT min(seq) FROM events");
    if (!first) return std::unexpected(first.error());
    if (*first && through >= *first)
      if (auto r = delete_through(through, 0); !r) return r;
  }

  if (opts_.max_bytes) {
    for (int round = 0; round < 8; ++round) {
      auto pages = scalar("PRAGMA page_count");
      auto free_pages = scalar("PRAGMA freelist_count");
      auto page_size = scalar("PRAGMA page_size");
      if (!pages || !free_pages || !page_size) return error(fmt::format("retention: read size of {}", path_));
      uint64_t used = (*pages - *free_pages) * *page_size;
      if (used <= opts_.max_bytes) break;
      auto rows = scalar("SELECT count(*) FROM events");
      auto first = scalar("SELECT min(seq) FROM events");
      if (!rows || !first) return error(fmt::format("retention: count rows of {}", path_));
      if (*rows <= 1) break;
      // Aim at 90% of the limit so the next append does not trigger another round.
      double frac = static_cast<double>(used - opts_.max_bytes * 9 / 10) / static_cast<double>(used);
      uint64_t n = std::clamp<uint64_t>(static_cast<uint64_t>(frac * static_cast<double>(*rows)) + 1, 1, *rows - 1);
      uint64_t through = *first + n - 1;
      uint64_t unshipped = 0;
      if (*pin != std::numeric_limits<uint64_t>::max() && through > *pin) {
        auto c = scalar(fmt::format("SELECT count(*) FROM events WHERE seq > {} AND seq <= {}", *pin, through));
        if (!c) return std::unexpected(c.error());
        unshipped = *c;
      }
      if (auto r = delete_through(through, unshipped); !r) return r;
      if (auto r = exec(writer_, "PRAGMA incremental_vacuum", path_); !r) return r;
    }
  }
  return exec(writer_, "PRAGMA incremental_vacuum", path_);
}

}  // namespace agentcage::core
