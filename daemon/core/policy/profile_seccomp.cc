// SPDX-License-Identifier: Apache-2.0
#include "core/policy/profile_seccomp.h"

#include <seccomp.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/base/fs.h"
#include "core/base/text.h"

namespace agentcage::core {
namespace {

using json = nlohmann::json;

constexpr std::array kActions = {"SCMP_ACT_KILL",  "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                                 "SCMP_ACT_TRAP",  "SCMP_ACT_ERRNO",        "SCMP_ACT_TRACE",
                                 "SCMP_ACT_ALLOW", "SCMP_ACT_LOG"};
constexpr std::array kOps = {"SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE",       "SCMP_CMP_EQ",
                             "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"};

template <size_t N>
bool one_of(const std::string& s, const std::array<const char*, N>& set) {
  return std::any_of(set.begin(), set.end(), [&](const char* v) { return s == v; });
}

template <size_t N>
std::string join(const std::array<const char*, N>& set) {
  std::string out;
  for (const char* v : set) out += (out.empty() ? "" : ", ") + std::string(v);
  return out;
}

// "SCMP_ARCH_X86_64" -> libseccomp's "x86_64".
bool known_arch(const std::string& name) {
  constexpr std::string_view prefix = "SCMP_ARCH_";
  if (!name.starts_with(prefix)) return false;
  std::string lower = name.substr(prefix.size());
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  return seccomp_arch_resolve_name(lower.c_str()) != 0;
}

// A bad value: "FILE: syscalls[3].action: message".
struct Bad {
  std::string where;
  std::string what;
};

std::string type_name(const json& j) { return j.type_name(); }

std::vector<std::string> strings(const json& j, const std::string& where) {
  if (j.is_null()) return {};
  if (!j.is_array()) throw Bad{where, "expected a list of strings, got " + type_name(j)};
  std::vector<std::string> out;
  for (size_t i = 0; i < j.size(); ++i) {
    if (!j[i].is_string()) throw Bad{fmt::format("{}[{}]", where, i), "expected a string, got " + type_name(j[i])};
    out.push_back(j[i].get<std::string>());
  }
  return out;
}

std::string string_field(const json& obj, const char* key, const std::string& where, bool required) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    if (required) throw Bad{where, fmt::format("missing \"{}\"", key)};
    return {};
  }
  if (!it->is_string()) throw Bad{where + "." + key, "expected a string, got " + type_name(*it)};
  return it->get<std::string>();
}

uint64_t uint_field(const json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return 0;
  if (!it->is_number_unsigned()) throw Bad{where + "." + key, "expected an unsigned integer, got " + type_name(*it)};
  return it->get<uint64_t>();
}

std::optional<uint32_t> errno_field(const json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_unsigned() || it->get<uint64_t>() > 4095)
    throw Bad{where + "." + key, "expected an errno number 0..4095, got " + it->dump()};
  return it->get<uint32_t>();
}

void action(const std::string& a, const std::string& where) {
  // SCMP_ACT_NOTIFY hands the syscall to a user-space supervisor; agentcage runs none, so
  // the call would block forever. Refused here, once, so `profile lint` and `run` agree.
  if (a == "SCMP_ACT_NOTIFY")
    throw Bad{where, "SCMP_ACT_NOTIFY needs a seccomp user-notification supervisor, which agentcage does not run; "
                     "use SCMP_ACT_ERRNO to deny or SCMP_ACT_LOG to record"};
  if (!one_of(a, kActions)) throw Bad{where, fmt::format("unknown action \"{}\"; expected one of: {}", a, join(kActions))};
}

void conditions(const json& rule, const char* key, std::vector<std::string>& caps, std::vector<std::string>& arches,
                std::string* min_kernel, const std::string& where) {
  auto it = rule.find(key);
  if (it == rule.end() || it->is_null()) return;
  if (!it->is_object()) throw Bad{where + "." + key, "expected an object, got " + type_name(*it)};
  caps = strings(it->value("caps", json()), where + "." + key + ".caps");
  arches = strings(it->value("arches", json()), where + "." + key + ".arches");
  if (min_kernel) *min_kernel = string_field(*it, "minKernel", where + "." + key, false);
}

