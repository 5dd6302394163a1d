// SPDX-License-Identifier: Apache-2.0
#include "core/events/event_json.h"

#include <array>
#include <vector>
#include <cctype>
#include <charconv>
#include <fmt/format.h>

#include "core/base/text.h"

namespace agentcage::core {
namespace {

// Bytes quote() cannot copy as they are: controls, '"', '\\', and non-ASCII (checked as UTF-8).
constexpr std::array<bool, 256> kEscape = [] {
  std::array<bool, 256> t{};
  for (int c = 0; c < 256; ++c) t[static_cast<size_t>(c)] = c < 0x20 || c >= 0x80 || c == '"' || c == '\\';
  return t;
}();

// Writes `"key":value` pairs separated by commas, skipping proto3 default values.
class Obj {
 public:
  explicit Obj(std::string& out) : out_(out) { out_ += '{'; }
  // No braces: only to reach quote() for a value outside an object.
  enum Bare { bare };
  Obj(std::string& out, Bare) : out_(out), braces_(false) {}
  Obj(const Obj&) = delete;  // one '{', one '}': never copied (returns are elided)
  Obj& operator=(const Obj&) = delete;
  ~Obj() {
    if (braces_) out_ += '}';
  }

  template <size_t N>
  void str(const char (&k)[N], const std::string& v) {
    if (v.empty()) return;
    key(k);
    quote(v);
  }
  template <size_t N>
  void u32(const char (&k)[N], uint32_t v) {
    if (!v) return;
    key(k);
    num(v);
  }
  template <size_t N>
  void i32(const char (&k)[N], int32_t v) {
    if (!v) return;
    key(k);
    num(v);
  }
  template <size_t N>
  void u64(const char (&k)[N], uint64_t v) {  // proto3 JSON: 64-bit integers are strings
    if (!v) return;
    key(k);
    out_ += '"';
    num(v);
    out_ += '"';
  }
  template <size_t N>
  void boolean(const char (&k)[N], bool v) {
    if (!v) return;
    key(k);
    out_ += "true";
  }
  template <size_t N, class R>
  void strs(const char (&k)[N], const R& v) {
    if (v.empty()) return;
    key(k);
    out_ += '[';
    bool first = true;
    for (const auto& s : v) {
      if (!first) out_ += ',';
      first = false;
      quote(s);
    }
    out_ += ']';
  }
  template <size_t N, class R>
  void u64s(const char (&k)[N], const R& v) {
    if (v.empty()) return;
    key(k);
    out_ += '[';
    bool first = true;
    for (uint64_t x : v) {
      if (!first) out_ += ',';
      first = false;
      out_ += '"';
      num(x);
      out_ += '"';
    }
    out_ += ']';
  }
  // For the reflection writer: a key known only at run time, and a bare string value.
  void dyn_key(std::string_view k) {
    if (!first_) out_ += ',';
    first_ = false;
    out_ += '"';
    out_ += k;
    out_.append("\":", 2);
  }
  void value(const std::string& v) { quote(v); }
  // Opens a nested object under k; the caller fills it through the returned Obj.
  template <size_t N>
  Obj child(const char (&k)[N]) {
    key(k);
    return Obj(out_);
  }

 private:
  template <class T>
  void num(T v) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out_.append(buf, r.ptr);
  }
  template <size_t N>
  void key(const char (&k)[N]) {  // N - 1 known at compile time: no strlen per field
    if (!first_) out_ += ',';
    first_ = false;
    out_ += '"';
    out_.append(k, N - 1);
    out_.append("\":", 2);
  }
  // JSON string escaping. Valid UTF-8 passes through; a byte that is not part of valid
  // UTF-8 (a Linux path or argv may hold any bytes) is written as \udcXX, PEP 383's
  // "surrogateescape": the line stays valid JSON, and the escape cannot be confused with a
  // real character (lone surrogates never occur in UTF-8), so it is lossless. Python gets
  // the bytes back with s.encode("utf-8", "surrogateescape").
  void quote(const std::string& s) {
    out_ += '"';
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    size_t n = s.size(), run = 0;  // [run, i) is plain ASCII not yet copied: appended in bulk
    for (size_t i = 0; i < n; ++i) {
      unsigned char c = p[i];
      if (!kEscape[c]) continue;
      out_.append(s, run, i - run);
      if (c == '"' || c == '\\') {
        out_ += '\\';
        out_ += static_cast<char>(c);
      } else if (c < 0x20) {
        switch (c) {
          case '\n': out_ += "\\n"; break;
          case '\t': out_ += "\\t"; break;
          case '\r': out_ += "\\r"; break;
          case '\b': out_ += "\\b"; break;
          case '\f': out_ += "\\f"; break;
          default: fmt::format_to(std::back_inserter(out_), "\\u{:04x}", c);
        }
      } else {
        size_t len = utf8_sequence_length(p + i, n - i);
        if (len) {
          out_.append(s, i, len);
          i += len - 1;
        } else {
          fmt::format_to(std::back_inserter(out_), "\\udc{:02x}", c);
        }
      }
      run = i + 1;
    }
    out_.append(s, run, n - run);
    out_ += '"';
  }

