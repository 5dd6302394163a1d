// SPDX-License-Identifier: Apache-2.0
// What an intruder who can write a store file does, with SQLite's own API: rewrite an
// event and recompute every later hash (with the chain key, as root on the node could, or
// with plain SHA-256 when they have no key), cut the tail and move the head back, delete
// the first rows and disguise it as retention. Header-only: unit and privileged tests.
#pragma once

#include <sqlite3.h>

#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/store/store.h"

namespace agentcage::testing {

class StoreFile {
 public:
  explicit StoreFile(const std::string& path) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) throw std::runtime_error("open " + path);
    sqlite3_busy_timeout(db_, 5000);
  }
  ~StoreFile() { sqlite3_close(db_); }
  StoreFile(const StoreFile&) = delete;
  StoreFile& operator=(const StoreFile&) = delete;

  void exec(const std::string& sql) {
    char* msg = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &msg) != SQLITE_OK) {
      std::string m = msg ? msg : "?";
      sqlite3_free(msg);
      throw std::runtime_error(m + " in: " + sql);
    }
  }

  std::string blob(const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr);
    std::string out;
    if (sqlite3_step(st) == SQLITE_ROW) {
      auto* p = static_cast<const char*>(sqlite3_column_blob(st, 0));
      out.assign(p ? p : "", static_cast<size_t>(sqlite3_column_bytes(st, 0)));
    }
    sqlite3_finalize(st);
    return out;
  }

  // Rewrites the events from `from_seq` on with `edit` (it may change nothing) and
  // recomputes their hashes and the head with `secret` ("" = plain SHA-256).
  void rechain(uint64_t from_seq, const std::string& secret, const std::function<void(uint64_t, v1::Event&)>& edit) {
    std::string prev = blob("SELECT prev_hash FROM events WHERE seq = " + std::to_string(from_seq));
    std::vector<std::pair<uint64_t, std::string>> rows;
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db_, "SELECT seq, event FROM events WHERE seq >= ? ORDER BY seq", -1, &st, nullptr);
    sqlite3_bind_int64(st, 1, static_cast<int64_t>(from_seq));
    while (sqlite3_step(st) == SQLITE_ROW)
      rows.emplace_back(static_cast<uint64_t>(sqlite3_column_int64(st, 0)),
                        std::string(static_cast<const char*>(sqlite3_column_blob(st, 1)),
                                    static_cast<size_t>(sqlite3_column_bytes(st, 1))));
    sqlite3_finalize(st);
    exec("BEGIN");
    for (auto& [seq, bytes] : rows) {
      v1::Event ev;
      ev.ParseFromString(bytes);
      edit(seq, ev);
      std::string nb = core::canonical_bytes(ev);
      std::string h = secret.empty() ? core::chain_hash(prev, nb) : core::hmac_sha256(secret, prev, nb);
      // A careful intruder keeps the query columns in step with the event too.
      auto qc = core::query_columns(ev);
      sqlite3_prepare_v2(db_, "UPDATE events SET event = ?, prev_hash = ?, hash = ?, path = ?, binary = ? WHERE seq = ?",
                         -1, &st, nullptr);
      sqlite3_bind_blob(st, 1, nb.data(), static_cast<int>(nb.size()), SQLITE_TRANSIENT);
      sqlite3_bind_blob(st, 2, prev.data(), static_cast<int>(prev.size()), SQLITE_TRANSIENT);
      sqlite3_bind_blob(st, 3, h.data(), static_cast<int>(h.size()), SQLITE_TRANSIENT);
      if (!qc.path.empty()) sqlite3_bind_text(st, 4, qc.path.data(), static_cast<int>(qc.path.size()), SQLITE_TRANSIENT);
      if (!qc.binary.empty())
        sqlite3_bind_text(st, 5, qc.binary.data(), static_cast<int>(qc.binary.size()), SQLITE_TRANSIENT);
      sqlite3_bind_int64(st, 6, static_cast<int64_t>(seq));
      sqlite3_step(st);
      sqlite3_finalize(st);
      prev = h;
    }
    set_meta_blob("head_hash", prev);
    exec("COMMIT");
  }

  // Drops every row after `seq` and points the head at it: a truncation that leaves
  // every remaining link genuine.
  void truncate_after(uint64_t seq) {
    exec("DELETE FROM events WHERE seq > " + std::to_string(seq));
    set_meta_blob("head_hash", blob("SELECT hash FROM events WHERE seq = " + std::to_string(seq)));
    exec("UPDATE meta SET value = '" + std::to_string(seq) + "' WHERE key = 'head_seq'");
  }

  // Deletes rows 1..seq and moves the retention checkpoint over them, as retention would.
  void delete_head_through(uint64_t seq) {
    std::string h = blob("SELECT hash FROM events WHERE seq = " + std::to_string(seq));
    exec("DELETE FROM events WHERE seq <= " + std::to_string(seq));
    set_meta_blob("checkpoint_hash", h);
    exec("UPDATE meta SET value = '" + std::to_string(seq) + "' WHERE key = 'checkpoint_seq'");
  }

  void set_meta_blob(const std::string& key, const std::string& value) {
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db_, "UPDATE meta SET value = ? WHERE key = ?", -1, &st, nullptr);
    sqlite3_bind_blob(st, 1, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, key.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_step(st);
    sqlite3_finalize(st);
  }

 private:
  sqlite3* db_ = nullptr;
};

}  // namespace agentcage::testing