// Line and column (1-based) of byte offset `pos` in `text`.
std::pair<int, int> line_col(const std::string& text, size_t pos) {
  int line = 1, col = 1;
  for (size_t i = 0; i < pos && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return {line, col};
}

// OCI seccomp files nest five levels at most; the JSON library recurses per level and a
// file of 200 000 '[' overflowed the stack (in lint, run and the daemon). Returns the byte
// offset where nesting passes `limit`, or npos.
size_t too_deep_at(const std::string& text, int limit) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return i;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return std::string::npos;
}

constexpr int kMaxJsonDepth = 32;

}  // namespace

Result<OciSeccomp> parse_oci_seccomp_text(const std::string& text, const std::string& path) {
  if (size_t at = too_deep_at(text, kMaxJsonDepth); at != std::string::npos) {
    auto [line, col] = line_col(text, at);
    return error(fmt::format("{}:{}:{}: invalid JSON: nested deeper than {} levels", path, line, col, kMaxJsonDepth));
  }
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::out_of_range& e) {
    // A number no double holds (1e400): nlohmann reports no position for it.
    std::string what = e.what();
    if (auto p = what.find("] "); p != std::string::npos) what = what.substr(p + 2);
    return error(fmt::format("{}: invalid JSON: {}", path, escape_text(what)));
  } catch (const json::parse_error& e) {
    auto [line, col] = line_col(text, e.byte > 0 ? e.byte - 1 : 0);
    // nlohmann's what() is "[json.exception...] parse error at line L, column C: what";
    // the position is already in front, keep only what went wrong.
    std::string what = e.what();
    if (auto c = what.find("column "); c != std::string::npos)
      if (auto p = what.find(": ", c); p != std::string::npos) what = what.substr(p + 2);
    // "last read: '...'" quotes the input's bytes, which need not be text.
    return error(fmt::format("{}:{}:{}: invalid JSON: {}", path, line, col, escape_text(what)));
  }

  OciSeccomp out;
  try {
    if (!doc.is_object()) throw Bad{"(top level)", "expected an object, got " + type_name(doc)};
    out.default_action = string_field(doc, "defaultAction", "(top level)", true);
    action(out.default_action, "defaultAction");
    out.default_errno_ret = errno_field(doc, "defaultErrnoRet", "(top level)");
    // An architecture this libseccomp does not know (newer than it: SCMP_ARCH_LOONGARCH64
    // in Docker's current default) is skipped and reported, as for syscalls: the filter is
    // built for the native architecture only (seccomp_policy.cc), which is what Docker
    // takes from its archMap too. A name that is not an SCMP_ARCH_* at all is an error.
    auto add_arch = [&](const std::string& a, const std::string& where) {
      if (!a.starts_with("SCMP_ARCH_") || a.size() == std::string_view("SCMP_ARCH_").size())
        throw Bad{where, fmt::format("\"{}\" is not an architecture (SCMP_ARCH_X86_64, SCMP_ARCH_AARCH64, ...)", a)};
      auto& to = known_arch(a) ? out.architectures : out.unknown_architectures;
      if (std::find(to.begin(), to.end(), a) == to.end()) to.push_back(a);
    };
    std::vector<std::string> listed = strings(doc.value("architectures", json()), "architectures");
    for (size_t i = 0; i < listed.size(); ++i) add_arch(listed[i], fmt::format("architectures[{}]", i));
    // Docker/Podman's newer form: {"architecture": A, "subArchitectures": [...]}; all of them
    // count, as they do for runc.
    json arch_map = doc.value("archMap", json::array());
    if (!arch_map.is_array()) throw Bad{"archMap", "expected a list, got " + type_name(arch_map)};
    for (size_t i = 0; i < arch_map.size(); ++i) {
      std::string where = fmt::format("archMap[{}]", i);
      if (!arch_map[i].is_object()) throw Bad{where, "expected an object, got " + type_name(arch_map[i])};
      std::vector<std::string> arches = strings(arch_map[i].value("subArchitectures", json()), where + ".subArchitectures");
      arches.insert(arches.begin(), string_field(arch_map[i], "architecture", where, true));
      for (const auto& a : arches) add_arch(a, where);
    }

    json calls = doc.value("syscalls", json::array());
    if (!calls.is_array()) throw Bad{"syscalls", "expected a list, got " + type_name(calls)};
    for (size_t i = 0; i < calls.size(); ++i) {
      const json& r = calls[i];
      std::string where = fmt::format("syscalls[{}]", i);
      if (!r.is_object()) throw Bad{where, "expected an object, got " + type_name(r)};
      OciSeccompRule rule;
      // "names" is the format since OCI 1.0; "name" (one syscall) is the older Docker form.
      std::vector<std::string> names = strings(r.value("names", json()), where + ".names");
      if (std::string one = string_field(r, "name", where, false); !one.empty()) names.push_back(one);
      if (names.empty()) throw Bad{where, "needs \"names\""};
      for (auto& n : names) {
        if (seccomp_syscall_resolve_name(n.c_str()) == __NR_SCMP_ERROR)
          out.unknown_syscalls.push_back(n);
        else
          rule.names.push_back(n);
      }
      rule.action = string_field(r, "action", where, true);
      action(rule.action, where + ".action");
      rule.errno_ret = errno_field(r, "errnoRet", where);
      auto args = r.find("args");
      if (args != r.end() && !args->is_null()) {
        if (!args->is_array()) throw Bad{where + ".args", "expected a list, got " + type_name(*args)};
        for (size_t k = 0; k < args->size(); ++k) {
          const json& a = (*args)[k];
          std::string aw = fmt::format("{}.args[{}]", where, k);
          if (!a.is_object()) throw Bad{aw, "expected an object, got " + type_name(a)};
          OciSeccompArg arg;
          uint64_t index = uint_field(a, "index", aw);
          if (index > 5) throw Bad{aw + ".index", fmt::format("{} is not a syscall argument index (0..5)", index)};
          arg.index = static_cast<uint32_t>(index);
          arg.value = uint_field(a, "value", aw);
          arg.value_two = uint_field(a, "valueTwo", aw);
          arg.op = string_field(a, "op", aw, true);
          if (!one_of(arg.op, kOps))
            throw Bad{aw + ".op", fmt::format("unknown operator \"{}\"; expected one of: {}", arg.op, join(kOps))};
          rule.args.push_back(arg);
        }
      }
      conditions(r, "includes", rule.include_caps, rule.include_arches, &rule.min_kernel, where);
      conditions(r, "excludes", rule.exclude_caps, rule.exclude_arches, nullptr, where);
      out.syscalls.push_back(std::move(rule));
    }
  } catch (const Bad& b) {
    // Escaped here, once: the messages quote the file's strings (actions, operators,
    // architectures), which may hold any bytes.
    return error(fmt::format("{}: {}: {}", path, b.where, escape_text(b.what)));
  } catch (const json::exception& e) {
    return error(fmt::format("{}: {}", path, e.what()));
  }
  return out;
}

Result<OciSeccomp> parse_oci_seccomp(const std::string& path) {
  auto text = read_input_file(path, kMaxSeccompJsonBytes);
  if (!text) {
    Error e = text.error();
    e.hint = "syscalls.seccomp_json must name a readable OCI seccomp JSON file";
    return std::unexpected(e);
  }
  return parse_oci_seccomp_text(*text, path);
}

}  // namespace agentcage::core
