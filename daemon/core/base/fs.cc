// SPDX-License-Identifier: Apache-2.0
#include "core/base/fs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cstdlib>

#include "core/base/unique_fd.h"

namespace agentcage::core {

Result<std::string> read_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return sys_error("open(" + path + ")");
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error("read(" + path + ")");
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Status write_file(const std::string& path, std::string_view data) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return sys_error("open(" + path + ")");
  ssize_t n = ::write(fd.get(), data.data(), data.size());
  if (n < 0) return sys_error("write(" + path + ")");
  if (static_cast<size_t>(n) != data.size()) return error("write(" + path + "): short write");
  return {};
}

bool path_within(std::string_view path, std::string_view tree) {
  while (tree.size() > 1 && tree.back() == '/') tree.remove_suffix(1);
  if (path.size() < tree.size() || path.substr(0, tree.size()) != tree) return false;
  return path.size() == tree.size() || tree == "/" || path[tree.size()] == '/';
}

std::string find_in_path(const std::string& cmd) {
  const char* env = ::getenv("PATH");
  return find_in_path(cmd, env ? env : kDefaultPath);
}

std::string path_in_env(const std::vector<std::string>& env) {
  for (const auto& e : env)
    if (e.starts_with("PATH=")) return e.substr(5);
  return kDefaultPath;
}

std::string find_in_path(const std::string& cmd, std::string_view path) {
  if (cmd.find('/') != std::string::npos) return cmd;
  std::string dirs(path);
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string cand = (end > start ? dirs.substr(start, end - start) : std::string(".")) + "/" + cmd;
    if (::access(cand.c_str(), X_OK) == 0) return cand;
    start = end + 1;
  }
  return {};
}

Result<std::string> read_input_file(const std::string& path, size_t max_bytes) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  if (!fd) return sys_error("open(" + path + ")");
  struct stat st{};
  if (::fstat(fd.get(), &st) != 0) return sys_error("fstat(" + path + ")");
  if (!S_ISREG(st.st_mode)) return error(path + ": not a regular file");
  if (static_cast<uint64_t>(st.st_size) > max_bytes)
    return error(fmt::format("{}: {} bytes; at most {} are read", path, st.st_size, max_bytes));
  std::string out;
  out.resize(max_bytes + 1);  // one more: a file that grew since fstat is caught too
  size_t got = 0;
  while (got < out.size()) {
    ssize_t n = ::read(fd.get(), out.data() + got, out.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error("read(" + path + ")");
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  if (got > max_bytes) return error(fmt::format("{}: more than {} bytes", path, max_bytes));
  out.resize(got);
  return out;
}

}  // namespace agentcage::core
