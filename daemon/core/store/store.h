// SPDX-License-Identifier: Apache-2.0
// The tamper-evident event store: SQLite in WAL mode, one row per event, a gap-free
// sequence number and a SHA-256 hash chain. It is also the spool of the remote audit
// stream (the client ships from it and keeps its acknowledged position in `kv`).
//
// Hash chain (the exact recipe, so an independent tool can check a store):
//   canonical(ev) = the deterministic protobuf serialization of the agentcage.v1.Event
//                   (SerializeToCodedStream with SetSerializationDeterministic(true));
//                   in a node store the event's `seq` field is set to its row's seq
//                   before serializing, so the position is part of what is hashed.
//   row.event     = canonical(ev), stored as is (the BLOB is the hashed bytes).
//   row.hash      = SHA-256(row.prev_hash || row.event)            (32 raw bytes)
//   row.prev_hash = hash of the row before; for the first row kept, the checkpoint
//                   hash (meta 'checkpoint_hash'; 32 zero bytes in a store that has
//                   never deleted anything), and seq = meta 'checkpoint_seq' + 1.
// To verify independently: SELECT seq, event, prev_hash, hash FROM events ORDER BY seq;
// check seqs are consecutive from checkpoint_seq + 1 to meta 'head_seq', each prev_hash
// equals the previous hash, each hash equals SHA-256(prev_hash || event), the last hash
// equals meta 'head_hash', and (node store) the event decodes with seq == row seq.
// scripts/verify_audit_chain.py does exactly this with Python's standard library.
//
// Keyed chain (chain_key.h): when the writer holds a chain key, row.hash is
// HMAC-SHA256(key, row.prev_hash || row.event) instead of the plain SHA-256 above, so a
// rewrite that recomputes every later hash needs the key. meta 'chain_epochs' says which
// key hashes which rows: "FIRST_SEQ:KEY_ID;..." in seq order, KEY_ID "-" for plain
// SHA-256 (a store without the meta key is plain SHA-256 from seq 1: older stores). A new
// epoch starts when a writer with a newer key appends; a writer without a key refuses to
// extend a keyed chain, so a keyed stretch followed by an unkeyed one is never written
// and `verify` reports it as tampering.
//
// Retention leaves evidence: every deletion appends a Loss event (reason retention or
// retention_unshipped) naming the last deleted seq, its hash and the policy; `verify`
// requires the last such record to match meta checkpoint_seq/checkpoint_hash, so rows
// deleted by hand and disguised as retention fail in a keyed store.
//
// What a keyed chain cannot show on its own: rows removed from the end together with a
// head rewritten to an earlier row (every remaining link is genuine), or a whole store
// replaced by an unkeyed one. Checkpoints anchor the head outside the node: the audit
// stream sends signed heads (signed_head()) to the collector, which keeps them, and
// verify(anchors) checks the store against them: a truncation, a re-chain or a
// replacement then shows. (journald's Forward Secure Sealing seals with evolving keys so
// even the key holder cannot rewrite the past; here root on the node holds the key, and
// the collector's checkpoints are what a node's root cannot rewrite.)
//
// Collector stores (StoreOptions::collector) hold events from many nodes: each row also
// has (node = the sender, origin_store, origin_seq), unique, so a replayed event is stored
// once. The event is kept as the node sent it (its `seq` is the origin seq; an empty
// `node` is filled with the sender's), and the collector's own chain runs over its own row
// seqs: the same recipe, without the "seq == row seq" rule (origin_seq == event seq instead).
//
// Threads: one EventStore may be shared. Writes (append*, ingest, apply_retention, kv_set)
// serialize on one writer connection behind `write_mu_`; queries and verify each take a
// reader connection from a small pool and see a consistent WAL snapshot, concurrently with
// the writer. Other processes may open the same file (WAL + busy timeout); each write
// transaction re-reads the chain head, so two writers never fork the chain.
#pragma once

#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "agentcage/v1/audit.pb.h"
#include "agentcage/v1/event.pb.h"
#include "core/base/paths.h"
#include "core/base/result.h"
#include "core/store/chain_key.h"

