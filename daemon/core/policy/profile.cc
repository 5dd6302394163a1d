// SPDX-License-Identifier: Apache-2.0
// The YAML <-> agentcage.v1.Profile mapping is generic: it walks the message descriptors, so
// profile.proto stays the only schema. Field-specific knowledge is limited to the
// `profile_format` option on fields (how to validate a scalar) and a few message-level
// checks below (a port range's order, a rule's required CIDR, the OCI seccomp file).
// YAML output is in profile_emit.cc, value helpers (CIDR, errno, DNS) in profile_values.cc.
#include "core/policy/profile.h"
#include "core/policy/env_policy.h"
#include "core/policy/net_policy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>
#include <seccomp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <climits>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <unordered_map>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include "core/base/fs.h"
#include "core/base/text.h"
#include "core/policy/profile_seccomp.h"

// Where the build put the shipped profiles: the source tree's profiles/ (so a build tree
// works without installing) and the installed copy.
#ifndef AGENTCAGE_PROFILE_DIR
#define AGENTCAGE_PROFILE_DIR ""
#endif
#ifndef AGENTCAGE_PROFILE_INSTALL_DIR
#define AGENTCAGE_PROFILE_INSTALL_DIR ""
#endif

namespace agentcage::core {
namespace {

namespace pb = google::protobuf;
namespace fs = std::filesystem;

// Deep enough for any sane layering, shallow enough that a runaway chain fails fast.
constexpr int kMaxExtendsDepth = 16;
// The largest shipped profile is a few KiB; anything near this is not a hand-written profile.
constexpr size_t kMaxProfileBytes = 1 << 20;

const pb::EnumValueDescriptor* enum_from_yaml(const pb::EnumDescriptor* e, std::string_view s) {
  for (int i = 0; i < e->value_count(); ++i) {
    const auto* v = e->value(i);
    if (v->number() != 0 && enum_yaml_name(v) == s) return v;  // 0 is UNSPECIFIED: never written
  }
  return nullptr;
}

std::string enum_choices(const pb::EnumDescriptor* e) {
  std::string out;
  for (int i = 0; i < e->value_count(); ++i)
    if (e->value(i)->number() != 0) out += (out.empty() ? "" : ", ") + enum_yaml_name(e->value(i));
  return out;
}

std::string key_choices(const pb::Descriptor* d) {
  std::string out;
  for (int i = 0; i < d->field_count(); ++i) out += (out.empty() ? "" : ", ") + d->field(i)->name();
  return out;
}

const std::string& format_of(const pb::FieldDescriptor* fd) { return fd->options().GetExtension(v1::profile_format); }

bool is_port_range(const pb::Descriptor* d) { return d == v1::Profile::PortRange::descriptor(); }

// Levenshtein distance, for "did you mean".
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Scalar:
      // Escaped: the scalar is the file's bytes (a control byte after `false` included).
      return "'" + printable_text(n.Scalar().size() > 80 ? n.Scalar().substr(0, 77) + "..." : n.Scalar()) + "'";
    default: return "nothing";
  }
}

std::string expected_scalar(const pb::FieldDescriptor* fd) {
  const std::string& f = format_of(fd);
  switch (fd->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_STRING:
      if (f == "path") return "an absolute path";
      if (f == "file") return "a file path";
      if (f == "cidr") return "a CIDR such as 10.0.0.0/8 or ::/0";
      if (f == "ip") return "an IP address or 'system'";
      if (f == "domain") return "a domain name such as registry.npmjs.org or *.example.com";
      if (f == "syscall") return "a syscall name";
      if (f == "errno") return "an errno name such as EPERM";
      if (f == "account") return "a user or group name or numeric id";
      if (f == "env_name") return "an environment variable name ([A-Za-z_][A-Za-z0-9_]*)";
      if (f == "env_pattern") return "an environment variable name or pattern (AWS_*, *_TOKEN)";
      return "a string";
    case pb::FieldDescriptor::CPPTYPE_BOOL: return "true or false";
    case pb::FieldDescriptor::CPPTYPE_ENUM: return "one of: " + enum_choices(fd->enum_type());
    case pb::FieldDescriptor::CPPTYPE_MESSAGE:
      if (is_port_range(fd->message_type())) return "a port (443) or a port range (\"8000-8100\")";
      return "a mapping with keys: " + key_choices(fd->message_type());
    default:
      if (f == "port") return "a port number 1-65535";
      if (f == "positive") return "an integer greater than 0";
      if (f == "size") return "a byte count: digits, optionally with a binary unit K, M, G or T (512M, 8GiB)";
      return "an unsigned integer";
  }
}

// Plain (unquoted) decimal digits only: "443" in quotes is a string, and 0x/octal/+/- forms
// are refused rather than guessed at.
std::optional<uint64_t> plain_uint(const YAML::Node& n, uint64_t max) {
  if (!n.IsScalar() || n.Tag() == "!") return std::nullopt;
  const std::string& s = n.Scalar();
  if (s.empty() || !std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); })) return std::nullopt;
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v > max) return std::nullopt;
  return v;
}

// A byte count: decimal digits, optionally followed by a binary unit (K, M, G, T, with or
// without "iB": 512M, 8GiB). Units are powers of 1024 either way: "MB" meaning 10^6 in
// one tool and 2^20 in another is why the decimal spellings are refused, not guessed.
std::optional<uint64_t> parse_size(const YAML::Node& n) {
  if (!n.IsScalar() || n.Tag() == "!") return std::nullopt;
  std::string_view s = n.Scalar();
  size_t digits = 0;
  while (digits < s.size() && std::isdigit(static_cast<unsigned char>(s[digits]))) ++digits;
  if (digits == 0) return std::nullopt;
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + digits, v);
  if (ec != std::errc() || p != s.data() + digits) return std::nullopt;
  std::string_view unit = s.substr(digits);
  if (unit.empty()) return v;
  static constexpr std::string_view kUnits = "KMGT";
  size_t power = kUnits.find(unit[0]);
  if (power == std::string_view::npos || !(unit.size() == 1 || unit.substr(1) == "iB" || unit.substr(1) == "i"))
    return std::nullopt;
  unsigned shift = 10 * static_cast<unsigned>(power + 1);
  if (v > (UINT64_MAX >> shift)) return std::nullopt;
  return v << shift;
}

std::optional<uint32_t> parse_port(std::string_view s) {
  if (s.empty() || !std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); })) return std::nullopt;
  uint32_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

bool valid_account(std::string_view s) {
  if (s.empty() || s.size() > 32) return false;
  if (std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); })) {
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return ec == std::errc() && v < 4294967295u;  // (uid_t)-1 means "no change" to setresuid
  }
  // POSIX portable user names (what useradd accepts by default).
  if (!(std::islower(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  return std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::islower(c) || std::isdigit(c) || c == '_' || c == '-' || c == '.';
  });
}

