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

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <tuple>

#include "core/base/clock.h"
#include "core/base/loss.h"
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
  else if ((code & 0xff) == SQLITE_FULL)
    hint = "free space on the file system that holds the store (while agentcage runs, what the store cannot take is counted and reported as lost)";
  auto e = error(fmt::format("sqlite {} ({}): {}", what, path, db ? sqlite3_errmsg(db) : "out of memory"), hint);
  // The cause as an errno where there is one, so callers can tell a full disk from damage.
  if ((code & 0xff) == SQLITE_FULL) e.error().code = ENOSPC;
  else if (db && ((code & 0xff) == SQLITE_IOERR || (code & 0xff) == SQLITE_CANTOPEN)) e.error().code = sqlite3_system_errno(db);
  return e;
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

// "2026-12-03T11:40:53Z": times in verify's messages.
std::string format_time_ns(uint64_t ns) {
  time_t t = static_cast<time_t>(ns / 1000000000);
  struct tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
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

QueryColumns query_columns(const v1::Event& ev) {
  QueryColumns c;
  c.pid = ev.process().pid();
  c.exec_id = ev.process().exec_id();
  c.binary = ev.process().binary();
  const v1::NetOp* net = nullptr;
  if (ev.has_file()) c.path = ev.file().path();
  if (ev.has_exec()) c.path = ev.exec().filename();
  if (ev.has_net()) net = &ev.net();
  if (ev.has_violation()) {
    const auto& v = ev.violation();
    c.mechanism = v.mechanism();
    if (v.has_file()) c.path = v.file().path();
    if (v.has_net()) net = &v.net();
  }
  if (net) {
    c.address = net->remote().address();
    c.port = net->remote().port();
  }
  return c;
}

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

std::optional<std::vector<ChainEpoch>> parse_chain_epochs(std::string_view s) {
  std::vector<ChainEpoch> out;
  while (!s.empty()) {
    auto semi = s.find(';');
    std::string_view item = s.substr(0, semi);
    s = semi == std::string_view::npos ? std::string_view() : s.substr(semi + 1);
    auto colon = item.find(':');
    if (colon == std::string_view::npos) return std::nullopt;
    auto seq = parse_u64(item.substr(0, colon));
    std::string id(item.substr(colon + 1));
    if (!seq || *seq == 0 || id.empty()) return std::nullopt;
    // "-" (unkeyed) or a key id (hex, chain_key_id): anything else is damage, and would
    // otherwise reach verify's findings and the terminal as raw bytes.
    bool hex = id.size() <= 64 && std::all_of(id.begin(), id.end(), [](char c) {
                 return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
               });
    if (id != "-" && !hex) return std::nullopt;
    if (!out.empty() && *seq <= out.back().first_seq) return std::nullopt;
    out.push_back(ChainEpoch{*seq, std::move(id)});
  }
  return out;
}

namespace {
std::string join_epochs(const std::vector<ChainEpoch>& eps) {
  std::string out;
  for (const auto& e : eps) out += fmt::format("{}{}:{}", out.empty() ? "" : ";", e.first_seq, e.key_id);
  return out;
}

// The epochs as stored; a store without them is plain SHA-256 from seq 1 when it holds
// rows (written before keys existed), and has none yet when it is new.
Result<std::vector<ChainEpoch>> read_epochs(sqlite3* db, const std::string& path, uint64_t head_seq) {
  auto raw = meta_get(db, "chain_epochs", path);
  if (!raw) return std::unexpected(raw.error());
  if (!*raw) {
    if (head_seq == 0) return std::vector<ChainEpoch>{};
    return std::vector<ChainEpoch>{ChainEpoch{1, "-"}};
  }
  auto eps = parse_chain_epochs(**raw);
  if (!eps) return error(fmt::format("event store {}: meta chain_epochs is damaged", path), "the store was edited");
  return *eps;
}
}  // namespace

std::string checkpoint_mac(std::string_view secret, const v1::Checkpoint& cp) {
  v1::Checkpoint c = cp;
  c.clear_mac();
  c.clear_received_ns();
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream sos(&bytes);
    google::protobuf::io::CodedOutputStream cos(&sos);
    cos.SetSerializationDeterministic(true);
    c.SerializeToCodedStream(&cos);
  }
  static constexpr std::string_view kLabel("agentcage.v1.Checkpoint\0", 24);
  return hmac_sha256(secret, kLabel, bytes);
}

std::string EventStore::row_hash(std::string_view prev, std::string_view bytes) const {
  return cur_secret_.empty() ? chain_hash(prev, bytes) : hmac_sha256(cur_secret_, prev, bytes);
}

// Caller holds write_mu_ inside a write transaction, about to write rows from next_seq.
// Picks the key for them and records a new epoch when this writer's key takes over.
Status EventStore::prepare_epoch_locked(uint64_t next_seq, uint64_t head_seq) {
  auto eps = read_epochs(writer_, path_, head_seq);
  if (!eps) return std::unexpected(eps.error());
  std::string last = eps->empty() ? "" : eps->back().key_id;
  if (!keys_) {
    if (!last.empty() && last != "-")
      return error(fmt::format("append to {}: its chain is keyed (key id {}) and this process holds no chain key",
                               path_, last),
                   fmt::format("run as root (the key is {}) or open a store of your own", kDefaultChainKeyPath));
    if (last.empty())
      if (auto r = meta_put(writer_, "chain_epochs", fmt::format("{}:-", next_seq), path_); !r) return r;
    cur_secret_.clear();
    return {};
  }
  if (last != keys_->current().id) {
    int li = (last.empty() || last == "-") ? -1 : keys_->index(last);
    if (!last.empty() && last != "-" && li < 0) {
      // Another writer rotated the key after this process loaded it: reload once.
      if (auto fresh = load_chain_keys(keys_->path); fresh) keys_ = std::move(*fresh);
      li = keys_->index(last);
      if (li < 0)
        return error(fmt::format("append to {}: its chain is keyed with key id {}, which {} does not hold", path_,
                                 last, keys_->path),
                     "the store was written with another key file: pass that one");
    }
    if (li < static_cast<int>(keys_->keys.size()) - 1) {
      // This writer's key is newer than the chain's (or the chain had none): it takes over.
      eps->push_back(ChainEpoch{next_seq, keys_->current().id});
      if (auto r = meta_put(writer_, "chain_epochs", join_epochs(*eps), path_); !r) return r;
    }
  }
  cur_secret_ = keys_->current().secret;
  return {};
}