namespace agentcage::core {

inline constexpr size_t kHashBytes = 32;

struct StoreOptions {
  // Collector mode: rows carry (node, origin_store, origin_seq); ingest() dedups on it.
  bool collector = false;
  // synchronous=FULL: a committed transaction survives power loss (what an ack promises).
  // false: synchronous=NORMAL, faster; the last transactions may roll back on power loss,
  // the chain stays intact either way.
  bool durable = true;
  // Retention (0 = unlimited). Age is soft: events the audit stream has not shipped yet
  // (see retention_pin_prefix) are kept. Size is hard: it may delete unshipped events,
  // and then records a Loss event saying how many, so nothing disappears silently.
  uint64_t max_bytes = 0;
  std::chrono::seconds max_age{0};
  // kv keys with this prefix hold acknowledged seqs (decimal); age retention keeps
  // everything above the lowest of them.
  std::string retention_pin_prefix = "audit.acked/";
  // With a limit set, append*() runs apply_retention() itself at most this often
  // (0: after every append; tests). Retention errors are logged, never fail the append.
  std::chrono::seconds retention_every{60};
  // Create the file's parent directory (0700) if missing.
  bool create_dirs = true;
  bool read_only = false;
  // The chain key file (chain_key.h). Empty, missing or unreadable to this user: no key,
  // new rows are hashed with plain SHA-256, and a store whose chain is keyed refuses
  // appends. agentcaged, root's in-process runs and the CLI pass kDefaultChainKeyPath.
  std::string chain_key_path;
  bool create_chain_key = false;  // create chain_key_path if missing (the install-time key)
  // Run SQLite's PRAGMA quick_check at open and refuse a store whose pages are damaged
  // (a b-tree page overwritten, a torn write): such a store opens "healthy" and fails
  // later, on whichever query meets the page. It reads the whole file, so it is for
  // long-lived openers (agentcaged, collector, audit verify), not every in-process run.
  bool check_pages = false;
  // A directory outside the store's own that also remembers which store lives at this
  // path (one small file per store path; kDefaultStoreWitnessDir for agentcaged and root's
  // runs). The identity file beside the store ("<path>.id") goes with the store when its
  // whole directory is deleted; this one does not, so the new store's first record still
  // names the one that was there. Empty: the side file only.
  std::string witness_dir;
};

struct StoreQuery {
  uint64_t from_seq = 0;        // inclusive
  uint64_t to_seq = 0;          // inclusive; 0 = no bound
  uint64_t since_ns = 0;        // time_ns >= since_ns
  uint64_t until_ns = 0;        // time_ns < until_ns; 0 = no bound
  std::string sandbox_id;       // empty = any
  std::vector<std::string> kinds;  // event kinds ("exec", "violation", ...); empty = any
  bool violations_only = false;
  std::string node;             // collector stores: only this node
  uint64_t limit = 0;           // 0 = no limit
};

struct VerifyReport {
  bool ok = false;
  uint64_t checked = 0;          // rows whose link was checked
  uint64_t first_seq = 0;        // first row kept (checkpoint_seq + 1 when ok)
  uint64_t last_seq = 0;         // the head
  uint64_t checkpoint_seq = 0;   // retention deleted everything up to here
  uint64_t first_bad_seq = 0;    // when !ok
  std::string what;              // "edited: ...", "deleted: ...", "reordered: ...", ...
  bool unverifiable = false;     // !ok because a key the chain needs is not available
  std::string head_hash;         // hex: the head verified (to notarise anywhere)
  std::string chain;             // "keyed (key id K)", "unkeyed", "unkeyed through seq N, then keyed"
  std::vector<std::string> notes;  // weaknesses that are not breaks (an unkeyed stretch, ...)
  // verify(anchors):
  uint64_t anchors_checked = 0;  // checkpoints of this store compared with its rows
  uint64_t anchored_seq = 0;     // the newest of them: rows after it are not anchored yet
};

// One key epoch of meta 'chain_epochs'.
struct ChainEpoch {
  uint64_t first_seq = 0;
  std::string key_id;  // "-": plain SHA-256
};
// Parses "FIRST_SEQ:KEY_ID;..." (empty: none). nullopt when malformed or not increasing.
std::optional<std::vector<ChainEpoch>> parse_chain_epochs(std::string_view s);

// HMAC-SHA256(secret, "agentcage.v1.Checkpoint\0" || cp serialized deterministically
// with mac and received_ns cleared).
std::string checkpoint_mac(std::string_view secret, const v1::Checkpoint& cp);

// One batch from one node for a collector store.
struct IngestBatch {
  std::string node;
  std::string store_id;
  std::vector<v1::Event>* events = nullptr;  // origin seq in each event's seq field
  const v1::Checkpoint* checkpoint = nullptr;  // optional: the node's signed head, kept as sent
};

struct IngestResult {
  uint64_t inserted = 0;
  uint64_t duplicates = 0;
  // Resent seqs whose content differs from what is stored for (node, store, seq): two
  // histories under one name. The stored event stays; the other is kept in `conflicts`.
  uint64_t conflicts = 0;
  uint64_t first_conflict_seq = 0;  // the origin seq of the first one; 0: none
  uint64_t checkpoint_seq = 0;  // the batch's checkpoint is stored (its seq); 0: none
};

// The event's kind as stored in the `kind` column: the name of its oneof case
// ("exec", "fork", "exit", "file", "net", "loss", "violation", "syscall"), "" if unset.
// The one kind table is event.proto's `kind` oneof: both functions read its descriptor.
std::string event_kind(const v1::Event& ev);
// Every kind, in field-number order ("exec", "fork", ...), and them joined by ", ".
const std::vector<std::string>& event_kinds();
const std::string& event_kinds_joined();

// The columns beside the blob that sqlite3 users query, derived from the event (and held
// to it by verify): the process's pid, exec_id and binary; the path of a file action, an
// exec or a file violation; the remote address and port of a network action or network
// violation; the violation's mechanism. Empty/0 are stored as NULL. E.g.
//   SELECT seq, pid, binary, path FROM events
//    WHERE sandbox_id = 'X' AND kind IN ('file','violation') AND path LIKE '/home/u/.ssh/%';
struct QueryColumns {
  uint32_t pid = 0;
  std::string exec_id, binary, path, address;
  uint32_t port = 0;
  std::string mechanism;
};
QueryColumns query_columns(const v1::Event& ev);

// canonical(ev) as described above.
std::string canonical_bytes(const v1::Event& ev);
// A store id as a store makes it: 32 lowercase hex digits (16 random bytes).
bool valid_store_id(std::string_view id);
// SHA-256(prev_hash || bytes).
std::string chain_hash(std::string_view prev_hash, std::string_view bytes);

class EventStore {
 public:
  static Result<std::unique_ptr<EventStore>> open(const std::string& path, const StoreOptions& opts = {});
  ~EventStore();
  EventStore(const EventStore&) = delete;
  EventStore& operator=(const EventStore&) = delete;