bool is_under(std::string_view path, std::string_view tree) {
  if (path == tree || tree == "/") return true;
  return path.size() > tree.size() && path.starts_with(tree) && path[tree.size()] == '/';
}

// Expands ${WORKSPACE}, ${HOME}, ${USER}, ${TMPDIR} and a leading "~" or "~/".
std::expected<std::string, std::string> expand(std::string_view raw, const ProfileVars& v) {
  auto var = [&](std::string_view name) -> std::expected<std::string, std::string> {
    const std::string* value = name == "WORKSPACE" ? &v.workspace
                               : name == "HOME"    ? &v.home
                               : name == "USER"    ? &v.user
                               : name == "TMPDIR"  ? &v.tmpdir
                                                   : nullptr;
    if (!value)
      return std::unexpected(fmt::format("unknown variable ${{{}}}; known: ${{WORKSPACE}}, ${{HOME}}, ${{USER}}, ${{TMPDIR}}", name));
    if (value->empty())
      return std::unexpected(fmt::format("${{{}}} is not set{}", name,
                                         name == "WORKSPACE" ? " (pass --workspace DIR)" : ""));
    return *value;
  };
  std::string out;
  size_t i = 0;
  if (raw == "~" || raw.starts_with("~/")) {
    auto home = var("HOME");
    if (!home) return std::unexpected("~ needs " + home.error());
    out = *home;
    i = 1;
  } else if (raw.starts_with("~")) {
    return std::unexpected("~user is not supported; write the path out or use ${HOME}");
  }
  for (; i < raw.size(); ++i) {
    if (raw[i] == '$' && i + 1 < raw.size() && raw[i + 1] == '{') {
      size_t close = raw.find('}', i + 2);
      if (close == std::string_view::npos) return std::unexpected("unterminated '${' (write ${NAME})");
      auto value = var(raw.substr(i + 2, close - i - 2));
      if (!value) return std::unexpected(value.error());
      out += *value;
      i = close;
    } else {
      out += raw[i];
    }
  }
  return out;
}

// Lexical normal form: no "//", no "." components, no trailing "/". ".." is refused: with
// symlinks in play its meaning depends on the file system, and a rule must be unambiguous.
std::expected<std::string, std::string> normalize_absolute(const std::string& p) {
  if (p.empty() || p[0] != '/') return std::unexpected(fmt::format("'{}' is not an absolute path", p));
  // A NUL would cut the path short where the kernel reads it; newlines forge log lines.
  if (std::any_of(p.begin(), p.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; }))
    return std::unexpected("a path must not contain control characters (NUL, newline, ...)");
  std::string out;
  size_t i = 0;
  while (i < p.size()) {
    size_t j = p.find('/', i);
    if (j == std::string::npos) j = p.size();
    std::string_view comp(p.data() + i, j - i);
    if (comp == "..") return std::unexpected(fmt::format("'{}' contains '..'; write the path without it", p));
    if (!comp.empty() && comp != ".") {
      out += '/';
      out += comp;
    }
    i = j + 1;
  }
  return out.empty() ? "/" : out;
}

YAML::Mark mark_at(int line1, int col1) {
  YAML::Mark m;  // its (pos, line, column) constructor is private
  m.line = line1 - 1;
  m.column = col1 - 1;
  return m;
}

struct Site {
  std::string file;
  std::string where;   // "filesystem.deny[2]"
  std::string value;   // after expansion
  int line = 0, column = 0;
};

// Maps one YAML document onto a Profile, collecting every error rather than stopping at the
// first, so `profile lint` can show them all.
class FileLoader {
 public:
  FileLoader(std::string file, const ProfileVars& vars) : file_(std::move(file)), vars_(vars) {
    dir_ = fs::path(file_).parent_path().string();
    if (dir_.empty()) dir_ = ".";
  }

  void load(const YAML::Node& root, v1::Profile* out) {
    if (!root.IsMap()) {
      err(root.Mark(), fmt::format("a profile is a mapping with keys: {}; got {}", key_choices(out->GetDescriptor()),
                                   describe(root)));
      return;
    }
    message(root, out, "");
  }

  std::vector<Diagnostic> errors, warnings;
  std::vector<Site> sites;

  // The first site recorded at `where`; an index, not a scan: lint asks once per entry.
  const Site* site(std::string_view where) const {
    auto it = site_index_.find(std::string(where));
    return it == site_index_.end() ? nullptr : &sites[it->second];
  }
  void add_site(Site s) {
    site_index_.emplace(s.where, sites.size());  // first occurrence wins, as the scan did
    sites.push_back(std::move(s));
  }

 private:
  static std::string join(const std::string& where, std::string_view key) {
    return where.empty() ? std::string(key) : where + "." + std::string(key);
  }

  void add(std::vector<Diagnostic>& to, const YAML::Mark& mark, const std::string& msg, bool warning) {
    // Messages quote the file's own text; a newline or escape sequence in it must not be
    // able to forge further diagnostic lines or drive the terminal.
    // Bytes that are not UTF-8 and C1 controls are escaped too (the fuzz harness found raw
    // ones in a quoted key); a nested message's own escapes pass unchanged.
    std::string clean = printable_text(msg);
    to.push_back(Diagnostic{file_, mark.line >= 0 ? mark.line + 1 : 0, mark.column >= 0 ? mark.column + 1 : 0,
                            std::move(clean), warning});
  }
  void err(const YAML::Mark& mark, const std::string& msg) { add(errors, mark, msg, false); }
  void warn(const YAML::Mark& mark, const std::string& msg) { add(warnings, mark, msg, true); }

  void message(const YAML::Node& n, pb::Message* m, const std::string& where) {
    const pb::Descriptor* d = m->GetDescriptor();
    std::map<std::string, YAML::Mark> seen;
    size_t errors_before = errors.size();
    for (auto it = n.begin(); it != n.end(); ++it) {
      // Copies: *it is a proxy temporary, and a reference into it dangles (ASan:
      // stack-use-after-scope).
      const YAML::Node key = it->first;
      if (!key.IsScalar()) {
        err(key.Mark(), fmt::format("{}: keys must be plain names; valid keys: {}", where.empty() ? "profile" : where,
                                    key_choices(d)));
        continue;
      }
      const std::string& name = key.Scalar();
      if (auto [prev, fresh] = seen.emplace(name, key.Mark()); !fresh) {
        // yaml-cpp keeps both; silently taking one would let a reviewer read the other.
        err(key.Mark(), fmt::format("duplicate key '{}' (first at line {})", join(where, name), prev->second.line + 1));
        continue;
      }
      const pb::FieldDescriptor* fd = d->FindFieldByName(name);
      if (!fd) {
        std::string hint;
        size_t best = 3;
        for (int i = 0; i < d->field_count(); ++i)
          if (size_t dist = edit_distance(name, d->field(i)->name()); dist < best) {
            best = dist;
            hint = fmt::format("; did you mean '{}'?", d->field(i)->name());
          }
        err(key.Mark(), fmt::format("unknown key '{}' in {}{} valid keys: {}", name, where.empty() ? "profile" : where,
                                    hint.empty() ? ";" : hint, key_choices(d)));
        continue;
      }
      field(it->second, key.Mark(), m, fd, join(where, name));
    }
    if (errors.size() == errors_before) check(n, m, where);
  }