std::string EventStore::retention_policy() const {
  if (!opts_.max_bytes && opts_.max_age.count() == 0) return "none";
  return fmt::format("max_age={}s max_bytes={}", opts_.max_age.count(), opts_.max_bytes);
}

void EventStore::ReaderDeleter::operator()(sqlite3* db) const { sqlite3_close_v2(db); }

EventStore::EventStore(std::string path, StoreOptions opts)
    : path_(std::move(path)),
      opts_(std::move(opts)),
      last_retention_ns_(std::chrono::steady_clock::now().time_since_epoch().count()) {}

EventStore::~EventStore() {
  if (identity_checked_.load()) {
    write_identity(last_seq());
    (void)write_witness(last_seq());
  }
  pool_.clear();
  if (writer_) sqlite3_close_v2(writer_);
}

Result<std::unique_ptr<EventStore>> EventStore::open(const std::string& path, const StoreOptions& opts) {
  if (path.empty()) return error("open event store: empty path", "pass --db FILE");
  std::unique_ptr<EventStore> s(new EventStore(path, opts));
  auto keys = chain_keys_for_store(opts.chain_key_path, opts.create_chain_key && !opts.read_only);
  if (!keys) return std::unexpected(keys.error());
  s->keys_ = std::move(*keys);
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
    {
      // Closed before SQLite opens the file: closing any descriptor of a file drops every
      // POSIX lock this process holds on it, SQLite's included, and without its lock on the
      // database file another connection (a sqlite3 shell) takes itself for the last one
      // and deletes the live -wal and -shm files under the writer.
      UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
      if (!fd) return sys_error(fmt::format("open event store {}", path), errno, "check --db and its directory");
      struct stat st{};
      if (::fstat(fd.get(), &st) == 0 && st.st_uid == ::geteuid() && (st.st_mode & 077))
        (void)::fchmod(fd.get(), st.st_mode & 0700);
    }
    for (const char* suffix : {"-wal", "-shm"})
      if (struct stat ws{}; ::stat((path + suffix).c_str(), &ws) == 0 && ws.st_uid == ::geteuid() && (ws.st_mode & 077))
        (void)::chmod((path + suffix).c_str(), ws.st_mode & 0700);
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path.c_str(), &s->writer_, flags, nullptr) != SQLITE_OK)
      return db_error(s->writer_, "open", path);
    sqlite3_busy_timeout(s->writer_, kBusyTimeoutMs);
    // Before the schema checks: they read the events table, and would meet a damaged
    // page as a bare "malformed" error.
    if (opts.check_pages)
      if (auto r = s->check_pages(s->writer_); !r) return std::unexpected(r.error());
    if (auto r = s->init_schema(); !r) return std::unexpected(r.error());
  } else {
    // Schema checks on a reader: a read-only open never creates or changes anything.
    auto rd = s->reader();
    if (!rd) return std::unexpected(rd.error());
    if (opts.check_pages)
      if (auto r = s->check_pages(rd->get()); !r) return std::unexpected(r.error());
    auto id = meta_get(rd->get(), "store_id", path);
    if (!id) return std::unexpected(id.error());
    if (!*id) return error(fmt::format("open event store {}: not an agentcage store (no meta.store_id)", path));
    s->store_id_ = **id;
    if (!valid_store_id(s->store_id_))
      return error(fmt::format("open event store {}: meta 'store_id' is '{}', not a store id (32 hex digits): the "
                               "store's metadata is damaged",
                               path, escape_text(s->store_id_.substr(0, 64))));
    auto mode = meta_get(rd->get(), "mode", path);
    if (!mode) return std::unexpected(mode.error());
    s->opts_.collector = mode->value_or("node") == "collector";
    s->release(std::move(*rd));
  }
  if (auto r = s->refresh_last_seq(); !r) return std::unexpected(r.error());
  if (!opts.read_only)
    if (auto r = s->check_identity(); !r) return std::unexpected(r.error());
  return s;
}

Status EventStore::check_pages(sqlite3* db) const {
  // quick_check: every page's b-tree structure and record format, not index contents
  // (O(N), unlike integrity_check's O(N log N)). At most 5 findings are named.
  auto st = Stmt::prepare(db, "PRAGMA quick_check(5)", path_);
  if (!st) return std::unexpected(st.error());
  std::vector<std::string> found;
  int rc;
  while ((rc = st->step()) == SQLITE_ROW) {
    std::string line = st->col_text(0);
    if (line != "ok") found.push_back(escape_text(line.substr(0, 200)));
  }
  int code = sqlite3_extended_errcode(db);
  std::string msg = rc == SQLITE_DONE ? "" : sqlite3_errmsg(db);
  st = Stmt();
  if (rc != SQLITE_DONE && (code & 0xff) != SQLITE_CORRUPT && (code & 0xff) != SQLITE_NOTADB)
    return db_error(db, "PRAGMA quick_check", path_);
  if (rc != SQLITE_DONE) found.push_back(msg);
  if (found.empty()) return {};
  std::string list;
  for (const auto& f : found) list += (list.empty() ? "" : "; ") + f;
  return error(fmt::format("open event store {}: its pages are damaged (SQLite quick_check: {})", path_, list),
               "the store is damaged: keep it for the investigation (audit verify --db names what still "
               "verifies), move it aside, and start with a new store");
}