  // Node stores. Assigns ev.seq (and stamps the hash chain); returns the seq.
  Result<uint64_t> append(v1::Event& ev);
  // All in one transaction; returns the last seq assigned (last_seq() if evs is empty).
  Result<uint64_t> append_batch(std::vector<v1::Event>& evs);

  // Collector stores: each event is stored unless (node, store_id, seq) is already there.
  // All batches in one transaction (group commit); one result per batch.
  Result<std::vector<IngestResult>> ingest(std::span<const IngestBatch> batches);
  // Collector stores: the highest origin seq stored for (node, store_id), 0 if none.
  Result<uint64_t> origin_high(const std::string& node, const std::string& store_id);
  // Collector stores: how many conflicting resends were kept (table `conflicts`).
  Result<uint64_t> conflict_count() const;
  // Collector stores: the newest `limit` checkpoints of `node` (of `store_id` when not
  // empty), newest first, each with received_ns set.
  Result<std::vector<v1::Checkpoint>> checkpoints(const std::string& node, const std::string& store_id,
                                                  uint32_t limit) const;

  // Calls fn for each matching event in seq order until it returns false.
  Status query(const StoreQuery& q, const std::function<bool(const v1::Event&)>& fn) const;

  // Checks the whole chain from the checkpoint to the head; with `anchors` (checkpoints
  // from a collector or a file), also that the store still holds, at each checkpoint's
  // seq, the row hash that was signed then, and reaches at least the newest of them.
  Result<VerifyReport> verify(const std::vector<v1::Checkpoint>* anchors = nullptr) const;