  std::string& out_;
  bool braces_ = true;
  bool first_ = true;
};

void process_json(Obj o, const v1::Process& p) {
  o.u32("pid", p.pid());
  o.u32("tid", p.tid());
  o.u32("ppid", p.ppid());
  o.str("exec_id", p.exec_id());
  o.str("parent_exec_id", p.parent_exec_id());
  o.u32("uid", p.uid());
  o.u32("gid", p.gid());
  o.str("binary", p.binary());
  o.strs("argv", p.argv());
  o.boolean("argv_truncated", p.argv_truncated());
  o.str("cwd", p.cwd());
  o.str("comm", p.comm());
  o.u64("cgroup_id", p.cgroup_id());
  o.u64("start_time_ns", p.start_time_ns());
}

void file_json(Obj o, const v1::FileOp& f) {
  o.str("op", f.op());
  o.str("path", f.path());
  o.boolean("path_resolved", f.path_resolved());
  o.boolean("path_truncated", f.path_truncated());
  o.str("path2", f.path2());
  o.u32("flags", f.flags());
  o.u32("mode", f.mode());
  o.u32("owner_uid", f.owner_uid());
  o.u32("owner_gid", f.owner_gid());
  o.str("xattr_name", f.xattr_name());
  o.i32("result", f.result());
  o.str("error", f.error());
  o.str("syscall", f.syscall());
  o.i32("dirfd", f.dirfd());
  o.u64("repeats", f.repeats());
}

void sockaddr_json(Obj o, const v1::SockAddr& a) {
  o.str("family", a.family());
  o.str("address", a.address());
  o.u32("port", a.port());
  o.boolean("v4_mapped", a.v4_mapped());
}

void net_json(Obj o, const v1::NetOp& n) {
  o.str("op", n.op());
  o.str("protocol", n.protocol());
  if (n.has_remote()) sockaddr_json(o.child("remote"), n.remote());
  if (n.has_local()) sockaddr_json(o.child("local"), n.local());
  o.i32("result", n.result());
  o.str("error", n.error());
  o.boolean("dns_redirected", n.dns_redirected());
  o.boolean("learned", n.learned());
  o.str("name", n.name());
  o.boolean("name_checked", n.name_checked());
  o.str("wire", n.wire());
}

void syscall_json(Obj o, const v1::SyscallFailure& x) {
  o.u32("nr", x.nr());
  o.str("name", x.name());
  o.i32("result", x.result());
  o.str("error", x.error());
  o.u64s("args", x.args());
}

void dns_json(Obj o, const v1::DnsQuery& d) {
  o.str("name", d.name());
  o.str("type", d.type());
  o.str("rcode", d.rcode());
  o.strs("answers", d.answers());
  o.str("transport", d.transport());
  o.str("rule", d.rule());
}

// Every message by hand, not protobuf's JSON printer: that one writes `bytes` fields as
// base64, and argv or a path must read as text when it is text (see quote()).
void violation_json(Obj o, const v1::Violation& v) {
  o.str("mechanism", v.mechanism());
  o.str("rule", v.rule());
  o.str("action", v.action());
  o.str("what", v.what());
  switch (v.attempt_case()) {
    case v1::Violation::kFile: file_json(o.child("file"), v.file()); break;
    case v1::Violation::kNet: net_json(o.child("net"), v.net()); break;
    case v1::Violation::kSyscall: syscall_json(o.child("syscall"), v.syscall()); break;
    case v1::Violation::kDns: dns_json(o.child("dns"), v.dns()); break;
    default: break;
  }
}

// Any message, through reflection, with the same conventions as the event writer (proto
// field names, defaults omitted, 64-bit integers as strings, `bytes` as escaped text).
void message_json_into(std::string& out, const google::protobuf::Message& m);

void field_value(std::string& out, const google::protobuf::Message& m, const google::protobuf::FieldDescriptor* f,
                 int i) {
  using FD = google::protobuf::FieldDescriptor;
  const auto* r = m.GetReflection();
  bool rep = f->is_repeated();
  auto put = [&](auto v) { out += fmt::format("{}", v); };
  switch (f->cpp_type()) {
    case FD::CPPTYPE_INT32: put(rep ? r->GetRepeatedInt32(m, f, i) : r->GetInt32(m, f)); break;
    case FD::CPPTYPE_UINT32: put(rep ? r->GetRepeatedUInt32(m, f, i) : r->GetUInt32(m, f)); break;
    case FD::CPPTYPE_INT64: out += fmt::format("\"{}\"", rep ? r->GetRepeatedInt64(m, f, i) : r->GetInt64(m, f)); break;
    case FD::CPPTYPE_UINT64: out += fmt::format("\"{}\"", rep ? r->GetRepeatedUInt64(m, f, i) : r->GetUInt64(m, f)); break;
    case FD::CPPTYPE_DOUBLE: put(rep ? r->GetRepeatedDouble(m, f, i) : r->GetDouble(m, f)); break;
    case FD::CPPTYPE_FLOAT: put(rep ? r->GetRepeatedFloat(m, f, i) : r->GetFloat(m, f)); break;
    case FD::CPPTYPE_BOOL: out += (rep ? r->GetRepeatedBool(m, f, i) : r->GetBool(m, f)) ? "true" : "false"; break;
    case FD::CPPTYPE_ENUM: {
      const auto* e = rep ? r->GetRepeatedEnum(m, f, i) : r->GetEnum(m, f);
      out += '"';
      out += e->name();
      out += '"';
      break;
    }
    case FD::CPPTYPE_STRING: {
      Obj q(out, Obj::bare);
      q.value(rep ? r->GetRepeatedString(m, f, i) : r->GetString(m, f));
      break;
    }
    case FD::CPPTYPE_MESSAGE:
      message_json_into(out, rep ? r->GetRepeatedMessage(m, f, i) : r->GetMessage(m, f));
      break;
  }
}

void message_json_into(std::string& out, const google::protobuf::Message& m) {
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  m.GetReflection()->ListFields(m, &fields);  // set fields only, in number order
  Obj o(out);
  for (const auto* f : fields) {
    o.dyn_key(f->name());
    if (!f->is_repeated()) {
      field_value(out, m, f, 0);
      continue;
    }
    out += '[';
    int n = m.GetReflection()->FieldSize(m, f);
    for (int i = 0; i < n; ++i) {
      if (i) out += ',';
      field_value(out, m, f, i);
    }
    out += ']';
  }
}

}  // namespace