  void field(const YAML::Node& n, const YAML::Mark& key_mark, pb::Message* m, const pb::FieldDescriptor* fd,
             const std::string& where) {
    // A key with no value has no useful mark of its own; point at the key.
    const YAML::Mark mark = n.IsNull() ? key_mark : n.Mark();
    if (fd->is_map()) return map_field(n, mark, m, fd, where);
    if (fd->is_repeated()) {
      if (!n.IsSequence()) {
        err(mark, fmt::format("{}: expected a list{}, got {}", where, n.IsNull() ? " (write [] for none)" : "", describe(n)));
        return;
      }
      for (size_t i = 0; i < n.size(); ++i) value(n[i], n[i].Mark(), m, fd, fmt::format("{}[{}]", where, i));
      return;
    }
    value(n, mark, m, fd, where);
  }

  // A map<string, string> field is a YAML mapping; its keys are validated by the field's
  // profile_format, its values are free text (one scalar each).
  void map_field(const YAML::Node& n, const YAML::Mark& mark, pb::Message* m, const pb::FieldDescriptor* fd,
           const std::string& where) {
    if (!n.IsMap()) {
      err(mark, fmt::format("{}: expected a mapping of NAME: value{}, got {}", where,
                            n.IsNull() ? " (write {} for none)" : "", describe(n)));
      return;
    }
    const pb::Descriptor* entry = fd->message_type();
    std::map<std::string, YAML::Mark> seen;
    for (auto it = n.begin(); it != n.end(); ++it) {
      if (++values_ > kMaxValues) {
        if (values_ == kMaxValues + 1) err(mark, fmt::format("more than {} values; is an alias expanding recursively?", kMaxValues));
        return;
      }
      // Copies, as in message(): *it is a proxy temporary (ASan: stack-use-after-scope).
      const YAML::Node key = it->first;
      const YAML::Node val = it->second;
      if (!key.IsScalar()) {
        err(key.Mark(), fmt::format("{}: keys must be {}", where, expected_scalar(fd)));
        continue;
      }
      std::string kwhere = fmt::format("{}.{}", where, key.Scalar());
      if (auto [prev, fresh] = seen.emplace(key.Scalar(), key.Mark()); !fresh) {
        err(key.Mark(), fmt::format("duplicate key '{}' (first at line {})", kwhere, prev->second.line + 1));
        continue;
      }
      auto k = format_string(key.Scalar(), format_of(fd));
      if (!k) {
        err(key.Mark(), fmt::format("{}: {}", where, k.error()));
        continue;
      }
      // A value is one scalar: `1` and "1" are the same string; a list or mapping is not.
      if (!val.IsScalar()) {
        err(val.IsNull() ? key.Mark() : val.Mark(),
            fmt::format("{}: expected a string value (write \"\" for empty), got {}", kwhere, describe(val)));
        continue;
      }
      // execve takes NUL-terminated strings: a NUL ("\0" in a quoted YAML string) would
      // silently cut the value short.
      if (val.Scalar().find('\0') != std::string::npos) {
        err(val.Mark(), fmt::format("{}: a value must not contain a NUL character", kwhere));
        continue;
      }
      add_site(Site{file_, kwhere, *k, key.Mark().line + 1, key.Mark().column + 1});
      pb::Message* e = m->GetReflection()->AddMessage(m, fd);
      e->GetReflection()->SetString(e, entry->map_key(), *k);
      e->GetReflection()->SetString(e, entry->map_value(), val.Scalar());
    }
  }

  // Sets a singular field or appends to a repeated one.
  void value(const YAML::Node& n, const YAML::Mark& mark, pb::Message* m, const pb::FieldDescriptor* fd,
             const std::string& where) {
    // YAML aliases share nodes, so a few lines of "*a" can stand for billions of values
    // ("billion laughs"); a budget keeps lint safe on hostile files.
    if (++values_ > kMaxValues) {
      if (values_ == kMaxValues + 1) err(mark, fmt::format("more than {} values; is an alias expanding recursively?", kMaxValues));
      return;
    }
    const pb::Reflection* r = m->GetReflection();
    const bool rep = fd->is_repeated();
    auto wrong = [&] { err(mark, fmt::format("{}: expected {}, got {}", where, expected_scalar(fd), describe(n))); };

    if (fd->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      if (is_port_range(fd->message_type()) && n.IsScalar()) {
        v1::Profile::PortRange pr;
        if (!port_range(n, mark, where, &pr)) return;
        (rep ? r->AddMessage(m, fd) : r->MutableMessage(m, fd))->CopyFrom(pr);
        return;
      }
      if (!n.IsMap()) return wrong();
      pb::Message* sub = rep ? r->AddMessage(m, fd) : r->MutableMessage(m, fd);
      message(n, sub, where);
      return;
    }
    if (!n.IsScalar()) return wrong();
    const std::string& f = format_of(fd);

    switch (fd->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_STRING: {
        auto s = format_string(n.Scalar(), f);
        if (!s) {
          err(mark, fmt::format("{}: {}", where, s.error()));
          return;
        }
        add_site(Site{file_, where, *s, mark.line + 1, mark.column + 1});
        rep ? r->AddString(m, fd, *s) : r->SetString(m, fd, *s);
        return;
      }
      case pb::FieldDescriptor::CPPTYPE_BOOL: {
        // YAML 1.2 booleans only: "yes"/"on" are strings, not silently true.
        if (n.Tag() == "!" || (n.Scalar() != "true" && n.Scalar() != "false")) return wrong();
        bool b = n.Scalar() == "true";
        rep ? r->AddBool(m, fd, b) : r->SetBool(m, fd, b);
        return;
      }
      case pb::FieldDescriptor::CPPTYPE_UINT32:
      case pb::FieldDescriptor::CPPTYPE_UINT64: {
        const bool is32 = fd->cpp_type() == pb::FieldDescriptor::CPPTYPE_UINT32;
        auto v = f == "size" ? parse_size(n) : plain_uint(n, is32 ? UINT32_MAX : UINT64_MAX);
        if (!v) return wrong();
        if (f == "port" && (*v < 1 || *v > 65535))
          return err(mark, fmt::format("{}: port {} is outside 1-65535", where, *v));
        if (f == "positive" && *v == 0) return err(mark, fmt::format("{}: must be greater than 0", where));
        if (is32)
          rep ? r->AddUInt32(m, fd, static_cast<uint32_t>(*v)) : r->SetUInt32(m, fd, static_cast<uint32_t>(*v));
        else
          rep ? r->AddUInt64(m, fd, *v) : r->SetUInt64(m, fd, *v);
        return;
      }
      case pb::FieldDescriptor::CPPTYPE_ENUM: {
        const auto* ev = enum_from_yaml(fd->enum_type(), n.Scalar());
        if (!ev)
          return err(mark, fmt::format("{}: '{}' is not one of: {}", where, n.Scalar(), enum_choices(fd->enum_type())));
        rep ? r->AddEnum(m, fd, ev) : r->SetEnum(m, fd, ev);
        return;
      }
      default:
        // profile.proto only uses the types above; a new one needs a case here.
        return err(mark, fmt::format("{}: field type {} is not supported by the YAML loader", where, fd->type_name()));
    }
  }

