// SPDX-License-Identifier: Apache-2.0
// The secret that keys the audit store's hash chain, and the checkpoints that anchor it.
//
// Without a secret anyone who can write the store file can rewrite an event and recompute
// every later hash; with one, every row hash is HMAC-SHA256(key, prev_hash || event) and a
// rewrite needs the key. The key lives outside the store, in a root-only file
// (kDefaultChainKeyPath, mode 0600): one line per key generation, oldest first,
//     v1 <key id> <64 hex digits> <created, unix seconds>
// The last line keys new rows; earlier lines stay so rows written under them still verify.
// `agentcage audit keygen` creates the file (agentcaged does on its first start) and
// `--rotate` appends a new generation; a store records at which seq each key took over
// (meta 'chain_epochs'), so one store may span several keys.
// The key id is the first 16 hex digits of SHA-256("agentcage chain key id" || key): it
// names a key in stores and checkpoints without revealing it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/base/result.h"

namespace agentcage::core {

inline constexpr const char* kDefaultChainKeyPath = "/etc/agentcage/chain.key";

struct ChainKey {
  std::string id;      // 16 hex digits
  std::string secret;  // 32 raw bytes
  uint64_t created = 0;
};

struct ChainKeyring {
  std::string path;
  std::vector<ChainKey> keys;  // oldest first; never empty once loaded
  const ChainKey* find(std::string_view id) const;
  const ChainKey& current() const { return keys.back(); }
  // Index of `id` in keys, or -1.
  int index(std::string_view id) const;
};

std::string chain_key_id(std::string_view secret);
// HMAC-SHA256(key, a || b), 32 raw bytes.
std::string hmac_sha256(std::string_view key, std::string_view a, std::string_view b);

// Reads a key file. Refuses (clearly) a file another user may read or write, one that is
// not owned by root or by this user, and malformed lines (naming the line).
Result<ChainKeyring> load_chain_keys(const std::string& path);

// Creates `path` (0600, parent 0700 if missing) holding one fresh key; with `rotate` the
// file must exist and a new key is appended. Returns the keyring as now on disk.
Result<ChainKeyring> create_chain_key(const std::string& path, bool rotate);

// What a store opener uses: the keyring at `path`; nullopt when `path` is empty, or when
// the file does not exist or this user may not read it (an unprivileged user's own store
// is unkeyed). With `create_if_missing` a missing file is created (agentcaged and root's
// in-process runs: the install-time key). A file that exists but is unsafe or malformed
// is an error: the store must not silently fall back to an unkeyed chain.
Result<std::optional<ChainKeyring>> chain_keys_for_store(const std::string& path, bool create_if_missing);

}  // namespace agentcage::core