std::string message_json(const google::protobuf::Message& m) {
  std::string out;
  message_json_into(out, m);
  return out;
}

void append_event_json(const v1::Event& ev, std::string& out) {
  Obj o(out);
  o.u64("seq", ev.seq());
  o.str("node", ev.node());
  o.u64("time_ns", ev.time_ns());
  o.u64("ktime_ns", ev.ktime_ns());
  o.str("sandbox_id", ev.sandbox_id());
  if (ev.has_process()) process_json(o.child("process"), ev.process());
  o.boolean("host_mode", ev.host_mode());
  switch (ev.kind_case()) {
    case v1::Event::kExec: {
      const auto& x = ev.exec();
      Obj c = o.child("exec");
      c.str("filename", x.filename());
      c.u32("argc", x.argc());
      c.boolean("filename_truncated", x.filename_truncated());
      c.str("interpreter", x.interpreter());
      c.i32("result", x.result());
      c.str("error", x.error());
      c.strs("argv", x.argv());
      c.boolean("killed", x.killed());
      break;
    }
    case v1::Event::kFork: {
      Obj c = o.child("fork");
      c.u32("child_pid", ev.fork().child_pid());
      c.str("child_exec_id", ev.fork().child_exec_id());
      break;
    }
    case v1::Event::kExit: {
      const auto& x = ev.exit();
      Obj c = o.child("exit");
      c.i32("status", x.status());
      c.i32("code", x.code());
      c.i32("signal", x.signal());
      c.boolean("core_dumped", x.core_dumped());
      c.boolean("oom_killed", x.oom_killed());
      break;
    }
    case v1::Event::kFile:
      file_json(o.child("file"), ev.file());
      break;
    case v1::Event::kLoss: {
      Obj c = o.child("loss");
      c.u64("count", ev.loss().count());
      c.str("reason", ev.loss().reason());
      c.str("where", ev.loss().where());
      if (ev.loss().through_seq()) {
        c.u64("through_seq", ev.loss().through_seq());
        c.str("policy", ev.loss().policy());
      }
      break;
    }
    case v1::Event::kSandbox: {
      // The resolved profile itself stays in the store (and `audit report`); JSON lines
      // carry its digest.
      const auto& x = ev.sandbox();
      Obj c = o.child("sandbox");
      c.str("phase", x.phase());
      {
        Obj b = c.child("sandbox");
        b.str("id", x.sandbox().id());
        b.u32("owner_uid", x.sandbox().owner_uid());
        b.u32("owner_pid", x.sandbox().owner_pid());
        b.str("profile", x.sandbox().profile());
        b.str("workspace", x.sandbox().workspace());
        b.strs("argv", x.sandbox().argv());
        b.u64("created_ns", x.sandbox().created_ns());
        b.str("state", x.sandbox().state());
      }
      c.str("profile_digest", x.profile_digest());
      c.strs("provenance", x.provenance());
      c.u64("ended_ns", x.ended_ns());
      c.str("reason", x.reason());
      if (x.exit_known()) c.i32("exit_status", x.exit_status());
      c.u64("lost", x.lost());
      break;
    }
    case v1::Event::kSyscall:
      syscall_json(o.child("syscall"), ev.syscall());
      break;
    case v1::Event::kNet:
      net_json(o.child("net"), ev.net());
      break;
    case v1::Event::kViolation:
      violation_json(o.child("violation"), ev.violation());
      break;
    case v1::Event::kDns:
      dns_json(o.child("dns"), ev.dns());
      break;
    default:
      break;
  }
}

}  // namespace agentcage::core