  std::expected<std::string, std::string> format_string(const std::string& raw, const std::string& f) {
    if (f == "path" || f == "file") {
      auto e = expand(raw, vars_);
      if (!e) return e;
      if (f == "file" && !e->empty() && (*e)[0] != '/') *e = dir_ + "/" + *e;
      if (f == "file" && !e->empty() && (*e)[0] != '/') *e = fs::absolute(*e).string();
      if (!e->empty() && (*e)[0] != '/')
        return std::unexpected(fmt::format("'{}' is not an absolute path{}", raw,
                                           raw == *e ? "" : fmt::format(" (expands to '{}')", *e)));
      return normalize_absolute(*e);
    }
    if (f == "cidr") {
      // One CIDR parser for profiles and the network policy they compile to.
      if (auto c = parse_cidr(raw); !c)
        return std::unexpected(c.error().context +
                               (c.error().hint.rfind("did you mean", 0) == 0 ? "; " + c.error().hint : ""));
      return raw;
    }
    if (f == "ip") {
      in6_addr a6;
      in_addr a4;
      if (raw == "system" || inet_pton(AF_INET, raw.c_str(), &a4) == 1 || inet_pton(AF_INET6, raw.c_str(), &a6) == 1)
        return raw;
      return std::unexpected(fmt::format("'{}' is not an IP address (or 'system' for /etc/resolv.conf)", raw));
    }
    if (f == "domain") {
      auto d = parse_domain_pattern(raw);
      if (!d) return std::unexpected(d.error().context);
      return *d;
    }
    if (f == "syscall") {
      if (seccomp_syscall_resolve_name(raw.c_str()) == __NR_SCMP_ERROR)
        return std::unexpected(fmt::format("unknown syscall '{}' (not known to libseccomp for this architecture)", raw));
      return raw;
    }
    if (f == "errno") {
      if (!errno_from_name(raw)) return std::unexpected(fmt::format("unknown errno name '{}' (write e.g. EPERM, EACCES)", raw));
      return raw;
    }
    if (f == "account") {
      if (!valid_account(raw)) return std::unexpected(fmt::format("'{}' is not a user/group name or numeric id", raw));
      return raw;
    }
    if (f == "env_name") {
      if (!valid_env_name(raw))
        return std::unexpected(fmt::format("'{}' is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)", raw));
      return raw;
    }
    if (f == "env_pattern") {
      if (!valid_env_pattern(raw))
        return std::unexpected(fmt::format("'{}' is not an environment variable name or pattern (letters, digits, "
                                           "'_', and '*' or '?' as wildcards; not starting with a digit)",
                                           raw));
      return raw;
    }
    return raw;
  }

  // `443` or "8000-8100".
  bool port_range(const YAML::Node& n, const YAML::Mark& mark, const std::string& where, v1::Profile::PortRange* out) {
    const std::string& s = n.Scalar();
    size_t dash = s.find('-');
    std::optional<uint32_t> lo, hi;
    if (dash == std::string::npos) {
      if (n.Tag() != "!") lo = hi = parse_port(s);
    } else {
      lo = parse_port(std::string_view(s).substr(0, dash));
      hi = parse_port(std::string_view(s).substr(dash + 1));
    }
    if (!lo || !hi) {
      err(mark, fmt::format("{}: expected a port (443) or a port range (\"8000-8100\"), got '{}'", where, s));
      return false;
    }
    out->set_lo(*lo);
    out->set_hi(*hi);
    return check_ports(mark, where, *out);
  }

  bool check_ports(const YAML::Mark& mark, const std::string& where, const v1::Profile::PortRange& pr) {
    for (uint32_t p : {pr.lo(), pr.hi()})
      if (p < 1 || p > 65535) {
        err(mark, fmt::format("{}: port {} is outside 1-65535", where, p));
        return false;
      }
    if (pr.lo() > pr.hi()) {
      err(mark, fmt::format("{}: port range {}-{} is reversed (the first port must not exceed the second)", where,
                            pr.lo(), pr.hi()));
      return false;
    }
    return true;
  }

  // Checks that span fields of one message; runs only when its fields parsed cleanly.
  void check(const YAML::Node& n, pb::Message* m, const std::string& where) {
    if (auto* pr = dynamic_cast<v1::Profile::PortRange*>(m)) {
      if (pr->lo() == 0) return err(n.Mark(), fmt::format("{}: a port range needs 'lo'", where));
      if (pr->hi() == 0) pr->set_hi(pr->lo());  // {lo: 443} is the single port 443
      check_ports(n.Mark(), where, *pr);
    } else if (auto* rule = dynamic_cast<v1::Profile::NetworkRule*>(m)) {
      if (rule->cidr().empty())
        err(n.Mark(), fmt::format("{}: a network rule needs 'cidr' (0.0.0.0/0 and ::/0 mean any address)", where));
    } else if (auto* sc = dynamic_cast<v1::Profile::Syscalls*>(m)) {
      std::set<std::string> deny(sc->deny().begin(), sc->deny().end());
      for (int i = 0; i < sc->allow_size(); ++i)
        if (deny.count(sc->allow(i)))
          if (const Site* s = site(fmt::format("{}.allow[{}]", where, i)))
            warn(mark_at(s->line, s->column),
                 fmt::format("{}.allow[{}]: '{}' is also denied; deny wins", where, i, sc->allow(i)));
      if (sc->has_seccomp_json()) {
        const Site* s = site(join(where, "seccomp_json"));
        YAML::Mark mark = s ? mark_at(s->line, s->column) : n.Mark();
        auto oci = parse_oci_seccomp(sc->seccomp_json());
        if (!oci) {
          const Error& e = oci.error();
          err(mark, fmt::format("{}.seccomp_json: {}{}", where, e.context, e.code ? std::string(": ") + std::strerror(e.code) : ""));
        } else {
          if (!oci->unknown_syscalls.empty()) {
            std::string names;
            for (const auto& u : oci->unknown_syscalls) names += (names.empty() ? "" : ", ") + u;
            warn(mark, fmt::format("{}.seccomp_json: syscalls unknown to this libseccomp are skipped (as runc does): {}",
                                   where, names));
          }
          if (!oci->unknown_architectures.empty()) {
            std::string names;
            for (const auto& u : oci->unknown_architectures) names += (names.empty() ? "" : ", ") + u;
            warn(mark, fmt::format("{}.seccomp_json: architectures unknown to this libseccomp are skipped (the filter "
                                   "is built for the native one, as Docker does): {}",
                                   where, names));
          }
        }
      }
    }
  }

