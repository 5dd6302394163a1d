// SPDX-License-Identifier: Apache-2.0
#include "core/store/chain_key.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <filesystem>
#include <sstream>

#include "core/base/fs.h"
#include "core/base/text.h"
#include "core/base/unique_fd.h"
#include "core/store/store.h"

namespace agentcage::core {
namespace {

constexpr size_t kSecretBytes = 32;
constexpr size_t kMaxKeyFileBytes = 1 << 20;

std::optional<std::string> from_hex(std::string_view h) {
  if (h.size() % 2) return std::nullopt;
  std::string out;
  auto nib = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (size_t i = 0; i < h.size(); i += 2) {
    int hi = nib(h[i]), lo = nib(h[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi << 4 | lo);
  }
  return out;
}

std::string key_line(const ChainKey& k) {
  return fmt::format("v1 {} {} {}\n", k.id, to_hex(k.secret), k.created);
}

Result<ChainKey> fresh_key() {
  ChainKey k;
  k.secret.resize(kSecretBytes);
  if (getrandom(k.secret.data(), kSecretBytes, 0) != static_cast<ssize_t>(kSecretBytes))
    return sys_error("getrandom(chain key)");
  k.id = chain_key_id(k.secret);
  k.created = static_cast<uint64_t>(::time(nullptr));
  return k;
}

// Who may hold the key file: root or this user, nobody else able to read or write it.
Status check_safe(const std::string& path, const struct stat& st) {
  if (!S_ISREG(st.st_mode)) return error(fmt::format("chain key {}: not a regular file", path));
  if (st.st_uid != 0 && st.st_uid != ::geteuid())
    return error(fmt::format("chain key {}: owned by uid {}, not by root or this user", path, st.st_uid),
                 "the key must belong to whoever writes the store: chown root " + path);
  if (st.st_mode & 077)
    return error(fmt::format("chain key {}: mode {:04o} lets other users read or change it", path, st.st_mode & 07777),
                 "chmod 600 " + path + " (and rotate the key: agentcage audit keygen --rotate)");
  return {};
}

}  // namespace

const ChainKey* ChainKeyring::find(std::string_view id) const {
  int i = index(id);
  return i < 0 ? nullptr : &keys[static_cast<size_t>(i)];
}

int ChainKeyring::index(std::string_view id) const {
  for (size_t i = 0; i < keys.size(); ++i)
    if (keys[i].id == id) return static_cast<int>(i);
  return -1;
}

std::string chain_key_id(std::string_view secret) {
  static constexpr std::string_view kLabel = "agentcage chain key id";
  return to_hex(chain_hash(kLabel, secret)).substr(0, 16);  // SHA-256(label || key)
}

std::string hmac_sha256(std::string_view key, std::string_view a, std::string_view b) {
  // The one-shot HMAC() (HMAC_CTX is deprecated in OpenSSL 3): one copy of a small row.
  std::string msg;
  msg.reserve(a.size() + b.size());
  msg.append(a).append(b);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(msg.data()),
       msg.size(), md, &len);
  return std::string(reinterpret_cast<char*>(md), len);
}

Result<ChainKeyring> load_chain_keys(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  if (!fd) return sys_error(fmt::format("open chain key {}", path), errno);
  struct stat st{};
  if (::fstat(fd.get(), &st) != 0) return sys_error(fmt::format("stat chain key {}", path));
  if (auto r = check_safe(path, st); !r) return std::unexpected(r.error());
  auto text = read_input_file(path, kMaxKeyFileBytes);
  if (!text) return std::unexpected(text.error());
  ChainKeyring ring;
  ring.path = path;
  std::istringstream in(*text);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ls(line);
    std::string ver, id, hexkey, created;
    ls >> ver >> id >> hexkey >> created;
    auto bad = [&](const std::string& what) {
      return error(fmt::format("chain key {}:{}: {}", path, n, what),
                   "each line is 'v1 ID HEX CREATED' as written by agentcage audit keygen");
    };
    if (ver != "v1") return bad("unknown version '" + escape_text(ver) + "'");
    auto secret = from_hex(hexkey);
    if (!secret || secret->size() != kSecretBytes) return bad("the key is not 64 hex digits");
    if (chain_key_id(*secret) != id) return bad("the key id does not match the key");
    ring.keys.push_back(ChainKey{id, *secret, parse_u64(created).value_or(0)});
  }
  if (ring.keys.empty()) return error(fmt::format("chain key {}: no key in the file", path), "agentcage audit keygen");
  return ring;
}

Result<ChainKeyring> create_chain_key(const std::string& path, bool rotate) {
  auto key = fresh_key();
  if (!key) return std::unexpected(key.error());
  if (rotate) {
    auto ring = load_chain_keys(path);  // checks ownership and mode first
    if (!ring) return std::unexpected(ring.error());
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) return sys_error(fmt::format("open chain key {} to rotate", path));
    std::string line = key_line(*key);
    if (::write(fd.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size()) || ::fsync(fd.get()) != 0)
      return sys_error(fmt::format("append a key to {}", path));
    return load_chain_keys(path);
  }
  auto dir = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!dir.empty() && !std::filesystem::exists(dir, ec)) {
    // 0755: the directory is /etc/agentcage, whose profiles/ everyone reads; the key
    // file itself is what is private (0600).
    std::filesystem::create_directories(dir, ec);
    if (ec) return sys_error(fmt::format("mkdir {}", dir.string()), ec.value());
    ::chmod(dir.c_str(), 0755);
  }
  // O_EXCL: never overwrite a key; rows keyed with it would stop verifying.
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd)
    return sys_error(fmt::format("create chain key {}", path), errno,
                     errno == EEXIST ? "a key exists; rotate it with agentcage audit keygen --rotate" : "");
  std::string text =
      "# agentcage audit chain key: keeps a store rewrite from passing `agentcage audit verify`.\n"
      "# Root only (0600). Never edit; rotate with `agentcage audit keygen --rotate` (old lines stay).\n" +
      key_line(*key);
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()) || ::fsync(fd.get()) != 0)
    return sys_error(fmt::format("write chain key {}", path));
  return load_chain_keys(path);
}

Result<std::optional<ChainKeyring>> chain_keys_for_store(const std::string& path, bool create_if_missing) {
  if (path.empty()) return std::optional<ChainKeyring>();
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT && create_if_missing) {
      auto ring = create_chain_key(path, false);
      if (!ring && ring.error().code == EEXIST) ring = load_chain_keys(path);  // another process won the race
      if (!ring) return std::unexpected(ring.error());
      return std::optional<ChainKeyring>(std::move(*ring));
    }
    if (errno == ENOENT || errno == EACCES) return std::optional<ChainKeyring>();
    return sys_error(fmt::format("stat chain key {}", path));
  }
  if (::access(path.c_str(), R_OK) != 0 && errno == EACCES) return std::optional<ChainKeyring>();
  auto ring = load_chain_keys(path);
  if (!ring) return std::unexpected(ring.error());
  return std::optional<ChainKeyring>(std::move(*ring));
}

}  // namespace agentcage::core
