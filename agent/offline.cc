// SPDX-License-Identifier: Apache-2.0
#include "offline.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "core/base/unique_fd.h"

#include "core/store/process_tree.h"
#include "grpc/services.h"

namespace agentcage::cli {

namespace {

// The cheap checks first, so the common mistakes (a typo, a directory, some other file)
// read as what they are rather than as an SQLite error.
core::Status check_store_file(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) return core::sys_error("--db " + path, errno, "pass the store file (agentcaged --audit-db)");
  if (S_ISDIR(st.st_mode)) return core::error("--db " + path + ": is a directory, not a store file");
  core::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return core::sys_error("--db " + path, errno);
  char magic[16] = {};
  if (::read(fd.get(), magic, sizeof magic) != static_cast<ssize_t>(sizeof magic) ||
      std::memcmp(magic, "SQLite format 3", sizeof magic) != 0)
    return core::error("--db " + path + ": not an agentcage store (not an SQLite database)");
  return {};
}

}  // namespace

core::Result<std::unique_ptr<core::EventStore>> open_store_file(const std::string& path,
                                                                const std::string& chain_key_path) {
  if (auto st = check_store_file(path); !st) return std::unexpected(st.error());
  core::StoreOptions so;
  so.read_only = true;
  so.chain_key_path = chain_key_path;
  auto s = core::EventStore::open(path, so);
  if (!s) s.error().context = "--db " + path + ": not a readable agentcage store: " + s.error().context;
  return s;
}

// As QueryReactor in daemon/grpc/services.cc: the store narrows by seq, time, violations
// and a single sandbox; filter_matches decides the rest, so the two paths cannot drift
// apart on what a filter means.
core::Status query_store(const core::EventStore& store, const v1::EventFilter& f,
                         const std::function<bool(const v1::Event&)>& fn) {
  core::StoreQuery q;
  q.from_seq = f.from_seq();
  q.since_ns = f.since_ns();
  q.until_ns = f.until_ns();
  q.violations_only = f.violations_only();
  if (f.sandbox_ids_size() == 1) q.sandbox_id = f.sandbox_ids(0);
  uint64_t sent = 0;
  return store.query(q, [&](const v1::Event& ev) {
    if (!grpcapi::filter_matches(f, ev)) return true;
    if (!fn(ev)) return false;
    return !(f.limit() && ++sent >= f.limit());
  });
}

core::Result<v1::ProcessTreeResponse> store_process_tree(const core::EventStore& store, const std::string& sandbox) {
  core::ProcessTreeBuilder b;
  core::StoreQuery q;
  q.sandbox_id = sandbox;
  q.kinds = {"exec", "fork", "exit"};
  if (auto st = store.query(q, [&](const v1::Event& ev) {
        b.add(ev);
        return true;
      });
      !st)
    return std::unexpected(st.error());
  return b.build();
}

}  // namespace agentcage::cli