// --- reading it back ---

namespace agentcage::core {
namespace {

namespace pb = google::protobuf;

// A recursive-descent reader for exactly the JSON the writers above produce (and any
// JSON of the same shape): strings with \udcXX mapped back to the byte XX, 64-bit
// integers as strings or numbers, enums by name.
class JsonReader {
 public:
  explicit JsonReader(std::string_view s) : s_(s) {}

  Status message(pb::Message* m, int depth = 0) {
    if (depth > 32) return fail("nested too deep");
    if (!eat('{')) return fail("expected '{'");
    if (eat('}')) return {};
    do {
      std::string key;
      if (auto st = string(key); !st) return st;
      if (!eat(':')) return fail("expected ':'");
      const auto* f = m->GetDescriptor()->FindFieldByName(key);
      if (!f) return fail("unknown field \"" + key + "\"");
      if (f->is_repeated()) {
        if (!eat('[')) return fail("expected '[' for " + key);
        if (!eat(']')) {
          do {
            if (auto st = value(m, f, depth); !st) return st;
          } while (eat(','));
          if (!eat(']')) return fail("expected ']'");
        }
      } else if (auto st = value(m, f, depth); !st) {
        return st;
      }
    } while (eat(','));
    if (!eat('}')) return fail("expected '}'");
    return {};
  }
  bool at_end() {
    ws();
    return i_ == s_.size();
  }
  Status fail(const std::string& what) const { return error(fmt::format("JSON at byte {}: {}", i_, what)); }

