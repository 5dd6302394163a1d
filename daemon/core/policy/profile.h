// SPDX-License-Identifier: Apache-2.0
// Permission profiles: YAML files mapped onto agentcage.v1.Profile (profile.proto is the
// only schema; the loader walks its descriptors), validated, composed with `extends:`, and
// printed back as YAML. Pure logic: reading the profile files (and an OCI seccomp JSON file
// they name) is the only side effect. Turning a profile into Landlock rules, seccomp
// filters and BPF map entries is the policy compiler's job, not this file's.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <unistd.h>

#include <string>
#include <string_view>
#include <vector>

#include "agentcage/v1/profile.pb.h"
#include "core/base/result.h"

namespace agentcage::core {

// Values for ${WORKSPACE}, ${HOME}, ${USER} and ${TMPDIR} (and a leading ~/ for HOME).
// An empty value makes a profile that uses the variable fail to load, naming it.
struct ProfileVars {
  std::string workspace;
  std::string home;
  std::string user;
  std::string tmpdir;
  // Whose run the profile is resolved for: only files and directories owned by root or by
  // this uid, and writable by no one else, are read (untrusted_profile_path).
  uid_t uid = ::getuid();

  // From the environment ($HOME, $USER, $TMPDIR, falling back to the passwd entry and /tmp);
  // `workspace` empty means the current directory. The workspace is made absolute.
  static ProfileVars from_environment(const std::string& workspace = {});
};

// One finding, pointing into a file. line and column are 1-based; 0 when not known.
struct Diagnostic {
  std::string file;
  int line = 0;
  int column = 0;
  std::string message;
  bool warning = false;

  std::string str() const;  // "file:line:col: message" ("file:line:col: warning: ..." for warnings)
};

// A profile with `extends` applied, defaults filled in and every path expanded.
struct LoadedProfile {
  v1::Profile profile;
  std::vector<std::string> chain;     // the files it came from, the base first
  std::vector<Diagnostic> warnings;   // suspicious but valid (e.g. an allow entry a deny covers)
};

// Directories searched for a profile given by name, in order: each entry of
// $AGENTCAGE_PROFILE_PATH (colon-separated), /etc/agentcage/profiles, the installed
// share/agentcage/profiles, and the profiles/ directory of the source tree this binary was
// built from.
std::vector<std::string> profile_search_path();

// Why a run of `uid` must not read `path` (a profile file or a directory of them), or ""
// when it may: the path and every directory above it (symbolic links resolved) are owned
// by root or `uid` and writable by no other user (group root may write; a sticky
// directory such as /tmp passes: others cannot replace what is in it). A root run thus
// never reads a profile another user can change.
std::string untrusted_profile_path(const std::string& path, uid_t uid);

// True when `ref` names a file rather than a profile on the search path: it contains a '/'
// or ends in ".yaml"/".yml".
bool is_profile_path(std::string_view ref);

// Loads a profile by name (NAME.yaml on `search`) or by path and resolves it. On failure the
// error's context holds every diagnostic found, one "file:line:col: message" per line.
Result<LoadedProfile> resolve_profile(const std::string& name_or_path, const ProfileVars& vars,
                                      const std::vector<std::string>& search = profile_search_path());
Result<v1::Profile> load_profile(const std::string& name_or_path, const ProfileVars& vars);

// The profile as YAML that resolve_profile() reads back to an equal message. `header` lines
// are written first as comments.
std::string to_yaml(const v1::Profile& profile, const std::vector<std::string>& header = {});

// --- helpers for the policy compiler ---

// The action to take after `mode`: in audit mode whatever would be denied or killed is
// only reported (allow stays allow: it is not reported in either mode).
v1::Profile::Action effective_action(const v1::Profile& profile, v1::Profile::Action action);
// Syscalls.action after `mode` (audit mode logs instead of failing or killing).
v1::Profile::SyscallAction effective_syscall_action(const v1::Profile& profile);

// network.dns with "system" replaced by the nameservers in `resolv_conf`, duplicates dropped.
std::vector<std::string> dns_servers(const v1::Profile& profile, const std::string& resolv_conf = "/etc/resolv.conf");


// The nameservers listed in a resolv.conf (what `dns: [system]` stands for).
std::vector<std::string> system_resolvers(const std::string& resolv_conf = "/etc/resolv.conf");

// "EPERM" -> 1; nullopt for an unknown name.
std::optional<int> errno_from_name(std::string_view name);

// Profile enum values as written in YAML ("deny", "audit", "tcp", ...).
std::string enum_yaml_name(const google::protobuf::EnumValueDescriptor* value);

}  // namespace agentcage::core
