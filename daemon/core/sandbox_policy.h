// SPDX-License-Identifier: Apache-2.0
// A resolved profile (agentcage.v1.Profile) compiled onto the enforcement layers: the
// in-child confinement (Landlock, mount view, seccomp, capabilities, limits) and the
// cgroup-BPF network policy. Pure apart from reading the files the profile names
// (seccomp_json, resolv.conf) and the passwd/group databases.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "agentcage/v1/profile.pb.h"
#include "core/confine.h"
#include "core/net_policy.h"
#include "core/result.h"

namespace agentcage::core {

struct SandboxPolicy {
  std::string profile;             // the profile's name
  bool audit_mode = false;         // mode: audit
  ConfinePolicy confine;
  std::optional<NetPolicy> net;    // unset: network unrestricted (actions.network: allow)
  std::vector<std::string> notes;  // what the profile asked for and is not applied as asked
};

struct PolicyContext {
  std::string cwd;                         // the command's working directory
  std::string resolv_conf = "/etc/resolv.conf";
};

Result<SandboxPolicy> compile_profile(const v1::Profile& p, const PolicyContext& ctx);

}  // namespace agentcage::core