 private:
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\t' || s_[i_] == '\r')) ++i_;
  }
  bool eat(char c) {
    ws();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  Status string(std::string& out) {
    if (!eat('"')) return fail("expected a string");
    while (i_ < s_.size() && s_[i_] != '"') {
      char c = s_[i_++];
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) break;
      char e = s_[i_++];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'u': {
          uint32_t cp = 0;
          if (!hex4(cp)) return fail("bad \\u escape");
          if (cp >= 0xdc80 && cp <= 0xdcff) {  // surrogateescape: the raw byte
            out += static_cast<char>(cp & 0xff);
            break;
          }
          if (cp >= 0xd800 && cp <= 0xdbff) {  // a surrogate pair
            uint32_t lo = 0;
            if (i_ + 1 >= s_.size() || s_[i_] != '\\' || s_[i_ + 1] != 'u') return fail("lone high surrogate");
            i_ += 2;
            if (!hex4(lo) || lo < 0xdc00 || lo > 0xdfff) return fail("bad low surrogate");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          }
          utf8(cp, out);
          break;
        }
        default: out += e;  // \" \\ \/
      }
    }
    if (!eat('"')) return fail("unterminated string");
    return {};
  }
  bool hex4(uint32_t& v) {
    if (i_ + 4 > s_.size()) return false;
    auto r = std::from_chars(s_.data() + i_, s_.data() + i_ + 4, v, 16);
    if (r.ptr != s_.data() + i_ + 4) return false;
    i_ += 4;
    return true;
  }
  static void utf8(uint32_t cp, std::string& out) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xc0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xe0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
      out += static_cast<char>(0xf0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    }
  }
  // A number, or a string holding one (proto3 JSON writes 64-bit integers quoted).
  Status scalar(std::string& tok) {
    ws();
    if (i_ < s_.size() && s_[i_] == '"') return string(tok);
    size_t b = i_;
    while (i_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '-' || s_[i_] == '+' ||
                              s_[i_] == '.'))
      ++i_;
    if (b == i_) return fail("expected a value");
    tok.assign(s_.substr(b, i_ - b));
    return {};
  }
  template <class T>
  Status number(const std::string& tok, T& v) {
    auto r = std::from_chars(tok.data(), tok.data() + tok.size(), v);
    if (r.ec != std::errc() || r.ptr != tok.data() + tok.size()) return fail("bad number \"" + tok + "\"");
    return {};
  }
  Status value(pb::Message* m, const pb::FieldDescriptor* f, int depth) {
    using FD = pb::FieldDescriptor;
    const auto* r = m->GetReflection();
    bool rep = f->is_repeated();
    if (f->cpp_type() == FD::CPPTYPE_MESSAGE)
      return message(rep ? r->AddMessage(m, f) : r->MutableMessage(m, f), depth + 1);
    std::string tok;
    if (auto st = scalar(tok); !st) return st;
#define AC_NUM(T, Add, Set)                                 \
  {                                                         \
    T v{};                                                  \
    if (auto st = number(tok, v); !st) return st;           \
    rep ? r->Add(m, f, v) : r->Set(m, f, v);                \
    return {};                                              \
  }
    switch (f->cpp_type()) {
      case FD::CPPTYPE_INT32: AC_NUM(int32_t, AddInt32, SetInt32)
      case FD::CPPTYPE_UINT32: AC_NUM(uint32_t, AddUInt32, SetUInt32)
      case FD::CPPTYPE_INT64: AC_NUM(int64_t, AddInt64, SetInt64)
      case FD::CPPTYPE_UINT64: AC_NUM(uint64_t, AddUInt64, SetUInt64)
      case FD::CPPTYPE_DOUBLE: AC_NUM(double, AddDouble, SetDouble)
      case FD::CPPTYPE_FLOAT: AC_NUM(float, AddFloat, SetFloat)
      case FD::CPPTYPE_BOOL:
        if (tok != "true" && tok != "false") return fail("expected true or false");
        rep ? r->AddBool(m, f, tok == "true") : r->SetBool(m, f, tok == "true");
        return {};
      case FD::CPPTYPE_ENUM: {
        const auto* e = f->enum_type()->FindValueByName(tok);
        if (!e) return fail("unknown enum value \"" + tok + "\"");
        rep ? r->AddEnum(m, f, e) : r->SetEnum(m, f, e);
        return {};
      }
      case FD::CPPTYPE_STRING:
        rep ? r->AddString(m, f, std::move(tok)) : r->SetString(m, f, std::move(tok));
        return {};
      default:
        return fail("unsupported field type");
    }
#undef AC_NUM
  }

  std::string_view s_;
  size_t i_ = 0;
};

}  // namespace

Status message_from_json(std::string_view json, google::protobuf::Message* m) {
  JsonReader r(json);
  if (auto st = r.message(m); !st) return st;
  if (!r.at_end()) return r.fail("trailing characters");
  return {};
}

}  // namespace agentcage::core
