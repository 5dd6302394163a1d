// SPDX-License-Identifier: Apache-2.0
// A resolved profile (agentcage.v1.Profile) compiled onto the enforcement layers: the
// in-child confinement (Landlock, mount view, seccomp, capabilities, limits) and the
// cgroup-BPF network policy. Pure apart from reading the files the profile names
// (seccomp_json, resolv.conf) and the passwd/group databases.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "agentcage/v1/control.pb.h"
#include "agentcage/v1/profile.pb.h"
#include "core/confine/confine.h"
#include "core/policy/env_policy.h"
#include "core/policy/net_policy.h"
#include "core/base/result.h"

namespace agentcage::core {

struct SandboxPolicy {
  std::string profile;             // the profile's name
  bool audit_mode = false;         // mode: audit
  ConfinePolicy confine;
  std::optional<NetPolicy> net;    // unset: network unrestricted (actions.network: allow)
  // actions.exec: kill (not in audit mode): an exec Landlock refuses kills the caller in
  // the kernel (AC_SB_EXEC_KILL); needs the BPF monitor.
  bool exec_kill = false;
  // The command's environment (profile.environment over PolicyContext::env). Both the
  // in-process and the daemon path hand exactly this to spawn().
  EnvPlan env;
  std::vector<std::string> notes;  // what the profile asked for and is not applied as asked
  // filesystem.git_config report/read_only: the writable trees whose .git configuration is
  // read before the command and after the sandbox, changes to code-running keys reported.
  std::vector<std::string> git_review;
};

struct PolicyContext {
  std::string resolv_conf = "/etc/resolv.conf";
  std::vector<std::string> env;            // the caller's environment, "NAME=value" (environ)
  std::vector<std::string> pass_env;       // `run --pass-env` names
};

Result<SandboxPolicy> compile_profile(const v1::Profile& p, const PolicyContext& ctx);

// What an unprivileged process can apply to itself: Landlock, seccomp, no_new_privs,
// rlimits. Turns off the private view and masks, the v1 pids limit, the uid switch and the
// securebits/bounding-set drop (it holds no capabilities to drop); notes say what was
// left out. Pure. (agentcaged itself starts every profiled command, with the whole
// policy; this approximates the decisions of a sandbox it re-adopts, for attribution.)
void limit_to_unprivileged(ConfinePolicy& p, std::vector<std::string>* notes);

// For agentcaged starting a command for a caller (CreateSandboxRequest.launch): the
// whole confinement stays, and the command runs as the caller (uid, gid, `groups`) unless
// the caller is root. The caller may gain no access it does not have: the private view is
// built by root, so a tree the caller cannot reach on the host (a 0700 parent directory
// on its path) is left out of the view (named in `notes`). A root caller keeps a
// profile's process.user; another caller naming one is refused.
Status confine_for_caller(ConfinePolicy& p, uid_t uid, gid_t gid, const std::vector<gid_t>& groups,
                          std::vector<std::string>* notes);

// `--allow-domain` with a profile: each NAME[:PORT[-PORT]] becomes an allow entry of its
// network.domains (TCP; dns: [system] when the profile names no resolver), so the
// amended profile is what is compiled, recorded and re-adopted. A name the profile
// already lists exactly is refused: its own entry (maybe a deny) decides, and overriding
// it silently would hide which. `field` names the option in errors.
Status add_allowed_domains(v1::Profile& p, const std::vector<std::string>& specs, const std::string& field);

// A CreateSandbox request's network options (the CLI's strings) as NetFlags, and back.
NetFlags net_flags(const v1::NetworkOptions& o);
v1::NetworkOptions network_options(const NetFlags& f);

}  // namespace agentcage::core
