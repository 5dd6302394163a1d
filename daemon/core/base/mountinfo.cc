// SPDX-License-Identifier: Apache-2.0
#include "core/base/mountinfo.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "core/base/fs.h"

namespace agentcage::core {
namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo octal.
std::string unescape_mountinfo(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    auto oct = [&](size_t k) { return s[k] >= '0' && s[k] <= '7'; };
    if (s[i] == '\\' && i + 3 < s.size() && oct(i + 1) && oct(i + 2) && oct(i + 3)) {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::vector<std::string_view> split_ws(std::string_view line) {
  std::vector<std::string_view> f;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    size_t j = i;
    while (j < line.size() && line[j] != ' ') ++j;
    if (j > i) f.push_back(line.substr(i, j - i));
    i = j;
  }
  return f;
}

// Calls fn(mount_point, fstype, super_options) for each well-formed mountinfo line.
// Format: id parent major:minor root mountpoint options [optional...] - fstype source superopts
template <class Fn>
void for_each_mount(std::string_view mountinfo, Fn&& fn) {
  size_t pos = 0;
  while (pos < mountinfo.size()) {
    size_t nl = mountinfo.find('\n', pos);
    if (nl == std::string_view::npos) nl = mountinfo.size();
    auto f = split_ws(mountinfo.substr(pos, nl - pos));
    pos = nl + 1;
    size_t sep = 0;
    for (size_t k = 6; k < f.size(); ++k)
      if (f[k] == "-") {
        sep = k;
        break;
      }
    if (sep == 0 || f.size() < sep + 3) continue;
    std::string_view superopts = sep + 3 < f.size() ? f[sep + 3] : std::string_view{};
    if (fn(unescape_mountinfo(f[4]), f[sep + 1], superopts)) return;
  }
}

}  // namespace

Result<std::string> find_cgroup2_mount(std::string_view mountinfo) {
  std::string found;
  for_each_mount(mountinfo, [&](std::string mp, std::string_view fstype, std::string_view) {
    if (fstype != "cgroup2") return false;
    found = std::move(mp);
    return true;
  });
  if (found.empty())
    return error("no cgroup2 filesystem in /proc/self/mountinfo",
                 "mount one: mount -t cgroup2 none /sys/fs/cgroup/unified (agentcage needs cgroup v2 for sandboxes)");
  return found;
}

Result<std::string> find_cgroup1_mount(std::string_view mountinfo, std::string_view controller) {
  std::string found;
  for_each_mount(mountinfo, [&](std::string mp, std::string_view fstype, std::string_view opts) {
    if (fstype != "cgroup") return false;
    std::string_view rest = opts;
    while (!rest.empty()) {
      size_t c = rest.find(',');
      if (rest.substr(0, c) == controller) {
        found = std::move(mp);
        return true;
      }
      if (c == std::string_view::npos) break;
      rest.remove_prefix(c + 1);
    }
    return false;
  });
  if (found.empty()) return error("no cgroup v1 hierarchy with controller '" + std::string(controller) + "'");
  return found;
}

Result<std::string> cgroup2_mount() {
  auto text = read_file("/proc/self/mountinfo");
  if (!text) return std::unexpected(text.error());
  return find_cgroup2_mount(*text);
}

Result<uint64_t> cgroup_id_of(const std::string& path) {
  // The cgroup id is the kernfs node id, which the kernel exposes as the 8-byte file
  // handle of the directory (what libbpf's selftests and systemd use).
  struct {
    struct file_handle fh;
    uint64_t id;
  } h{};
  h.fh.handle_bytes = sizeof(uint64_t);
  int mount_id = 0;
  if (name_to_handle_at(AT_FDCWD, path.c_str(), &h.fh, &mount_id, 0) != 0)
    return sys_error("name_to_handle_at(" + path + ")");
  uint64_t id = 0;
  std::memcpy(&id, h.fh.f_handle, sizeof id);
  return id;
}

}  // namespace agentcage::core
