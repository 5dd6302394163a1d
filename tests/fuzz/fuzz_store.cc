// SPDX-License-Identifier: Apache-2.0
// The store reader and `audit verify` on a store someone edited: the input is a list of
// edits applied with plain SQLite to a copy of a real store of 8 events (rewrite a row's
// event bytes, hash, prev_hash or seq, delete a row, rewrite its index columns, a meta or
// kv value). Then the store is opened read-only with the page check, queried and verified.
// Properties: never a crash, a hang or an abort, whatever the bytes; every error and
// finding is valid UTF-8; and tamper evidence: any change to a row's event bytes, hash or
// prev_hash, or the removal of a row before the head, makes verify fail (or the open
// refuse), never pass.
//
// Input: repeated [op][seq][len][len bytes]; op % 9 picks the edit, seq % 9 the row.
#include <sqlite3.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

#include "core/store/store.h"
#include "fuzz_common.h"

using namespace agentcage;

namespace {

constexpr int kRows = 8;

v1::Event make_event(int i) {
  v1::Event ev;
  ev.set_node("node-a");
  ev.set_time_ns(1'700'000'000'000'000'000ull + static_cast<uint64_t>(i) * 1000);
  ev.set_sandbox_id(i % 2 ? "sb1" : "sb2");
  ev.mutable_process()->set_pid(1000 + static_cast<uint32_t>(i));
  ev.mutable_process()->set_binary("/bin/sh");
  if (i % 3 == 0) {
    auto* v = ev.mutable_violation();
    v->set_mechanism("landlock");
    v->set_rule("filesystem.deny: /etc/shadow");
    v->set_action("deny");
    v->set_what("open /etc/shadow #" + std::to_string(i));
  } else {
    ev.mutable_exec()->set_filename("/bin/echo");
  }
  return ev;
}

const std::string& template_store() {
  static const std::string path = [] {
    std::string p = fuzz::scratch_dir() + "/template.db";
    auto s = core::EventStore::open(p, core::StoreOptions{});
    if (!s) fuzz::fail("cannot create the template store: " + s.error().message());
    for (int i = 1; i <= kRows; ++i) {
      auto ev = make_event(i);
      if (auto r = (*s)->append(ev); !r) fuzz::fail("append: " + r.error().message());
    }
    return p;
  }();
  return path;
}

struct Db {
  sqlite3* db = nullptr;
  ~Db() { sqlite3_close_v2(db); }
};

// Runs `sql` with ?1 = seq and ?2 = blob; true when it changed a row to different bytes
// (tamper evidence only applies to a real change).
bool edit(sqlite3* db, const char* before_sql, const char* sql, int64_t seq, const std::string& blob) {
  std::string before;
  bool had = false;
  if (before_sql) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, before_sql, -1, &st, nullptr) == SQLITE_OK) {
      sqlite3_bind_int64(st, 1, seq);
      if (sqlite3_step(st) == SQLITE_ROW) {
        had = true;
        const void* p = sqlite3_column_blob(st, 0);
        before.assign(static_cast<const char*>(p ? p : ""), static_cast<size_t>(sqlite3_column_bytes(st, 0)));
      }
    }
    sqlite3_finalize(st);
  }
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) != SQLITE_OK) return false;
  sqlite3_bind_int64(st, 1, seq);
  sqlite3_bind_blob(st, 2, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
  bool changed = sqlite3_step(st) == SQLITE_DONE && sqlite3_changes(db) > 0;
  sqlite3_finalize(st);
  return changed && had && before != blob;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string work = fuzz::scratch_dir() + "/work.db";
  std::error_code ec;
  for (const char* sfx : {"", "-wal", "-shm", ".id"}) std::filesystem::remove(work + sfx, ec);
  // libFuzzer's timer signal can interrupt the copy (sendfile): that is not a finding.
  for (int i = 0; i < 100; ++i) {
    ec.clear();
    std::filesystem::remove(work, ec);
    std::filesystem::copy_file(template_store(), work, ec);
    if (ec != std::errc::interrupted) break;
  }
  if (ec) fuzz::fail("copy the template store: " + ec.message());

  bool tampered = false;
  {
    Db d;
    if (sqlite3_open_v2(work.c_str(), &d.db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) fuzz::fail("sqlite open");
    static const char* kMetaKeys[] = {"store_id", "schema", "mode", "chain", "checkpoint_seq", "checkpoint_hash",
                                      "retention", "head_seq", "chain_epochs"};
    size_t i = 0;
    while (i + 3 <= size) {
      int op = data[i] % 9;
      int64_t seq = data[i + 1] % (kRows + 1);
      size_t len = data[i + 2];
      i += 3;
      std::string blob(reinterpret_cast<const char*>(data + i), std::min(len, size - i));
      i += blob.size();
      switch (op) {
        case 0:
          tampered |= edit(d.db, "SELECT event FROM events WHERE seq=?1", "UPDATE events SET event=?2 WHERE seq=?1",
                           seq, blob);
          break;
        case 1:
          tampered |= edit(d.db, "SELECT hash FROM events WHERE seq=?1", "UPDATE events SET hash=?2 WHERE seq=?1",
                           seq, blob);
          break;
        case 2:
          tampered |= edit(d.db, "SELECT prev_hash FROM events WHERE seq=?1",
                           "UPDATE events SET prev_hash=?2 WHERE seq=?1", seq, blob);
          break;
        case 3: {
          // A row removed before the head leaves a gap; the head itself is a truncation,
          // which only anchors (checkpoints held elsewhere) can show.
          bool gone = edit(d.db, nullptr, "DELETE FROM events WHERE seq=?1 AND length(?2) >= 0", seq, blob);
          if (gone && seq < kRows) tampered = true;
          break;
        }
        case 4:
          edit(d.db, nullptr, "UPDATE events SET kind=?2 WHERE seq=?1", seq, blob);
          break;
        case 5:
          edit(d.db, nullptr, "UPDATE events SET sandbox_id=?2, is_violation=length(?2)%2 WHERE seq=?1", seq, blob);
          break;
        case 6:
          edit(d.db, nullptr, "UPDATE events SET seq=seq+length(?2) WHERE seq=?1", seq, blob);
          break;
        case 7: {
          std::string sql = std::string("INSERT OR REPLACE INTO meta(key, value) VALUES('") + kMetaKeys[seq] +
                            "', ?2 || substr(?1, 1, 0))";
          edit(d.db, nullptr, sql.c_str(), seq, blob);
          break;
        }
        case 8:
          edit(d.db, nullptr, "INSERT OR REPLACE INTO kv(key, value) VALUES('audit.acked/x' || ?1, ?2)", seq, blob);
          break;
      }
    }
  }

  core::StoreOptions o;
  o.read_only = true;
  o.check_pages = true;
  auto s = core::EventStore::open(work, o);
  if (!s) {
    fuzz::check(fuzz::valid_utf8(s.error().message()), "an open error is not valid UTF-8");
    return 0;
  }
  int seen = 0;
  auto q = (*s)->query(core::StoreQuery{}, [&](const v1::Event& ev) {
    // An event the reader hands on (a decoded row, or a Loss in place of one that does not
    // decode) carries text, whatever the row's columns hold.
    fuzz::check(fuzz::valid_utf8(ev.sandbox_id()) && fuzz::valid_utf8(ev.node()), "a queried event's ids are not text");
    return ++seen < 1000;
  });
  if (!q) fuzz::check(fuzz::valid_utf8(q.error().message()), "a query error is not valid UTF-8");
  core::StoreQuery vq;
  vq.violations_only = true;
  (void)(*s)->query(vq, [](const v1::Event&) { return true; });
  auto v = (*s)->verify();
  if (!v) {
    fuzz::check(fuzz::valid_utf8(v.error().message()), "a verify error is not valid UTF-8");
    return 0;
  }
  fuzz::check(fuzz::valid_utf8(v->what), "a verify finding is not valid UTF-8: " + v->what);
  for (const auto& n : v->notes) fuzz::check(fuzz::valid_utf8(n), "a verify note is not valid UTF-8");
  if (tampered && v->ok) fuzz::fail("a store whose rows were changed verifies as intact");
  return 0;
}
