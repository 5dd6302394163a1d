// SPDX-License-Identifier: Apache-2.0
#include "core/dns/name_check.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <string_view>

#include "core/base/unique_fd.h"
#include "core/policy/net_policy.h"

namespace agentcage::core {
namespace {

// A bounds-checked reader over the ClientHello: every read past the end fails the parse.
struct Reader {
  std::span<const uint8_t> b;
  size_t at = 0;
  bool ok = true;
  size_t left() const { return ok ? b.size() - at : 0; }
  uint32_t n(size_t bytes) {
    if (!ok || left() < bytes) {
      ok = false;
      return 0;
    }
    uint32_t v = 0;
    for (size_t i = 0; i < bytes; ++i) v = v << 8 | b[at++];
    return v;
  }
  Reader sub(size_t len) {
    if (!ok || left() < len) {
      ok = false;
      return Reader{{}, 0, false};
    }
    Reader r{b.subspan(at, len)};
    at += len;
    return r;
  }
};

WireName bad(WireName::Kind k, std::string why) {
  WireName w;
  w.kind = k;
  w.error = std::move(why);
  return w;
}

// A host name as sent: printable, no spaces; lower-cased, without a final dot.
bool host_text(std::string_view in, std::string& out) {
  if (in.empty() || in.size() > 253) return false;
  for (unsigned char c : in)
    if (c <= 0x20 || c >= 0x7f) return false;
  out = normalize_dns_name(in);
  return !out.empty();
}

WireName parse_tls(std::span<const uint8_t> head) {
  using K = WireName::Kind;
  if (head.size() < 5) return {};
  if (head[1] != 3) return bad(K::tls, "not a TLS record version");
  size_t rec = static_cast<size_t>(head[3]) << 8 | head[4];
  if (rec == 0 || rec > 16384) return bad(K::tls, "TLS record length out of range");
  if (head.size() < 5 + rec) return {};
  Reader r{head.subspan(5, rec)};
  if (r.n(1) != 1) return bad(K::tls, "the first handshake message is not a ClientHello");
  size_t hl = r.n(3);
  // A ClientHello split over records (possible, never seen from common clients) cannot
  // be decided on the first one: refused rather than reassembled.
  if (!r.ok || hl > r.left()) return bad(K::tls, "the ClientHello does not fit in the first TLS record");
  Reader h = r.sub(hl);
  h.n(2);         // legacy_version
  h.sub(32);      // random
  h.sub(h.n(1));  // legacy_session_id
  h.sub(h.n(2));  // cipher_suites
  h.sub(h.n(1));  // legacy_compression_methods
  WireName w;
  w.kind = K::tls;
  if (!h.ok) return bad(K::tls, "truncated ClientHello");
  if (h.left() == 0) return w;  // no extensions, so no SNI
  Reader ext = h.sub(h.n(2));
  bool seen_sni = false;
  while (ext.ok && ext.left() > 0) {
    uint32_t type = ext.n(2);
    Reader e = ext.sub(ext.n(2));
    if (!ext.ok) break;
    if (type == 0xfe0d) w.ech = true;
    if (type != 0) continue;
    if (seen_sni) return bad(K::tls, "two server_name extensions");
    seen_sni = true;
    Reader list = e.sub(e.n(2));
    while (list.ok && list.left() > 0) {
      uint32_t nt = list.n(1);
      Reader name = list.sub(list.n(2));
      if (!list.ok) break;
      if (nt != 0) continue;  // only host_name (0) is defined
      if (!w.name.empty()) return bad(K::tls, "two host names in server_name");
      std::string_view text(reinterpret_cast<const char*>(name.b.data()), name.b.size());
      if (!host_text(text, w.name)) return bad(K::tls, "server_name is not a host name");
    }
    if (!list.ok || !e.ok) return bad(K::tls, "malformed server_name extension");
  }
  if (!ext.ok) return bad(K::tls, "malformed ClientHello extensions");
  return w;
}

bool is_token_char(unsigned char c) { return c >= 'A' && c <= 'Z'; }

WireName parse_http(std::span<const uint8_t> head) {
  using K = WireName::Kind;
  std::string_view s(reinterpret_cast<const char*>(head.data()), head.size());
  size_t method_end = 0;
  while (method_end < s.size() && method_end < 16 && is_token_char(static_cast<unsigned char>(s[method_end])))
    ++method_end;
  if (method_end == s.size()) return method_end < 16 ? WireName{} : bad(K::other, "neither TLS nor HTTP");
  if (method_end == 0 || s[method_end] != ' ') return bad(K::other, "neither TLS nor HTTP");
  size_t end = s.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (head.size() >= kWireHeadMax) return bad(K::http, "request headers longer than 16 KiB");
    return {};
  }
  std::string_view method = s.substr(0, method_end);
  if (method == "CONNECT") return bad(K::http, "CONNECT (a tunnel through the server)");
  size_t line_end = s.find("\r\n");
  std::string_view line = s.substr(0, line_end);
  size_t sp2 = line.find(' ', method_end + 1);
  if (sp2 == std::string_view::npos) return bad(K::http, "malformed request line");
  std::string_view target = line.substr(method_end + 1, sp2 - method_end - 1);
  WireName w;
  w.kind = K::http;
  // Headers: exactly one Host; a request naming two hosts is refused (servers and
  // proxies disagree on which one counts).
  size_t at = line_end + 2;
  while (at < end) {
    size_t nl = s.find("\r\n", at);
    std::string_view h = s.substr(at, nl - at);
    at = nl + 2;
    size_t colon = h.find(':');
    if (colon == std::string_view::npos) return bad(K::http, "malformed header line");
    std::string_view key = h.substr(0, colon);
    if (key.size() != 4 || !std::equal(key.begin(), key.end(), "host", [](char a, char b) {
          return (a | 0x20) == b;
        }))
      continue;
    if (!w.name.empty()) return bad(K::http, "two Host headers");
    std::string_view v = h.substr(colon + 1);
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    if (v.starts_with('[')) return bad(K::http, "Host is an IPv6 literal, not a name");
    if (auto c = v.rfind(':'); c != std::string_view::npos) v = v.substr(0, c);
    if (!host_text(v, w.name)) return bad(K::http, "Host is not a host name");
  }
  // An absolute-form target ("GET http://a.example/ HTTP/1.1") must name the same host.
  if (target.size() > 7 && (target.starts_with("http://") || target.starts_with("https://"))) {
    std::string_view rest = target.substr(target.find("//") + 2);
    std::string_view auth = rest.substr(0, rest.find_first_of("/?#"));
    if (auto c = auth.rfind(':'); c != std::string_view::npos) auth = auth.substr(0, c);
    std::string t;
    if (!host_text(auth, t) || t != w.name) return bad(K::http, "the request target names another host than Host");
  }
  return w;
}

}  // namespace