  // The head (seq, hash, retention state) signed with this process's chain key: what the
  // audit stream sends to the collector. Unkeyed chains: key_id and mac empty.
  Result<v1::Checkpoint> signed_head(const std::string& node) const;
  // "none" or "max_age=Ns max_bytes=N": the retention this store was opened with.
  std::string retention_policy() const;
  // The chain keys this process holds (nullopt: none).
  const std::optional<ChainKeyring>& chain_keys() const { return keys_; }

  // Highest seq this process has seen (appended or read at open/with refresh).
  uint64_t last_seq() const { return last_seq_.load(std::memory_order_acquire); }
  // Re-reads the head from the file (another process may have appended).
  Result<uint64_t> refresh_last_seq();
  // Blocks until this process appends past `after` or `timeout` passes; returns last_seq().
  uint64_t wait_for_append(uint64_t after, std::chrono::milliseconds timeout) const;

  // Deletes the oldest rows by StoreOptions::max_age / max_bytes, moving the checkpoint.
  Status apply_retention();

  // Small key/value table (the audit client's acknowledged seq per endpoint).
  Status kv_set(const std::string& key, const std::string& value);
  Result<std::optional<std::string>> kv_get(const std::string& key) const;

  // Random identity fixed when the file was created (32 hex digits).
  const std::string& store_id() const { return store_id_; }
  const std::string& path() const { return path_; }
  bool collector() const { return opts_.collector; }
  // What the identity check found at open: empty when this store continues the one that
  // was here (or is the first at this path), else the finding (a replaced or rolled-back
  // store), also recorded in-band as a Loss. agentcaged shows it in status.
  const std::string& origin_notice() const { return origin_notice_; }

 private:
  EventStore(std::string path, StoreOptions opts);

  struct Head {
    uint64_t seq = 0;
    std::string hash;
  };
  struct ReaderDeleter {
    void operator()(sqlite3* db) const;
  };
  using Reader = std::unique_ptr<sqlite3, ReaderDeleter>;

  Status init_schema();
  Status add_query_columns();
  Status insert_checkpoint(const std::string& node, const v1::Checkpoint& cp);
  Status prepare_epoch_locked(uint64_t next_seq, uint64_t head_seq);
  std::string row_hash(std::string_view prev, std::string_view bytes) const;
  Result<Head> read_head(sqlite3* db) const;
  Result<uint64_t> insert_locked(std::vector<v1::Event>& evs, Head& head);
  Status insert_row(sqlite3_stmt* ins, const v1::Event& ev, const std::string& bytes, Head& head,
                    const std::string& origin_node, const std::string& origin_store, uint64_t origin_seq);
  Status write_head(const Head& head);
  Result<uint64_t> retention_pin() const;
  Status delete_through(uint64_t seq, uint64_t unshipped);
  Result<Reader> reader() const;
  void release(Reader r) const;
  void note_appended(uint64_t seq);
  // The identity file beside the store ("<path>.id": store id and the last head seen),
  // and its copy in StoreOptions::witness_dir, so a store that was deleted (with its
  // directory), truncated or rolled back under the same path is told in-band (a Loss as
  // its next record) rather than taken for a first start.
  Status check_identity();
  Status check_pages(sqlite3* db) const;
  void write_identity(uint64_t seq) const;
  // The witness file for this store's path ("" without StoreOptions::witness_dir).
  std::string witness_path() const;
  std::string write_witness(uint64_t seq) const;  // "" or why it could not be written
  std::string origin_notice_;
  std::atomic<int64_t> identity_written_ns_{0};
  std::atomic<bool> identity_checked_{false};

  std::string path_;
  StoreOptions opts_;
  std::string store_id_;
  std::optional<ChainKeyring> keys_;
  std::string cur_secret_;  // under write_mu_: the key for rows being written ("" = SHA-256)

  mutable std::mutex write_mu_;    // guards writer_ and every write transaction
  sqlite3* writer_ = nullptr;

  mutable std::mutex pool_mu_;     // guards pool_
  mutable std::vector<Reader> pool_;

  std::atomic<uint64_t> last_seq_{0};
  std::atomic<int64_t> last_retention_ns_{0};  // steady clock; when append last ran retention
  mutable std::mutex append_mu_;   // with append_cv_: wakes wait_for_append
  mutable std::condition_variable append_cv_;
};

}  // namespace agentcage::core
