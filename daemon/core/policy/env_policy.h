// SPDX-License-Identifier: Apache-2.0
// The environment a sandboxed command starts with: a profile's `environment` section
// (profile.proto, Profile.Environment, states the precedence) applied to the caller's
// variables and `--pass-env` names. Pure: the caller's environment is passed in, so the
// in-process and the daemon path compute the same result from the same inputs.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "agentcage/v1/profile.pb.h"

namespace agentcage::core {

// What `inherit: base` lets in: what a shell and most programs expect, and no secret.
inline constexpr const char* kEnvBaseSet[] = {"PATH", "HOME",      "USER",      "LOGNAME", "SHELL",
                                              "LANG", "LANGUAGE",  "LC_*",      "TERM",    "COLORTERM",
                                              "TZ",   "TMPDIR",    "PWD"};

// [A-Za-z_][A-Za-z0-9_]*: what a shell can export, and what `pass`, `set` and --pass-env
// accept.
bool valid_env_name(std::string_view name);
// A name in which `*` (any run, empty included) and `?` (one character) may stand.
bool valid_env_pattern(std::string_view pattern);
// Whether `name` matches `pattern` (case-sensitive, as environment names are).
bool env_pattern_matches(std::string_view pattern, std::string_view name);

// Whether `value` holds a URL with user information, scheme://USERINFO@host: a password
// (user:pass@) or a token written as the user name (https://ghp_...@github.com). Every URL
// in the value counts (PIP_EXTRA_INDEX_URL lists several). An '@' after the authority
// (a path, a query, mailto-like text) is not user information.
bool has_url_credentials(std::string_view value);

struct EnvPlan {
  // What the command gets, "NAME=value": the kept variables in the caller's order, then
  // `set` in name order (replacing a kept one of the same name in place).
  std::vector<std::string> env;
  std::vector<std::string> denied;         // names a deny pattern left out (the credentials)
  std::vector<std::string> not_inherited;  // names neither inherit nor allow let in
  std::vector<std::string> url_credentials;  // names left out for a URL with user info in the value
  std::vector<std::string> passed;         // names kept by pass/--pass-env that a deny matched
  v1::Profile::Environment::Inherit inherit = v1::Profile::Environment::INHERIT_ALL;  // as planned
};

// `caller` holds "NAME=value" entries (environ); an entry without '=' is a name with no
// value and filtered by that name. Only the first entry of a name counts (what getenv
// returns): a later duplicate could otherwise smuggle a second value past a reviewer.
// `pass_env` are --pass-env names (validated by the CLI).
EnvPlan plan_environment(const v1::Profile::Environment& policy, const std::vector<std::string>& caller,
                         const std::vector<std::string>& pass_env);

// The one line `run` prints about what it kept out, naming variables, never values
// (escaped: a name may hold any byte). Empty when nothing was left out.
std::string env_plan_summary(const EnvPlan& plan);

// This process's environment as entries (reads `environ`).
std::vector<std::string> current_environment();

}  // namespace agentcage::core