WireName wire_name(std::span<const uint8_t> head) {
  if (head.empty()) return {};
  if (head[0] == 0x16) return parse_tls(head);
  return parse_http(head);
}

SpliceTotals splice_both_ways(int a, int b, const std::atomic<bool>& stop, int idle_timeout_ms) {
  SpliceTotals t;
  struct Dir {
    int from, to;
    UniqueFd rd, wr;
    size_t in_pipe = 0;
    bool eof = false, done = false;
    uint64_t* total;
  };
  std::array<Dir, 2> d{Dir{a, b, {}, {}, 0, false, false, &t.a_to_b}, Dir{b, a, {}, {}, 0, false, false, &t.b_to_a}};
  // 1 MiB pipes where allowed (fs.pipe-max-size): fewer wake-ups per byte carried. A
  // pipe that keeps the default 64 KiB bounds what one splice moves into it.
  size_t kChunk = 1 << 20;
  for (auto& x : d) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) return t;
    x.rd.reset(p[0]);
    x.wr.reset(p[1]);
    int sz = ::fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
    kChunk = std::min(kChunk, sz > 0 ? static_cast<size_t>(sz) : size_t{1} << 16);
  }
  int idle_left = idle_timeout_ms;
  while (!stop.load(std::memory_order_acquire) && !(d[0].done && d[1].done)) {
    pollfd p[4];
    nfds_t n = 0;
    int idx[4];
    for (int i = 0; i < 2; ++i) {
      if (d[i].done) continue;
      if (!d[i].eof && d[i].in_pipe < kChunk) {
        p[n] = {d[i].from, POLLIN, 0};
        idx[n++] = i * 2;
      }
      if (d[i].in_pipe > 0) {
        p[n] = {d[i].to, POLLOUT, 0};
        idx[n++] = i * 2 + 1;
      }
    }
    // Short polls so `stop` is seen; a connection idle both ways for the timeout ends.
    int r = ::poll(p, n, 200);
    if (r < 0 && errno != EINTR) break;
    if (r <= 0) {
      idle_left -= 200;
      if (idle_left <= 0) break;
      continue;
    }
    idle_left = idle_timeout_ms;
    bool failed = false;
    for (nfds_t k = 0; k < n; ++k) {
      if (!p[k].revents) continue;
      Dir& x = d[idx[k] / 2];
      if (idx[k] % 2 == 0) {
        ssize_t got =
            ::splice(x.from, nullptr, x.wr.get(), nullptr, kChunk - x.in_pipe, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
        if (got > 0) x.in_pipe += static_cast<size_t>(got);
        else if (got == 0 || (errno != EAGAIN && errno != EINTR)) x.eof = true;
      } else {
        ssize_t put = ::splice(x.rd.get(), nullptr, x.to, nullptr, x.in_pipe, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
        if (put > 0) {
          x.in_pipe -= static_cast<size_t>(put);
          *x.total += static_cast<uint64_t>(put);
        } else if (put < 0 && errno != EAGAIN && errno != EINTR) {
          failed = true;  // the receiver is gone: nothing more can be delivered either way
        }
      }
    }
    if (failed) break;
    for (auto& x : d)
      if (x.eof && x.in_pipe == 0 && !x.done) {
        x.done = true;
        ::shutdown(x.to, SHUT_WR);  // the half-close, passed on
      }
  }
  return t;
}

}  // namespace agentcage::core