bool valid_store_id(std::string_view id) {
  return id.size() == 32 && std::ranges::all_of(id, [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

void EventStore::write_identity(uint64_t seq) const {
  // Written beside the store, replaced atomically; losing it only loses this check.
  std::string side = path_ + ".id", tmp = side + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return;
  std::string text = fmt::format("{} {}\n", store_id_, seq);
  if (::write(fd.get(), text.data(), text.size()) == static_cast<ssize_t>(text.size())) ::rename(tmp.c_str(), side.c_str());
  else ::unlink(tmp.c_str());
}

std::string EventStore::witness_path() const {
  if (opts_.witness_dir.empty() || opts_.read_only) return "";
  // Named by the store's path (absolute, not resolved: its directory may be the thing
  // that is gone), hashed so any path makes a plain file name.
  std::error_code ec;
  std::string abs = std::filesystem::absolute(path_, ec).lexically_normal().string();
  if (ec) abs = path_;
  return fmt::format("{}/{}.id", opts_.witness_dir, to_hex(chain_hash("agentcage store path", abs)).substr(0, 32));
}

std::string EventStore::write_witness(uint64_t seq) const {
  std::string file = witness_path();
  if (file.empty()) return "";
  std::error_code ec;
  if (!std::filesystem::is_directory(opts_.witness_dir, ec)) {
    std::filesystem::create_directories(opts_.witness_dir, ec);
    if (ec) return fmt::format("mkdir: {}", ec.message());
    ::chmod(opts_.witness_dir.c_str(), 0700);
  }
  std::string tmp = file + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return std::strerror(errno);
  // The path on its own line after the identity: for whoever reads the directory.
  std::string abs = std::filesystem::absolute(path_, ec).lexically_normal().string();
  std::string text = fmt::format("{} {}\n{}\n", store_id_, seq, escape_text(abs));
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    std::string why = std::strerror(errno);
    ::unlink(tmp.c_str());
    return why;
  }
  if (::rename(tmp.c_str(), file.c_str()) != 0) return std::strerror(errno);
  return "";
}

namespace {

struct PriorIdentity {
  std::string id;
  uint64_t seq = 0;
};

std::optional<PriorIdentity> read_identity_file(const std::string& file) {
  if (file.empty()) return std::nullopt;
  std::ifstream f(file);
  PriorIdentity p;
  if (f >> p.id >> p.seq) return p;
  return std::nullopt;
}

}  // namespace

Status EventStore::check_identity() {
  uint64_t head = last_seq();
  const std::string witness = witness_path();
  auto side = read_identity_file(path_ + ".id");
  auto wit = read_identity_file(witness);
  std::string what, reason;
  uint64_t lost = 0;
  auto judge = [&](const PriorIdentity& prev, const std::string& how) {
    if (prev.id != store_id_) {
      reason = "store_replaced";
      what = fmt::format("store: {} is a new store; store {} was there (through seq {} at least) and is gone: {}",
                         path_, prev.id, prev.seq, how);
    } else if (head < prev.seq) {
      reason = "store_rolled_back";
      lost = prev.seq - head;
      what = fmt::format("store: {} went back from seq {} to {}: committed events were lost (a lost WAL, a restored "
                         "copy); seqs after {} are reused",
                         path_, prev.seq, head, head);
    }
  };
  if (side) judge(*side, "deleted, truncated or recreated");
  // The side file agreeing is not enough: it goes wherever the store goes (a directory
  // removed whole, or restored from a copy together with its store).
  if (reason.empty() && wit)
    judge(*wit, side ? fmt::format("replaced together with its identity file (the witness {} remembers it)", witness)
                     : fmt::format("deleted, truncated or recreated, its identity file with it (the witness {} "
                                   "remembers it)",
                                   witness));
  if (!reason.empty()) {
    spdlog::error("{}", what);
    origin_notice_ = what;
    if (opts_.collector) {
      // A collector store takes only ingested events: the log says it.
    } else {
      std::vector<v1::Event> loss{loss_event(reason, lost, what)};
      if (auto r = append_batch(loss); !r) return std::unexpected(r.error());
      head = last_seq();
    }
  }
  write_identity(head);
  if (auto why = write_witness(head); !why.empty())
    spdlog::warn("store {}: cannot write its witness in {} ({}): a removal of the store's whole directory would "
                 "go untold",
                 path_, opts_.witness_dir, why);
  // Only now may appends move the file on: before the check it still holds the previous
  // run's head, which is what the check compares against. Read-only opens never write it.
  identity_checked_.store(true, std::memory_order_release);
  return {};
}

Status EventStore::init_schema() {
  sqlite3* db = writer_;
  // auto_vacuum must be chosen before the first table exists; it lets retention give
  // freed pages back to the file system (incremental_vacuum) without a full VACUUM.
  if (auto r = exec(db, "PRAGMA auto_vacuum = INCREMENTAL", path_); !r) return r;
  if (auto r = exec(db, "PRAGMA journal_mode = WAL", path_); !r) return r;
  if (auto r = exec(db, opts_.durable ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL", path_); !r)
    return r;
  // A checkpointed WAL is cut back to this size, not kept at its peak (a disk that filled
  // once must not stay full of an empty log).
  if (auto r = exec(db, "PRAGMA journal_size_limit = 16777216", path_); !r) return r;
  Txn t(db, path_);
  if (auto r = t.begin(true); !r) return r;
  // Damage a fresh schema would paper over: a store whose events table or meta rows are
  // gone would otherwise be given a new empty table, or a head of 0 and a new identity
  // under rows it already has, and start "healthy" (then store nothing, or a chain that
  // silently restarts).
  auto table_exists = [&](const char* name) -> Result<bool> {
    auto st = Stmt::prepare(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", path_);
    if (!st) return std::unexpected(st.error());
    st->bind(1, std::string_view(name));
    if (st->step() != SQLITE_ROW) return db_error(db, "read the schema", path_);
    return st->col_u(0) > 0;
  };
  auto had_meta = table_exists("meta"), had_events = table_exists("events");
  if (!had_meta) return std::unexpected(had_meta.error());
  if (!had_events) return std::unexpected(had_events.error());
  const char* kMoveAside = "the store is damaged: keep it for the investigation (audit verify --db names what is "
                           "left), move it aside, and start with a new store";
  if (*had_meta && !*had_events)
    return error(fmt::format("open event store {}: the events table is missing but the meta table is there", path_),
                 kMoveAside);
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
    -- Collector stores: the nodes' signed heads (audit.proto Checkpoint), as sent.
    CREATE TABLE IF NOT EXISTS checkpoints(
      node        TEXT NOT NULL,
      store_id    TEXT NOT NULL,
      seq         INTEGER NOT NULL,
      received_ns INTEGER NOT NULL,
      body        BLOB NOT NULL,
      PRIMARY KEY(node, store_id, seq)) WITHOUT ROWID;
    CREATE UNIQUE INDEX IF NOT EXISTS events_origin ON events(node, origin_store, origin_seq)
      WHERE origin_seq IS NOT NULL;
    -- Collector stores: a resent (node, store, seq) whose content differs from the stored
    -- one (a forged or replaced history), kept as received; the events row is unchanged.
    CREATE TABLE IF NOT EXISTS conflicts(
      node        TEXT NOT NULL,
      store_id    TEXT NOT NULL,
      origin_seq  INTEGER NOT NULL,
      received_ns INTEGER NOT NULL,
      event       BLOB NOT NULL);
  )sql";
  if (auto r = exec(db, kSchema, path_); !r) return r;

  {
    auto st = Stmt::prepare(db, "SELECT count(*), coalesce(max(seq), 0) FROM events", path_);
    if (!st) return std::unexpected(st.error());
    if (st->step() != SQLITE_ROW) return db_error(db, "count events", path_);
    uint64_t rows = st->col_u(0), max_seq = st->col_u(1);
    st = Stmt();
    if (rows > 0) {
      for (const char* key : {"store_id", "mode", "schema", "head_seq", "head_hash"}) {
        auto v = meta_get(db, key, path_);
        if (!v) return std::unexpected(v.error());
        if (!*v)
          return error(fmt::format("open event store {}: meta '{}' is missing but {} events remain", path_, key, rows),
                       kMoveAside);
      }
      auto head = meta_get(db, "head_seq", path_);
      if (!head) return std::unexpected(head.error());
      auto head_seq = parse_u64(head->value_or(""));
      if (!head_seq || *head_seq < max_seq)
        return error(fmt::format("open event store {}: events run to seq {} past the recorded head '{}'", path_,
                                 max_seq, head->value_or("")),
                     kMoveAside);
    }
  }

  unsigned char rnd[16];
  if (getrandom(rnd, sizeof rnd, 0) != static_cast<ssize_t>(sizeof rnd)) return sys_error("getrandom(store id)");
  std::string mode = opts_.collector ? "collector" : "node";
  // INSERT OR IGNORE: an existing store keeps its identity, chain and mode.
  for (auto [k, v] : std::initializer_list<std::pair<const char*, std::string>>{
           {"schema", std::to_string(kSchemaVersion)},
           {"mode", mode},
           {"store_id", to_hex(std::string_view(reinterpret_cast<char*>(rnd), sizeof rnd))},
           {"checkpoint_seq", "0"},
           {"checkpoint_hash", kZeroHash},
           {"head_seq", "0"},
           {"head_hash", kZeroHash}})
    if (auto r = meta_put(db, k, v, path_, false); !r) return r;
  if (auto r = add_query_columns(); !r) return r;

  auto schema = meta_get(db, "schema", path_);
  if (!schema) return std::unexpected(schema.error());
  if (!parse_u64(schema->value_or("")))
    return error(fmt::format("open event store {}: meta 'schema' is '{}', not a version number: the store's "
                             "metadata is damaged",
                             path_, escape_text(schema->value_or("").substr(0, 64))),
                 kMoveAside);
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
  // The id names this chain to the collector and the identity file: a damaged one would
  // ship this history under a name that is not its own.
  if (!valid_store_id(store_id_))
    return error(fmt::format("open event store {}: meta 'store_id' is '{}', not a store id (32 hex digits): the "
                             "store's metadata is damaged",
                             path_, escape_text(store_id_.substr(0, 64))),
                 kMoveAside);
  return t.commit();
}

// The columns people query with sqlite3 (query_columns), added to a store created before
// them. Rows from meta 'columns_from_seq' on have them, and verify holds them to the event.
Status EventStore::add_query_columns() {
  auto st = Stmt::prepare(writer_, "SELECT count(*) FROM pragma_table_info('events') WHERE name = 'mechanism'", path_);
  if (!st) return std::unexpected(st.error());
  if (st->step() != SQLITE_ROW) return db_error(writer_, "read the events table's columns", path_);
  bool have = st->col_u(0) > 0;
  st = Stmt();
  if (!have) {
    static const char* kAdd = R"sql(
      ALTER TABLE events ADD COLUMN pid INTEGER;
      ALTER TABLE events ADD COLUMN exec_id TEXT;
      ALTER TABLE events ADD COLUMN binary TEXT;
      ALTER TABLE events ADD COLUMN path TEXT;
      ALTER TABLE events ADD COLUMN address TEXT;
      ALTER TABLE events ADD COLUMN port INTEGER;
      ALTER TABLE events ADD COLUMN mechanism TEXT;
    )sql";
    if (auto r = exec(writer_, kAdd, path_); !r) return r;
  }
  auto head = read_head(writer_);
  if (!head) return std::unexpected(head.error());
  return meta_put(writer_, "columns_from_seq", std::to_string(head->seq + 1), path_, false);
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
  // The identity file follows the head every few seconds (a rollback smaller than that
  // after a crash goes unseen here; the collector's checkpoints anchor the rest).
  int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
  int64_t prev = identity_written_ns_.load();
  if (identity_checked_.load(std::memory_order_acquire) &&
      now - prev >= std::chrono::nanoseconds(std::chrono::seconds(2)).count() &&
      identity_written_ns_.compare_exchange_strong(prev, now))
    write_identity(std::max(seq, cur));
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
  std::string hash = row_hash(head.hash, bytes);
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
    // 0: an event the node could not store (no seq of its own): NULL, outside the dedup.
    if (origin_seq) sqlite3_bind_int64(ins, 8, static_cast<int64_t>(origin_seq));
  }
  sqlite3_bind_blob(ins, 9, bytes.data(), static_cast<int>(bytes.size()), SQLITE_STATIC);
  sqlite3_bind_blob(ins, 10, head.hash.data(), static_cast<int>(head.hash.size()), SQLITE_STATIC);
  sqlite3_bind_blob(ins, 11, hash.data(), static_cast<int>(hash.size()), SQLITE_STATIC);
  QueryColumns qc = query_columns(ev);
  if (qc.pid) sqlite3_bind_int64(ins, 12, qc.pid);
  // TEXT bound from the raw bytes (SQLite does not check UTF-8): LIKE and = work on them.
  auto text = [&](int i, const std::string& v) {
    if (!v.empty()) sqlite3_bind_text(ins, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
  };
  text(13, qc.exec_id);
  text(14, qc.binary);
  text(15, qc.path);
  text(16, qc.address);
  if (qc.port) sqlite3_bind_int64(ins, 17, qc.port);
  text(18, qc.mechanism);
  if (sqlite3_step(ins) != SQLITE_DONE) return db_error(writer_, fmt::format("insert event seq {}", seq), path_);
  // INSERT OR IGNORE in collector stores: no change means (node, store, seq) was a replay.
  if (sqlite3_changes(writer_) == 1) head = Head{seq, std::move(hash)};
  return {};
}

static constexpr const char* kInsertSql =
    "INSERT INTO events(seq, time_ns, sandbox_id, kind, is_violation, node, origin_store, origin_seq, event, "
    "prev_hash, hash, pid, exec_id, binary, path, address, port, mechanism) "
    "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
static constexpr const char* kInsertIgnoreSql =
    "INSERT OR IGNORE INTO events(seq, time_ns, sandbox_id, kind, is_violation, node, origin_store, origin_seq, "
    "event, prev_hash, hash, pid, exec_id, binary, path, address, port, mechanism) "
    "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";

// Caller holds write_mu_ and an IMMEDIATE transaction; `head` is the current head.
Result<uint64_t> EventStore::insert_locked(std::vector<v1::Event>& evs, Head& head) {
  if (evs.empty()) return head.seq;
  if (auto r = prepare_epoch_locked(head.seq + 1, head.seq); !r) return std::unexpected(r.error());
  auto ins = Stmt::prepare(writer_, kInsertSql, path_);
  if (!ins) return std::unexpected(ins.error());
  uint64_t stamp = 0;
  for (auto& ev : evs) {
    if (ev.time_ns() == 0) ev.set_time_ns(stamp ? stamp : (stamp = wall_ns()));
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
  if (auto r = prepare_epoch_locked(head->seq + 1, head->seq); !r) return std::unexpected(r.error());
  auto ins = Stmt::prepare(writer_, kInsertIgnoreSql, path_);
  if (!ins) return std::unexpected(ins.error());
  auto stored = Stmt::prepare(writer_, "SELECT event FROM events WHERE node = ? AND origin_store = ? AND origin_seq = ?",
                              path_);
  if (!stored) return std::unexpected(stored.error());
  auto keep = Stmt::prepare(
      writer_, "INSERT INTO conflicts(node, store_id, origin_seq, received_ns, event) VALUES(?,?,?,?,?)", path_);
  if (!keep) return std::unexpected(keep.error());
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
      if (head->seq != before) {
        ++out[i].inserted;
        continue;
      }
      // A resend must be the same event: a different one under the same (node, store,
      // seq) means someone else pushed a history under this name (or the node's store
      // was replaced). First write wins in `events`; the other is kept as evidence.
      ++out[i].duplicates;
      stored->reset();
      stored->bind(1, b.node);
      stored->bind(2, b.store_id);
      stored->bind(3, static_cast<int64_t>(ev.seq()));
      if (stored->step() != SQLITE_ROW) return db_error(writer_, "read a stored duplicate", path_);
      if (stored->col_blob(0) == bytes) continue;
      ++out[i].conflicts;
      if (!out[i].first_conflict_seq) out[i].first_conflict_seq = ev.seq();
      keep->reset();
      keep->bind(1, b.node);
      keep->bind(2, b.store_id);
      keep->bind(3, static_cast<int64_t>(ev.seq()));
      keep->bind(4, static_cast<int64_t>(wall_ns()));
      keep->bind_blob(5, bytes);
      if (keep->step() != SQLITE_DONE) return db_error(writer_, "keep a conflicting event", path_);
    }
    if (b.checkpoint) {
      if (auto r = insert_checkpoint(b.node, *b.checkpoint); !r) return std::unexpected(r.error());
      out[i].checkpoint_seq = b.checkpoint->seq();
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

Result<uint64_t> EventStore::conflict_count() const {
  auto rd = reader();
  if (!rd) return std::unexpected(rd.error());
  auto st = Stmt::prepare(rd->get(), "SELECT count(*) FROM conflicts", path_);
  if (!st) return std::unexpected(st.error());
  if (st->step() != SQLITE_ROW) return db_error(rd->get(), "count conflicts", path_);
  uint64_t v = st->col_u(0);
  st = Stmt();
  release(std::move(*rd));
  return v;
}

// Caller holds write_mu_ in a write transaction. A resent checkpoint is kept once.
Status EventStore::insert_checkpoint(const std::string& node, const v1::Checkpoint& cp) {
  v1::Checkpoint c = cp;
  c.set_node(node);
  c.clear_received_ns();
  auto st = Stmt::prepare(
      writer_, "INSERT OR IGNORE INTO checkpoints(node, store_id, seq, received_ns, body) VALUES(?,?,?,?,?)", path_);
  if (!st) return std::unexpected(st.error());
  st->bind(1, node);
  st->bind(2, c.store_id());
  st->bind_u(3, c.seq());
  st->bind_u(4, wall_ns());
  st->bind_blob(5, c.SerializeAsString());
  if (st->step() != SQLITE_DONE) return db_error(writer_, "insert checkpoint", path_);
  return {};
}

Result<std::vector<v1::Checkpoint>> EventStore::checkpoints(const std::string& node, const std::string& store_id,
                                                            uint32_t limit) const {
  auto rd = reader();
  if (!rd) return std::unexpected(rd.error());
  std::string sql = "SELECT body, received_ns FROM checkpoints WHERE node = ?1";
  if (!store_id.empty()) sql += " AND store_id = ?2";
  sql += " ORDER BY received_ns DESC, seq DESC LIMIT ?3";
  auto st = Stmt::prepare(rd->get(), sql, path_);
  if (!st) return std::unexpected(st.error());
  st->bind(1, node);
  if (!store_id.empty()) st->bind(2, store_id);
  st->bind_u(3, limit ? limit : 1000);
  std::vector<v1::Checkpoint> out;
  int rc;
  while ((rc = st->step()) == SQLITE_ROW) {
    v1::Checkpoint c;
    if (!c.ParseFromString(st->col_blob(0))) continue;  // a damaged row anchors nothing
    c.set_received_ns(st->col_u(1));
    out.push_back(std::move(c));
  }
  if (rc != SQLITE_DONE) return db_error(rd->get(), "read checkpoints", path_);
  st = Stmt();
  release(std::move(*rd));
  return out;
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
      ev = loss_event("decode_error", 1,
                      fmt::format("store row {} does not decode (run 'agentcage audit verify')", st->col_u(1)),
                      escape_text(st->col_text(4)), escape_text(st->col_text(3)));  // columns need not be text
      ev.set_seq(st->col_u(1));
      ev.set_time_ns(st->col_u(2));
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

namespace {

VerifyReport& mark_broken(VerifyReport& rep, uint64_t seq, std::string what) {
  rep.ok = false;
  rep.first_bad_seq = seq;
  rep.what = std::move(what);
  return rep;
}

// The keys a verification needs, epoch by epoch, and the walk's position in them.
class EpochCursor {
 public:
  EpochCursor(const std::vector<ChainEpoch>& eps, const std::optional<ChainKeyring>& keys) : eps_(eps), keys_(keys) {}
  // The epoch that hashes row `seq` (rows come in increasing seq order); null before the first.
  const ChainEpoch* at(uint64_t seq) {
    while (i_ + 1 < eps_.size() && eps_[i_ + 1].first_seq <= seq) ++i_;
    return eps_.empty() || eps_[i_].first_seq > seq ? nullptr : &eps_[i_];
  }
  // The secret for an epoch: "" for SHA-256, nullopt when this process lacks the key.
  std::optional<std::string> secret(const ChainEpoch& e) const {
    if (e.key_id == "-") return std::string();
    const ChainKey* k = keys_ ? keys_->find(e.key_id) : nullptr;
    if (!k) return std::nullopt;
    return k->secret;
  }

 private:
  const std::vector<ChainEpoch>& eps_;
  const std::optional<ChainKeyring>& keys_;
  size_t i_ = 0;
};

// rep.chain ("keyed (key id K)", ...) and the notes an operator must read even when intact.
void describe_chain(const std::vector<ChainEpoch>& eps, VerifyReport& rep) {
  std::string ids;
  for (size_t i = 0; i < eps.size(); ++i) {
    uint64_t end = i + 1 < eps.size() ? eps[i + 1].first_seq - 1 : rep.last_seq;
    if (end < rep.first_seq || eps[i].first_seq > rep.last_seq) continue;  // no row kept in it
    if (eps[i].key_id == "-")
      rep.notes.push_back(fmt::format(
          "seq {}..{} are hashed without a key (written before a chain key existed, or by a process without one): "
          "a rewrite that recomputes their hashes passes this check; checkpoints (--against) catch it",
          std::max(rep.first_seq, eps[i].first_seq), end));
    else if (ids.find(eps[i].key_id) == std::string::npos)
      ids += (ids.empty() ? "" : ", ") + eps[i].key_id;
  }
  if (ids.empty()) rep.chain = "unkeyed";
  else rep.chain = fmt::format("{}keyed (key id {})", rep.notes.empty() ? "" : "partly ", ids);
}

struct RetentionRecord {
  uint64_t record_seq = 0, through_seq = 0;
  std::string through_hash;
};

struct Walk {
  sqlite3* db;
  const std::string& path;
  bool collector;
  EpochCursor cursor;
  std::string prev;  // the hash the first kept row must link to
  uint64_t head_seq;
  std::string head_hash;
  std::map<uint64_t, std::string>& anchor_hash;  // seq -> row hash, filled for the anchors' seqs
  uint64_t columns_from;  // rows from here on carry the query columns
  RetentionRecord rec;
};

// The query columns must say what the hashed event says, or a filter could hide it.
std::string column_mismatch(const Stmt& st, const v1::Event& ev, bool collector, uint64_t columns_from) {
  auto m = [](const char* col, const std::string& have, const std::string& want) {
    return fmt::format("edited: column {} ('{}') does not match the event ('{}')", col, escape_text(have),
                       escape_text(want));
  };
  if (st.col_u(1) != ev.time_ns()) return m("time_ns", std::to_string(st.col_u(1)), std::to_string(ev.time_ns()));
  if (st.col_text(2) != ev.sandbox_id()) return m("sandbox_id", st.col_text(2), ev.sandbox_id());
  if (st.col_text(3) != event_kind(ev)) return m("kind", st.col_text(3), event_kind(ev));
  if ((st.col_u(4) != 0) != ev.has_violation())
    return m("is_violation", std::to_string(st.col_u(4)), ev.has_violation() ? "1" : "0");
  // Collector stores: `node` is the sender (a dedup key), which may differ from the name
  // the event was recorded under (a renamed host ships its older events).
  if (!collector && st.col_text(5) != ev.node()) return m("node", st.col_text(5), ev.node());
  // An unstored event the node told in-band has no seq and no origin seq.
  if (collector && (ev.seq() ? st.col_null(7) || st.col_u(7) != ev.seq() : !st.col_null(7)))
    return m("origin_seq", st.col_null(7) ? "NULL" : std::to_string(st.col_u(7)), std::to_string(ev.seq()));
  if (st.col_u(0) < columns_from) return {};  // written before the query columns existed
  QueryColumns c = query_columns(ev);
  if (st.col_u(11) != c.pid) return m("pid", std::to_string(st.col_u(11)), std::to_string(c.pid));
  for (auto [i, name, want] : {std::tuple{12, "exec_id", &c.exec_id}, std::tuple{13, "binary", &c.binary},
                               std::tuple{14, "path", &c.path}, std::tuple{15, "address", &c.address},
                               std::tuple{17, "mechanism", &c.mechanism}})
    if (st.col_text(i) != *want) return m(name, escape_text(st.col_text(i)), escape_text(*want));
  if (st.col_u(16) != c.port) return m("port", std::to_string(st.col_u(16)), std::to_string(c.port));
  return {};
}

// One row's checks; "" when it holds. `expect` is the seq it must have.
std::string check_row(Walk& w, const Stmt& st, uint64_t expect, const VerifyReport& rep, v1::Event& ev,
                      bool& unverifiable) {
  uint64_t seq = st.col_u(0);
  if (seq < expect)
    return fmt::format("inserted: row seq {} is at or below the retention checkpoint {}", seq, rep.checkpoint_seq);
  if (seq > expect)
    return seq - 1 == expect ? fmt::format("deleted: seq {} is missing (the next row is seq {})", expect, seq)
                             : fmt::format("deleted: seq {}..{} are missing (the next row is seq {})", expect,
                                           seq - 1, seq);
  if (seq > w.head_seq) return fmt::format("inserted: row seq {} is past the recorded head seq {}", seq, w.head_seq);
  const ChainEpoch* ep = w.cursor.at(seq);
  if (!ep) return fmt::format("edited: no chain epoch covers seq {} (meta chain_epochs)", seq);
  auto secret = w.cursor.secret(*ep);
  if (!secret) {
    unverifiable = true;
    return fmt::format("cannot check seq {} on: the chain is keyed there with key id {}, which this process does "
                       "not hold (run as root, or pass --chain-key FILE)",
                       seq, ep->key_id);
  }
  std::string bytes = st.col_blob(8), prev_col = st.col_blob(9), hash_col = st.col_blob(10);
  bool parsed = ev.ParseFromString(bytes);
  std::string want = secret->empty() ? chain_hash(prev_col, bytes) : hmac_sha256(*secret, prev_col, bytes);
  if (want != hash_col) {
    if (parsed && !w.collector && ev.seq() != seq)
      return fmt::format("reordered: row seq {} holds the event stored as seq {}", seq, ev.seq());
    return secret->empty() ? "edited: the event's bytes do not match the row's hash"
                           : fmt::format("edited: the row's hash is not the keyed hash (key id {}) of its bytes: "
                                         "edited, or re-chained without the key",
                                         ep->key_id);
  }
  if (!parsed) return "edited: the row's event does not decode as agentcage.v1.Event";
  if (!w.collector && ev.seq() != seq)
    return fmt::format("reordered: row seq {} holds the event stored as seq {}", seq, ev.seq());
  if (prev_col != w.prev)
    return seq == rep.first_seq ? "chain break: prev_hash does not match the retention checkpoint"
                                : fmt::format("chain break: prev_hash does not match the hash of seq {} "
                                              "(that row was rewritten, or rows were reordered)",
                                              seq - 1);
  if (auto m = column_mismatch(st, ev, w.collector, w.columns_from); !m.empty()) return m;
  if (ev.has_loss() && ev.loss().through_seq() > 0)
    w.rec = RetentionRecord{seq, ev.loss().through_seq(), ev.loss().through_hash()};
  if (auto it = w.anchor_hash.find(seq); it != w.anchor_hash.end()) it->second = hash_col;
  w.prev = std::move(hash_col);
  return {};
}

// Every row from the checkpoint to the head; false when one is broken (rep says which).
Result<bool> walk_rows(Walk& w, VerifyReport& rep) {
  auto st = Stmt::prepare(w.db,
                          "SELECT seq, time_ns, sandbox_id, kind, is_violation, node, origin_store, origin_seq, "
                          "event, prev_hash, hash, pid, exec_id, binary, path, address, port, mechanism "
                          "FROM events ORDER BY seq",
                          w.path);
  if (!st) return std::unexpected(st.error());
  uint64_t expect = rep.first_seq;
  v1::Event ev;
  int rc;
  while ((rc = st->step()) == SQLITE_ROW) {
    bool unverifiable = false;
    if (auto why = check_row(w, *st, expect, rep, ev, unverifiable); !why.empty()) {
      rep.unverifiable = unverifiable;
      uint64_t seq = st->col_u(0);
      mark_broken(rep, seq > expect ? expect : seq, std::move(why));
      return false;
    }
    ++rep.checked;
    ++expect;
  }
  if (rc != SQLITE_DONE) return db_error(w.db, "verify: read events", w.path);
  if (expect - 1 < w.head_seq) {
    mark_broken(rep, expect,
                expect == w.head_seq
                    ? fmt::format("deleted: seq {} is missing at the end (the head is seq {})", expect, w.head_seq)
                    : fmt::format("deleted: seq {}..{} are missing at the end (the head is seq {})", expect,
                                  w.head_seq, w.head_seq));
    return false;
  }
  if (w.prev != w.head_hash) {
    mark_broken(rep, w.head_seq, "edited: the last row's hash does not match the recorded head hash");
    return false;
  }
  return true;
}

// The rows against checkpoints signed earlier (a collector's, or a file's); false when
// the store no longer matches them (rep says how).
bool check_anchors(const std::vector<v1::Checkpoint>& anchors, const std::string& store_id,
                   const std::map<uint64_t, std::string>& row_hash, const std::optional<ChainKeyring>& keys,
                   VerifyReport& rep) {
  std::vector<const v1::Checkpoint*> mine;
  std::set<std::string> others;
  for (const auto& a : anchors) {
    if (a.store_id() == store_id) mine.push_back(&a);
    else others.insert(a.store_id());
  }
  if (mine.empty()) {
    std::string o;
    for (const auto& s : others) o += (o.empty() ? "" : ", ") + s;
    mark_broken(rep, rep.first_seq,
                others.empty() ? fmt::format("unanchored: no checkpoint of store {} to compare with", store_id)
                               : fmt::format("replaced: no checkpoint of store {}; the node's checkpoints are for "
                                             "store(s) {}: this store is not the one that was shipped",
                                             store_id, o));
    return false;
  }
  std::sort(mine.begin(), mine.end(), [](auto* a, auto* b) { return a->seq() < b->seq(); });
  bool retention_seen = false;
  for (const auto* a : mine) {
    if (!a->key_id().empty()) {
      const ChainKey* k = keys ? keys->find(a->key_id()) : nullptr;
      if (!k)
        rep.notes.push_back(fmt::format("checkpoint at seq {}: key id {} not held here, signature not checked",
                                        a->seq(), a->key_id()));
      else if (checkpoint_mac(k->secret, *a) != a->mac()) {
        mark_broken(rep, a->seq(), fmt::format("forged checkpoint: the one at seq {} is not signed with key id {}",
                                               a->seq(), a->key_id()));
        return false;
      }
    }
    retention_seen = retention_seen || (a->retention() != "none" && !a->retention().empty());
    if (a->seq() > rep.last_seq) {
      mark_broken(rep, rep.last_seq + 1,
                  fmt::format("truncated: a checkpoint signed at {} says the store reached seq {}; its head is now "
                              "seq {}",
                              format_time_ns(a->time_ns()), a->seq(), rep.last_seq));
      return false;
    }
    if (a->seq() <= rep.checkpoint_seq) continue;  // deleted since: the retention record speaks for it
    auto it = row_hash.find(a->seq());
    if (it == row_hash.end() || it->second != a->hash()) {
      mark_broken(rep, a->seq(),
                  fmt::format("re-chained: row seq {} no longer has the hash signed at {} (the rows up to it were "
                              "rewritten)",
                              a->seq(), format_time_ns(a->time_ns())));
      return false;
    }
    ++rep.anchors_checked;
    rep.anchored_seq = std::max(rep.anchored_seq, a->seq());
  }
  if (rep.checkpoint_seq > mine.front()->checkpoint_seq() && !retention_seen) {
    mark_broken(rep, rep.first_seq,
                fmt::format("deleted: seq 1..{} are gone, but every checkpoint says the node ran without retention",
                            rep.checkpoint_seq));
    return false;
  }
  return true;
}

}  // namespace

Result<VerifyReport> EventStore::verify(const std::vector<v1::Checkpoint>* anchors) const {
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
    rep.head_hash = to_hex(head->hash);
    auto eps = read_epochs(db, path_, head->seq);
    if (!eps) return mark_broken(rep, rep.first_seq, "edited: meta chain_epochs is damaged");
    for (size_t i = 1; i < eps->size(); ++i)
      if ((*eps)[i].key_id == "-" && (*eps)[i - 1].key_id != "-")
        return mark_broken(rep, (*eps)[i].first_seq,
                           fmt::format("edited: the chain drops its key at seq {} (agentcage never writes an "
                                       "unkeyed row after a keyed one)",
                                       (*eps)[i].first_seq));
    describe_chain(*eps, rep);
    std::map<uint64_t, std::string> anchor_hash;
    if (anchors)
      for (const auto& a : *anchors)
        if (a.store_id() == store_id_) anchor_hash[a.seq()];
    auto cols = meta_get(db, "columns_from_seq", path_);
    if (!cols) return std::unexpected(cols.error());
    // No meta: a store read by an older writer's rules; the columns are then not checked.
    uint64_t columns_from = parse_u64(cols->value_or("")).value_or(kMaxSeq);
    Walk w{db, path_, opts_.collector, EpochCursor(*eps, keys_), cph->value_or(kZeroHash), head->seq, head->hash,
           anchor_hash, columns_from, {}};
    auto intact = walk_rows(w, rep);
    if (!intact) return std::unexpected(intact.error());
    if (!*intact) return rep;
    if (!opts_.collector && rep.checkpoint_seq > 0) {
      if (w.rec.record_seq == 0)
        return mark_broken(rep, rep.first_seq,
                           fmt::format("deleted: seq 1..{} are gone and no retention record in the chain says the "
                                       "store deleted them",
                                       rep.checkpoint_seq));
      if (w.rec.through_seq != rep.checkpoint_seq || w.rec.through_hash != cph->value_or(""))
        return mark_broken(rep, rep.first_seq,
                           fmt::format("deleted: the store says seq 1..{} were removed, but its last retention "
                                       "record (seq {}) says 1..{}",
                                       rep.checkpoint_seq, w.rec.record_seq, w.rec.through_seq));
    }
    if (anchors && !check_anchors(*anchors, store_id_, anchor_hash, keys_, rep)) return rep;
  }
  rep.ok = true;
  release(std::move(*rd));
  return rep;
}

Result<v1::Checkpoint> EventStore::signed_head(const std::string& node) const {
  auto rd = reader();
  if (!rd) return std::unexpected(rd.error());
  sqlite3* db = rd->get();
  v1::Checkpoint cp;
  std::vector<ChainEpoch> eps;
  {
    Txn t(db, path_);
    if (auto r = t.begin(false); !r) return std::unexpected(r.error());
    auto head = read_head(db);
    if (!head) return std::unexpected(head.error());
    auto cps = meta_get(db, "checkpoint_seq", path_);
    if (!cps) return std::unexpected(cps.error());
    auto e = read_epochs(db, path_, head->seq);
    if (!e) return std::unexpected(e.error());
    eps = std::move(*e);
    cp.set_seq(head->seq);
    cp.set_hash(head->hash);
    cp.set_checkpoint_seq(parse_u64(cps->value_or("")).value_or(0));
  }
  release(std::move(*rd));
  cp.set_node(node);
  cp.set_store_id(store_id_);
  cp.set_time_ns(wall_ns());
  cp.set_retention(retention_policy());
  std::string key_id = eps.empty() ? "-" : eps.back().key_id;
  if (key_id == "-") return cp;  // unkeyed: nothing to sign with, the collector keeps it as is
  std::lock_guard lk(write_mu_);  // keys_ may be reloaded by a writer
  const ChainKey* k = keys_ ? keys_->find(key_id) : nullptr;
  if (!k)
    return error(fmt::format("sign the head of {}: its chain is keyed with key id {}, which this process does not hold",
                             path_, key_id),
                 "run as root, or pass the chain key file");
  cp.set_key_id(key_id);
  cp.set_mac(checkpoint_mac(k->secret, cp));
  return cp;
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
  auto deleted = static_cast<uint64_t>(sqlite3_changes(writer_));
  if (auto r = meta_put(writer_, "checkpoint_seq", std::to_string(seq), path_); !r) return r;
  if (auto r = meta_put(writer_, "checkpoint_hash", hash, path_); !r) return r;
  uint64_t last = 0;
  if (!opts_.collector) {
    // The deletion's own record, in the chain (keyed, when the chain is): what `verify`
    // checks the checkpoint against. Unshipped rows make it a loss the reader must see.
    auto head = read_head(writer_);
    if (!head) return std::unexpected(head.error());
    std::vector<v1::Event> rec{loss_event(unshipped ? "retention_unshipped" : "retention", unshipped ? unshipped : deleted,
                                          "store")};
    auto* loss = rec[0].mutable_loss();
    loss->set_through_seq(seq);
    loss->set_through_hash(hash);
    loss->set_policy(retention_policy());
    auto r = insert_locked(rec, *head);
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
    uint64_t cutoff = wall_ns() - static_cast<uint64_t>(std::chrono::nanoseconds(opts_.max_age).count());
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
