// SPDX-License-Identifier: Apache-2.0
#include "core/policy/env_policy.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include <fmt/format.h>

#include "core/base/text.h"

namespace agentcage::core {
namespace {

using Env = v1::Profile::Environment;

bool name_char(unsigned char c) { return std::isalnum(c) || c == '_'; }

template <class List>
bool any_matches(const List& patterns, std::string_view name) {
  return std::any_of(patterns.begin(), patterns.end(),
                     [&](const std::string& p) { return env_pattern_matches(p, name); });
}

bool inherited(Env::Inherit mode, std::string_view name) {
  switch (mode) {
    case Env::INHERIT_NONE: return false;
    case Env::INHERIT_BASE:
      return std::any_of(std::begin(kEnvBaseSet), std::end(kEnvBaseSet),
                         [&](const char* p) { return env_pattern_matches(p, name); });
    default: return true;  // all, and unspecified (no profile section): the caller's whole environment
  }
}

std::string_view name_of(std::string_view entry) { return entry.substr(0, entry.find('=')); }

std::string name_list(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + escape_text(n);
  return out;
}

}  // namespace

bool valid_env_name(std::string_view name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  return std::all_of(name.begin(), name.end(), [](unsigned char c) { return name_char(c); });
}

bool valid_env_pattern(std::string_view pattern) {
  if (pattern.empty() || std::isdigit(static_cast<unsigned char>(pattern[0]))) return false;
  return std::all_of(pattern.begin(), pattern.end(),
                     [](unsigned char c) { return name_char(c) || c == '*' || c == '?'; });
}

// Iterative glob with one backtrack point (the last '*'): linear in practice and never
// exponential, whatever a hostile profile writes.
bool env_pattern_matches(std::string_view pattern, std::string_view name) {
  size_t p = 0, n = 0, star = std::string_view::npos, resume = 0;
  while (n < name.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == name[n])) {
      ++p;
      ++n;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = n;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      n = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

bool has_url_credentials(std::string_view value) {
  for (size_t at = value.find("://"); at != std::string_view::npos; at = value.find("://", at + 3)) {
    // A scheme is letters, digits, + - . (RFC 3986 3.1), at least one, right before "://".
    size_t s = at;
    while (s > 0 && (std::isalnum(static_cast<unsigned char>(value[s - 1])) || value[s - 1] == '+' ||
                     value[s - 1] == '-' || value[s - 1] == '.'))
      --s;
    if (s == at) continue;
    std::string_view rest = value.substr(at + 3);
    // The authority ends at the path, query or fragment, or where the next list item starts.
    size_t end = rest.find_first_of("/?#, \t;");
    std::string_view authority = rest.substr(0, end);
    if (size_t a = authority.rfind('@'); a != std::string_view::npos && a > 0) return true;
  }
  return false;
}

EnvPlan plan_environment(const Env& policy, const std::vector<std::string>& caller,
                         const std::vector<std::string>& pass_env) {
  EnvPlan plan;
  if (policy.inherit() != Env::INHERIT_UNSPECIFIED) plan.inherit = policy.inherit();
  std::set<std::string, std::less<>> seen;
  for (const auto& entry : caller) {
    std::string_view name = name_of(entry);
    if (!seen.emplace(name).second) continue;  // a duplicate: getenv() would never show it
    bool pass = std::find(policy.pass().begin(), policy.pass().end(), name) != policy.pass().end() ||
                std::find(pass_env.begin(), pass_env.end(), name) != pass_env.end();
    bool deny = any_matches(policy.deny(), name);
    if (pass) {
      if (deny) plan.passed.emplace_back(name);
      plan.env.push_back(entry);
    } else if (deny) {
      plan.denied.emplace_back(name);
    } else if (policy.deny_url_credentials() && entry.size() > name.size() &&
               has_url_credentials(std::string_view(entry).substr(name.size() + 1))) {
      plan.url_credentials.emplace_back(name);
    } else if (inherited(policy.inherit(), name) || any_matches(policy.allow(), name)) {
      plan.env.push_back(entry);
    } else {
      plan.not_inherited.emplace_back(name);
    }
  }
  // Protobuf maps iterate in no fixed order; name order makes the result reproducible.
  std::map<std::string, std::string> set(policy.set().begin(), policy.set().end());
  for (const auto& [name, value] : set) {
    std::string entry = name + "=" + value;
    auto it = std::find_if(plan.env.begin(), plan.env.end(), [&](const std::string& e) { return name_of(e) == name; });
    if (it != plan.env.end())
      *it = std::move(entry);
    else
      plan.env.push_back(std::move(entry));
  }
  return plan;
}

std::string env_plan_summary(const EnvPlan& plan) {
  std::vector<std::string> parts;
  if (!plan.denied.empty())
    parts.push_back(fmt::format("kept out {} (environment.deny; --pass-env NAME lets one through)", name_list(plan.denied)));
  if (!plan.url_credentials.empty())
    parts.push_back(fmt::format("kept out {} (a URL with a password or token in the value: "
                                "environment.deny_url_credentials; --pass-env NAME lets one through)",
                                name_list(plan.url_credentials)));
  if (!plan.not_inherited.empty()) {
    const char* mode = plan.inherit == Env::INHERIT_NONE ? "none" : "base";
    parts.push_back(fmt::format("not inherited (inherit: {}, not in environment.allow): {}", mode,
                                name_list(plan.not_inherited)));
  }
  if (!plan.passed.empty())
    parts.push_back(fmt::format("passed although denied (pass/--pass-env): {}", name_list(plan.passed)));
  if (parts.empty()) return {};
  std::string out = "environment: ";
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? "; " : "") + parts[i];
  return out;
}

std::vector<std::string> current_environment() {
  std::vector<std::string> out;
  for (char** e = environ; e && *e; ++e) out.emplace_back(*e);
  return out;
}

}  // namespace agentcage::core