  static constexpr size_t kMaxValues = 100000;
  std::unordered_map<std::string, size_t> site_index_;  // where -> first index in sites
  std::string file_, dir_;
  const ProfileVars& vars_;
  size_t values_ = 0;
};

// yaml-cpp 0.7's LoadAll() loops for ever, allocating, when a document ends at a token no
// rule consumes: a ',' after a top-level block node ("- x\n, y"; the fuzz harness found it,
// jbeder/yaml-cpp#1319). So documents are counted first, stopping at the second, and only
// the first is built: the mark of the second is returned when there is one. Throws
// YAML::Exception on syntax errors, as LoadAll does.
struct DocumentCounter : YAML::EventHandler {
  int documents = 0;
  YAML::Mark second;
  void OnDocumentStart(const YAML::Mark& mark) override {
    if (++documents == 2) second = mark;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

struct OneDocument {
  std::optional<YAML::Node> node;   // none: the text holds no document
  std::optional<YAML::Mark> second; // where a second document (or stray text) starts
};

OneDocument load_one_document(const std::string& text) {
  OneDocument out;
  {
    std::istringstream in(text);
    YAML::Parser parser(in);
    DocumentCounter counter;
    while (counter.documents < 2 && parser.HandleNextDocument(counter)) {
    }
    if (counter.documents == 0) return out;
    if (counter.documents > 1) out.second = counter.second;
  }
  out.node = YAML::Load(text);  // builds the first document only
  return out;
}

// yaml-cpp 0.7 loops for ever, allocating, on a document whose first token is ','
// (jbeder/yaml-cpp#1040). Refused before it gets there: the line and column of such a
// ',' at the start of the text or right after a '---'/'...' marker, or npos.
std::optional<std::pair<int, int>> document_starting_with_comma(const std::string& text) {
  bool at_doc_start = true;
  int line = 1;
  for (size_t i = 0; i < text.size();) {
    size_t eol = text.find('\n', i);
    if (eol == std::string::npos) eol = text.size();
    std::string_view l(text.data() + i, eol - i);
    if (l.starts_with("---") || l.starts_with("...")) {
      at_doc_start = true;
      l.remove_prefix(3);
    }
    if (at_doc_start) {
      size_t k = l.find_first_not_of(" \t\r");
      bool skip = k == std::string_view::npos || l[k] == '#' || (l[k] == '%' && k == 0);
      if (!skip) {
        if (l[k] == ',') return std::pair{line, static_cast<int>(k + 1 + (eol - i - l.size()))};
        at_doc_start = false;
      }
    }
    i = eol + 1;
    ++line;
  }
  return std::nullopt;
}

bool is_regular_file(const std::string& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// Drops repeated entries that occur earlier in the same list (after extends appended them),
// recursively. Order is kept: the first occurrence stays where it was.
void dedup(pb::Message* m) {
  const pb::Reflection* r = m->GetReflection();
  std::vector<const pb::FieldDescriptor*> fields;
  r->ListFields(*m, &fields);
  for (const auto* fd : fields) {
    if (fd->is_map()) continue;  // keys are unique already (a merge replaces a parent's value)
    if (fd->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      if (!fd->is_repeated()) {
        dedup(r->MutableMessage(m, fd));
        continue;
      }
      for (int i = 0; i < r->FieldSize(*m, fd); ++i) dedup(r->MutableRepeatedMessage(m, fd, i));
    }
    if (!fd->is_repeated()) continue;
    std::set<std::string> seen;
    int keep = 0;
    for (int i = 0; i < r->FieldSize(*m, fd); ++i) {
      std::string k;
      switch (fd->cpp_type()) {
        case pb::FieldDescriptor::CPPTYPE_STRING: k = r->GetRepeatedString(*m, fd, i); break;
        case pb::FieldDescriptor::CPPTYPE_ENUM: k = std::to_string(r->GetRepeatedEnumValue(*m, fd, i)); break;
        case pb::FieldDescriptor::CPPTYPE_MESSAGE: k = r->GetRepeatedMessage(*m, fd, i).SerializeAsString(); break;
        case pb::FieldDescriptor::CPPTYPE_UINT32: k = std::to_string(r->GetRepeatedUInt32(*m, fd, i)); break;
        case pb::FieldDescriptor::CPPTYPE_UINT64: k = std::to_string(r->GetRepeatedUInt64(*m, fd, i)); break;
        case pb::FieldDescriptor::CPPTYPE_BOOL: k = std::to_string(r->GetRepeatedBool(*m, fd, i)); break;
        default: k = std::to_string(i); break;
      }
      if (!seen.insert(k).second) continue;
      if (keep != i) r->SwapElements(m, fd, keep, i);
      ++keep;
    }
    while (r->FieldSize(*m, fd) > keep) r->RemoveLast(m, fd);
  }
}

// Makes every default explicit so consumers (and `profile show`) never guess.
void fill_defaults(v1::Profile* p) {
  using P = v1::Profile;
  if (p->mode() == P::MODE_UNSPECIFIED) p->set_mode(P::MODE_ENFORCE);
  auto* a = p->mutable_actions();
  if (a->filesystem() == P::ACTION_UNSPECIFIED) a->set_filesystem(P::ACTION_DENY);
  if (a->network() == P::ACTION_UNSPECIFIED) a->set_network(P::ACTION_DENY);
  if (a->exec() == P::ACTION_UNSPECIFIED) a->set_exec(P::ACTION_DENY);
  auto* sc = p->mutable_syscalls();
  if (sc->action() == P::SYSCALL_ACTION_UNSPECIFIED) sc->set_action(P::SYSCALL_ACTION_ERRNO);
  if (!sc->has_errno_name()) sc->set_errno_name("EPERM");
  for (auto& rule : *p->mutable_network()->mutable_rules()) {
    if (rule.protocol() == P::PROTOCOL_UNSPECIFIED) rule.set_protocol(P::PROTOCOL_ANY);
    if (rule.action() == P::ACTION_UNSPECIFIED) rule.set_action(P::ACTION_ALLOW);
  }
  auto* env = p->mutable_environment();
  if (env->inherit() == P::Environment::INHERIT_UNSPECIFIED) env->set_inherit(P::Environment::INHERIT_ALL);
  auto* proc = p->mutable_process();
  if (p->filesystem().private_tmp()) {
    auto& ns = proc->namespaces();
    if (std::find(ns.begin(), ns.end(), P::NAMESPACE_MOUNT) == ns.end()) proc->add_namespaces(P::NAMESPACE_MOUNT);
  }
}

class Resolver {
 public:
  Resolver(const ProfileVars& vars, const std::vector<std::string>& search) : vars_(vars), search_(search) {}

  std::vector<Diagnostic> errors, warnings;
  std::vector<std::string> chain;   // canonical paths, outermost first while descending
  std::vector<Site> sites;

  std::optional<v1::Profile> resolve(const std::string& file, int depth) {
    auto read = read_input_file(file, kMaxProfileBytes);
    if (!read) {
      const Error& re = read.error();
      errors.push_back(Diagnostic{file, 0, 0,
                                  re.code ? fmt::format("cannot read: {}", std::strerror(re.code))
                                          : "cannot read: " + re.context.substr(std::min(re.context.size(), file.size() + 2))});
      return std::nullopt;
    }
    const std::string& text = *read;
    if (auto at = document_starting_with_comma(text)) {
      errors.push_back(Diagnostic{file, at->first, at->second, "YAML syntax error: a document cannot start with ','"});
      return std::nullopt;
    }
    // YAML is Unicode text and every string field of the profile message is UTF-8: bytes
    // that are not would reach names, paths and comments the kernel, the store and the
    // operator's terminal read (and to_yaml could not write them back as they were).
    for (size_t i = 0, line = 1, col = 1; i < text.size();) {
      const auto* p = reinterpret_cast<const unsigned char*>(text.data()) + i;
      size_t n = *p < 0x80 ? 1 : utf8_sequence_length(p, text.size() - i);
      if (n == 0) {
        errors.push_back(Diagnostic{file, static_cast<int>(line), static_cast<int>(col),
                                    fmt::format("byte 0x{:02x} is not UTF-8: a profile is UTF-8 text", *p)});
        return std::nullopt;
      }
      if (*p == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
      i += n;
    }
    OneDocument doc;
    try {
      doc = load_one_document(text);
    } catch (const YAML::Exception& ex) {
      // The library quotes the offending bytes: control characters must not reach a terminal.
      errors.push_back(Diagnostic{file, ex.mark.line + 1, ex.mark.column + 1, "YAML syntax error: " + escape_text(ex.msg)});
      return std::nullopt;
    }
    if (!doc.node) {
      errors.push_back(Diagnostic{file, 1, 1, "expected one YAML document, found none"});
      return std::nullopt;
    }
    if (doc.second) {
      errors.push_back(Diagnostic{file, doc.second->line + 1, doc.second->column + 1,
                                  "expected one YAML document; a second one (or text after the first) starts here"});
      return std::nullopt;
    }
    std::vector<YAML::Node> docs{*doc.node};

    v1::Profile raw;
    FileLoader loader(file, vars_);
    loader.load(docs[0], &raw);
    warnings.insert(warnings.end(), loader.warnings.begin(), loader.warnings.end());
    sites.insert(sites.end(), loader.sites.begin(), loader.sites.end());
    if (!loader.errors.empty()) {
      errors.insert(errors.end(), loader.errors.begin(), loader.errors.end());
      return std::nullopt;
    }
    if (!raw.has_extends()) return raw;

    const Site* at = loader.site("extends");
    auto diag = [&](std::string msg) {
      errors.push_back(Diagnostic{file, at ? at->line : 0, at ? at->column : 0, std::move(msg)});
    };
    if (depth >= kMaxExtendsDepth) {
      diag(fmt::format("extends: chain deeper than {} profiles", kMaxExtendsDepth));
      return std::nullopt;
    }
    std::vector<std::string> looked;
    auto target = find(raw.extends(), fs::path(file).parent_path().string(), &looked);
    if (!target) {
      std::string where;
      // Escaped: the name is the file's bytes, and every path looked at contains it.
      for (const auto& l : looked) where += "\n  " + printable_text(l);
      diag(fmt::format("extends: profile '{}' not found; looked for:{}", printable_text(raw.extends()), where));
      return std::nullopt;
    }
    std::string canon = canonical(*target);
    if (std::find(chain.begin(), chain.end(), canon) != chain.end()) {
      std::string cyc;
      auto from = std::find(chain.begin(), chain.end(), canon);
      for (auto it = from; it != chain.end(); ++it) cyc += *it + " -> ";
      diag(fmt::format("extends: cycle: {}{}", cyc, canon));
      return std::nullopt;
    }
    chain.push_back(canon);
    auto parent = resolve(*target, depth + 1);
    if (!parent) return std::nullopt;

    // Lists append, set scalars override, messages merge (protobuf's MergeFrom), then
    // duplicates go. Name and description describe one file, so they are not inherited.
    v1::Profile merged = std::move(*parent);
    merged.MergeFrom(raw);
    raw.has_name() ? merged.set_name(raw.name()) : merged.clear_name();
    raw.has_description() ? merged.set_description(raw.description()) : merged.clear_description();
    merged.clear_extends();
    dedup(&merged);
    return merged;
  }

  // Only files the run may trust (untrusted_profile_path): a file named by path that
  // another user can write is an error; one found by name in such a place is skipped
  // (said in the warnings and in `looked`), so the search goes on to a trusted one.
  std::optional<std::string> find(const std::string& ref, const std::string& base_dir, std::vector<std::string>* looked) {
    if (is_profile_path(ref)) {
      std::string p = ref[0] == '/' || base_dir.empty() ? ref : base_dir + "/" + ref;
      looked->push_back(p);
      if (!is_regular_file(p)) return std::nullopt;
      if (auto why = untrusted_profile_path(p, vars_.uid); !why.empty()) {
        errors.push_back(Diagnostic{p, 0, 0, fmt::format("not read: {} (a run of uid {} reads only profiles that "
                                                         "root or uid {} owns and no one else can write)",
                                                         why, vars_.uid, vars_.uid)});
        looked->back() += " (not trusted: " + why + ")";
        return std::nullopt;
      }
      return p;
    }
    std::vector<std::string> dirs;
    if (!base_dir.empty()) dirs.push_back(base_dir);
    dirs.insert(dirs.end(), search_.begin(), search_.end());
    for (const auto& d : dirs) {
      std::string p = d + "/" + ref + ".yaml";
      looked->push_back(p);
      if (!is_regular_file(p)) continue;
      if (auto why = untrusted_profile_path(p, vars_.uid); !why.empty()) {
        warnings.push_back(Diagnostic{p, 0, 0, "skipped: " + why + " (not trusted for a run of uid " +
                                                   std::to_string(vars_.uid) + ")"});
        looked->back() += " (skipped, not trusted: " + why + ")";
        continue;
      }
      return p;
    }
    return std::nullopt;
  }

  static std::string canonical(const std::string& p) {
    std::error_code ec;
    auto c = fs::weakly_canonical(p, ec);
    return ec ? p : c.string();
  }

 private:
  const ProfileVars& vars_;
  const std::vector<std::string>& search_;
};

// An allow entry that a deny entry covers grants nothing. That is legitimate when a child
// narrows its parent (extends can only add, so narrowing is done with deny), hence a
// warning, not an error: deny wins and the result fails closed.
void overlap_warnings(const v1::Profile& p, const std::vector<Site>& sites, std::vector<Diagnostic>* out) {
  const auto& fsys = p.filesystem();
  struct List {
    const char* name;
    const google::protobuf::RepeatedPtrField<std::string>& entries;
  };
  const List allows[] = {{"read", fsys.read()}, {"write", fsys.write()}, {"exec", fsys.exec()}};
  // Each list sorted by path, so the entries under a deny value are found by binary search
  // (the entry itself and the range [value + "/", value + "0"), '0' being the byte after
  // '/'), not by testing every entry against every deny value: large profiles stay linear.
  std::vector<std::vector<std::pair<std::string_view, int>>> sorted;
  for (const auto& list : allows) {
    auto& v = sorted.emplace_back();
    for (int i = 0; i < list.entries.size(); ++i) v.emplace_back(list.entries[i], i);
    std::sort(v.begin(), v.end());
  }
  auto under = [&](size_t l, const std::string& tree) {
    const auto& v = sorted[l];
    std::vector<int> hits;
    auto collect = [&](std::string_view lo, std::string_view hi) {
      auto it = std::lower_bound(v.begin(), v.end(), std::pair<std::string_view, int>{lo, INT_MIN});
      for (; it != v.end() && it->first < hi; ++it) hits.push_back(it->second);
    };
    if (tree == "/") {
      for (const auto& e : v) hits.push_back(e.second);
    } else {
      std::string lo = tree + "/", hi = tree + "0";
      auto eq = std::equal_range(v.begin(), v.end(), std::pair<std::string_view, int>{tree, INT_MIN},
                                 [](const auto& a, const auto& b) { return a.first < b.first; });
      for (auto it = eq.first; it != eq.second; ++it) hits.push_back(it->second);
      collect(lo, hi);
    }
    std::sort(hits.begin(), hits.end());  // the list's own order, as the warnings always came
    return hits;
  };
  std::set<std::string> reported;
  for (const auto& s : sites)
    if (s.where.starts_with("filesystem.write[") && s.value == "/" && reported.insert("/").second)
      out->push_back(Diagnostic{s.file, s.line, s.column,
                                fmt::format("{}: the whole file system is writable (only the deny lists still hold); "
                                            "check what the variables expanded to",
                                            s.where),
                                true});
  for (const auto& s : sites) {
    bool deny = s.where.starts_with("filesystem.deny[");
    bool deny_write = s.where.starts_with("filesystem.deny_write[");
    if (!deny && !deny_write) continue;
    for (size_t l = 0; l < std::size(allows); ++l) {
      const auto& list = allows[l];
      if (deny_write && std::string_view(list.name) != "write") continue;
      for (int i : under(l, s.value)) {
        const std::string& a = list.entries[i];
        std::string key = s.value + "\n" + list.name + "\n" + a;
        if (!reported.insert(key).second) continue;
        std::string what = a == s.value ? fmt::format("'{}' is also in filesystem.{}", a, list.name)
                                        : fmt::format("'{}' covers filesystem.{} entry '{}'", s.value, list.name, a);
        out->push_back(Diagnostic{s.file, s.line, s.column,
                                  fmt::format("{}: {}; {} wins, so that entry grants {}", s.where, what,
                                              deny ? "deny" : "deny_write", deny ? "nothing" : "no writes"),
                                  true});
      }
    }
  }
}

// An environment.allow entry a deny pattern covers lets nothing in: deny wins. The way
// to let a denied credential through on purpose is its exact name in environment.pass.
void env_overlap_warnings(const v1::Profile& p, const std::vector<Site>& sites, std::vector<Diagnostic>* out) {
  const auto& deny = p.environment().deny();
  // Deny patterns indexed so each allow name is matched only against the patterns that can
  // match it: exact names by lookup, wildcard patterns by their literal prefix (or, when
  // they start with a wildcard, their literal suffix); only patterns with neither are
  // tried on every name. The first matching pattern in file order is the one named.
  std::unordered_map<std::string_view, int> exact;
  std::unordered_map<std::string_view, std::vector<int>> by_prefix, by_suffix;
  std::set<size_t> prefix_lens, suffix_lens;
  std::vector<int> anywhere;
  for (int i = 0; i < deny.size(); ++i) {
    std::string_view d = deny[i];
    size_t first = d.find_first_of("*?"), last = d.find_last_of("*?");
    if (first == std::string_view::npos) {
      exact.emplace(d, i);
    } else if (first > 0) {
      by_prefix[d.substr(0, first)].push_back(i);
      prefix_lens.insert(first);
    } else if (last + 1 < d.size()) {
      by_suffix[d.substr(last + 1)].push_back(i);
      suffix_lens.insert(d.size() - last - 1);
    } else {
      anywhere.push_back(i);
    }
  }
  // A bound on the pattern matching a hostile profile can ask for (patterns sharing one
  // prefix), past which the check stops and says so rather than taking minutes.
  size_t budget = 10'000'000;
  std::set<std::string> reported;
  for (const auto& s : sites) {
    if (!s.where.starts_with("environment.allow[") || !reported.insert(s.value).second) continue;
    std::string_view name = s.value;
    int best = INT_MAX;
    if (auto it = exact.find(name); it != exact.end()) best = it->second;
    auto try_all = [&](const std::vector<int>& cands) {
      for (int i : cands) {
        if (i >= best) break;  // candidates are in file order
        if (budget) --budget;
        if (env_pattern_matches(deny[i], name)) best = i;
      }
    };
    for (size_t len : prefix_lens)
      if (len <= name.size())
        if (auto it = by_prefix.find(name.substr(0, len)); it != by_prefix.end()) try_all(it->second);
    for (size_t len : suffix_lens)
      if (len <= name.size())
        if (auto it = by_suffix.find(name.substr(name.size() - len)); it != by_suffix.end()) try_all(it->second);
    try_all(anywhere);
    if (!budget) {
      out->push_back(Diagnostic{s.file, s.line, s.column,
                                "environment: too many allow and deny patterns to check them all for overlaps; "
                                "the rest were not checked",
                                true});
      return;
    }
    if (best == INT_MAX) continue;
    out->push_back(Diagnostic{s.file, s.line, s.column,
                              fmt::format("{}: '{}' is covered by environment.deny entry '{}'; deny wins, so it lets "
                                          "nothing in (to let a denied variable through, name it in environment.pass)",
                                          s.where, s.value, deny[best]),
                              true});
  }
}

// A profile file the sandbox may write is a policy the agent can rewrite for its next run
// (e.g. a profile kept in the workspace, or a same-named file placed next to it that
// `extends:` would pick first).
void self_writable_warnings(const v1::Profile& p, const std::vector<std::string>& chain, std::vector<Diagnostic>* out) {
  const auto& fsys = p.filesystem();
  std::set<std::string> reported;
  for (const auto& file : chain) {
    std::string dir = fs::path(file).parent_path().string();
    if (reported.count(dir)) continue;  // once per directory, not once per layer
    for (const auto& w : fsys.write()) {
      if (!is_under(dir, w)) continue;
      // With private_tmp the sandbox's /tmp, /var/tmp and /dev/shm are fresh tmpfs mounts:
      // a profile under the host's /tmp is not what the agent writes there. (Trees under
      // them that are granted by name, a workspace in /tmp, are the host's: still checked.
      // An unprivileged run without agentcaged has no view and says so at start.)
      if (fsys.private_tmp() && p.actions().filesystem() != v1::Profile::ACTION_ALLOW &&
          (w == "/tmp" || w == "/var/tmp" || w == "/dev/shm"))
        continue;
      bool denied = std::any_of(fsys.deny().begin(), fsys.deny().end(), [&](const std::string& d) { return is_under(dir, d); }) ||
                    std::any_of(fsys.deny_write().begin(), fsys.deny_write().end(),
                                [&](const std::string& d) { return is_under(dir, d); });
      if (denied) continue;
      out->push_back(Diagnostic{file, 0, 0,
                                fmt::format("this profile's directory is writable inside the sandbox (filesystem.write "
                                            "entry '{}'): the agent could change its own policy for the next run; keep "
                                            "profiles outside writable trees or add the directory to filesystem.deny_write",
                                            w),
                                true});
      reported.insert(dir);
      break;
    }
  }
}

std::string join_diags(const std::vector<Diagnostic>& ds) {
  std::string out;
  for (const auto& d : ds) out += (out.empty() ? "" : "\n") + d.str();
  return out;
}

}  // namespace

std::string Diagnostic::str() const {
  std::string loc = file;
  if (line > 0) loc += fmt::format(":{}:{}", line, column);
  return fmt::format("{}: {}{}", loc, warning ? "warning: " : "", message);
}

ProfileVars ProfileVars::from_environment(const std::string& workspace) {
  ProfileVars v;
  std::error_code ec;
  fs::path ws = workspace.empty() ? fs::current_path(ec) : fs::absolute(workspace, ec);
  v.workspace = ws.lexically_normal().string();
  if (v.workspace.size() > 1 && v.workspace.back() == '/') v.workspace.pop_back();
  const passwd* pw = getpwuid(getuid());
  const char* home = getenv("HOME");
  v.home = home && *home ? home : (pw ? pw->pw_dir : "");
  const char* user = getenv("USER");
  v.user = user && *user ? user : (pw ? pw->pw_name : "");
  const char* tmp = getenv("TMPDIR");
  v.tmpdir = tmp && *tmp ? tmp : "/tmp";
  return v;
}

std::string untrusted_profile_path(const std::string& path, uid_t uid) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::absolute(path, ec), ec);
  if (ec) return fmt::format("{}: {}", printable_text(path), ec.message());
  // From the root down: a directory anyone may write to lets them replace what is below.
  fs::path at;
  for (const auto& part : p) {
    at /= part;
    struct stat st {};
    if (::stat(at.c_str(), &st) != 0) {
      if (errno == ENOENT) break;  // what does not exist yet cannot be trusted or not
      return fmt::format("{}: {}", printable_text(at.string()), std::strerror(errno));
    }
    if (st.st_uid != 0 && st.st_uid != uid)
      return fmt::format("{} is owned by uid {}", printable_text(at.string()), st.st_uid);
    bool sticky_dir = S_ISDIR(st.st_mode) && (st.st_mode & S_ISVTX);
    if ((st.st_mode & S_IWOTH) && !sticky_dir)
      return fmt::format("{} is writable by every user", printable_text(at.string()));
    if ((st.st_mode & S_IWGRP) && st.st_gid != 0 && !sticky_dir)
      return fmt::format("{} is writable by group {}", printable_text(at.string()), st.st_gid);
  }
  return {};
}

std::vector<std::string> profile_search_path() {
  std::vector<std::string> dirs;
  if (const char* env = getenv("AGENTCAGE_PROFILE_PATH")) {
    std::string_view s(env);
    while (!s.empty()) {
      size_t c = s.find(':');
      if (c == std::string_view::npos) c = s.size();
      if (c > 0) dirs.emplace_back(s.substr(0, c));
      s.remove_prefix(std::min(c + 1, s.size()));
    }
  }
  dirs.emplace_back("/etc/agentcage/profiles");
  if (*AGENTCAGE_PROFILE_INSTALL_DIR) dirs.emplace_back(AGENTCAGE_PROFILE_INSTALL_DIR);
  if (*AGENTCAGE_PROFILE_DIR) dirs.emplace_back(AGENTCAGE_PROFILE_DIR);
  return dirs;
}

bool is_profile_path(std::string_view ref) {
  return ref.find('/') != std::string_view::npos || ref.ends_with(".yaml") || ref.ends_with(".yml");
}

Result<LoadedProfile> resolve_profile(const std::string& name_or_path, const ProfileVars& vars,
                                      const std::vector<std::string>& search) {
  Resolver res(vars, search);
  std::vector<std::string> looked;
  if (!is_profile_path(name_or_path)) {
    // A name is a file name on the search path, nothing more: no "..", no hidden files.
    bool ok = !name_or_path.empty() && name_or_path[0] != '.' &&
              std::all_of(name_or_path.begin(), name_or_path.end(),
                          [](unsigned char c) { return std::isalnum(c) || c == '-' || c == '_' || c == '.'; });
    if (!ok) return error(fmt::format("profile name '{}' is not valid", name_or_path), "use letters, digits, '-', '_' or a path to a .yaml file");
  }
  auto file = res.find(name_or_path, "", &looked);
  if (!file) {
    std::string where;
    for (const auto& l : looked) where += (where.empty() ? "" : ", ") + l;
    return error(fmt::format("profile '{}' not found (looked for: {})", name_or_path, where),
                 "name a shipped profile (default, coding-agent, coding-agent-open-https, readonly-analyst, "
                 "network-none, mcp-server, package-install) or a .yaml file; set AGENTCAGE_PROFILE_PATH to add directories");
  }
  res.chain.push_back(Resolver::canonical(*file));
  auto p = res.resolve(*file, 0);
  if (!p) return error(join_diags(res.errors));

  LoadedProfile out;
  out.profile = std::move(*p);
  if (!out.profile.has_name()) out.profile.set_name(fs::path(*file).stem().string());
  fill_defaults(&out.profile);
  // After the defaults, so a rule written with `protocol: any` and one without are one rule.
  dedup(&out.profile);
  out.chain.assign(res.chain.rbegin(), res.chain.rend());
  out.warnings = std::move(res.warnings);
  overlap_warnings(out.profile, res.sites, &out.warnings);
  env_overlap_warnings(out.profile, res.sites, &out.warnings);
  self_writable_warnings(out.profile, out.chain, &out.warnings);
  return out;
}

Result<v1::Profile> load_profile(const std::string& name_or_path, const ProfileVars& vars) {
  auto r = resolve_profile(name_or_path, vars);
  if (!r) return std::unexpected(r.error());
  return std::move(r->profile);
}

}  // namespace agentcage::core
