// SPDX-License-Identifier: Apache-2.0
// Small pure helpers over profile values, shared by validation and the policy compiler.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>

#include "core/policy/profile.h"

namespace agentcage::core {

std::vector<std::string> system_resolvers(const std::string& resolv_conf) {
  std::vector<std::string> out;
  std::ifstream in(resolv_conf);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string key, value;
    if (ls >> key >> value && key == "nameserver") {
      in6_addr a;
      // Link-local v6 resolvers carry a "%iface" zone; keep the address, drop the zone.
      std::string bare = value.substr(0, value.find('%'));
      if (inet_pton(AF_INET, bare.c_str(), &a) == 1 || inet_pton(AF_INET6, bare.c_str(), &a) == 1) out.push_back(bare);
    }
  }
  return out;
}

v1::Profile::Action effective_action(const v1::Profile& profile, v1::Profile::Action action) {
  if (profile.mode() == v1::Profile::MODE_AUDIT && (action == v1::Profile::ACTION_DENY || action == v1::Profile::ACTION_KILL))
    return v1::Profile::ACTION_AUDIT;
  return action;
}

v1::Profile::SyscallAction effective_syscall_action(const v1::Profile& profile) {
  if (profile.mode() == v1::Profile::MODE_AUDIT) return v1::Profile::SYSCALL_ACTION_LOG;
  return profile.syscalls().action();
}

std::vector<std::string> dns_servers(const v1::Profile& profile, const std::string& resolv_conf) {
  std::vector<std::string> out;
  auto add = [&](const std::string& s) {
    if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
  };
  for (const auto& d : profile.network().dns()) {
    if (d == "system") {
      for (const auto& s : system_resolvers(resolv_conf)) add(s);
    } else {
      add(d);
    }
  }
  return out;
}

std::optional<int> errno_from_name(std::string_view name) {
  static const std::map<std::string, int, std::less<>> names = [] {
    std::map<std::string, int, std::less<>> m;
    for (int e = 1; e < 4096; ++e)
      if (const char* n = strerrorname_np(e)) m.emplace(n, e);
    return m;
  }();
  auto it = names.find(name);
  if (it == names.end()) return std::nullopt;
  return it->second;
}

}  // namespace agentcage::core
