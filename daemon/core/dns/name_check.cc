// SPDX-License-Identifier: Apache-2.0
#include "core/dns/name_check.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
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
// Only what a DNS name is made of: a name with ':', ',', '@', '/', ... could match a
// wildcard entry here ("evil.com:.x.allowed.com" under *.allowed.com) and be routed by
// the server to what comes before it.
bool host_text(std::string_view in, std::string& out) {
  if (in.empty() || in.size() > 254) return false;
  out = normalize_dns_name(in);
  if (out.empty() || out.size() > 253) return false;
  for (unsigned char c : out)
    if (!(std::isalnum(c) || c == '-' || c == '.' || c == '_')) return false;
  return true;
}

// RFC 9110 tchar: what a method and a header name are made of.
bool tchar(unsigned char c) {
  return std::isalnum(c) || std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return std::tolower(x) == std::tolower(y); });
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

// The first request, read strictly: a byte a server might parse differently (a bare LF, a
// folded header, a space before the colon, an absolute-form target, two Hosts) is a
// refusal, never a guess. The server decides by the request line and Host; only the
// origin form ("/path") is accepted, so Host is the one name it can route by.
WireName parse_http(std::span<const uint8_t> head) {
  using K = WireName::Kind;
  std::string_view s(reinterpret_cast<const char*>(head.data()), head.size());
  size_t m = 0;
  while (m < s.size() && m < 16 && s[m] >= 'A' && s[m] <= 'Z') ++m;
  if (m == s.size()) return m < 16 ? WireName{} : bad(K::other, "neither TLS nor HTTP");
  if (m == 0 || s[m] != ' ') return bad(K::other, "neither TLS nor HTTP");
  size_t end = s.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (head.size() >= kWireHeadMax) return bad(K::http, "request headers longer than 16 KiB");
    return {};
  }
  std::string_view block = s.substr(0, end + 2);  // every line with its CRLF
  for (size_t i = 0; i < block.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(block[i]);
    if (c == '\r' && (i + 1 >= block.size() || block[i + 1] != '\n')) return bad(K::http, "a bare CR in the headers");
    if (c == '\n' && (i == 0 || block[i - 1] != '\r')) return bad(K::http, "a bare LF in the headers");
    if ((c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f)
      return bad(K::http, "a control byte in the headers");
  }
  size_t line_end = s.find("\r\n");
  std::string_view line = s.substr(0, line_end);
  std::string_view method = line.substr(0, m), rest = line.substr(m + 1);
  size_t sp = rest.find(' ');
  if (sp == std::string_view::npos) return bad(K::http, "malformed request line");
  std::string_view target = rest.substr(0, sp), version = rest.substr(sp + 1);
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return bad(K::http, "not HTTP/1.0 or HTTP/1.1");
  if (method == "CONNECT") return bad(K::http, "CONNECT (a tunnel through the server)");
  if (!(target.starts_with('/') || (target == "*" && method == "OPTIONS")) ||
      target.find_first_of(" \t") != std::string_view::npos)
    return bad(K::http, "the request target is not a path (absolute-form names a host of its own)");
  WireName w;
  w.kind = K::http;
  w.header_end = end + 4;
  bool content_length = false, chunked = false;
  for (size_t at = line_end + 2; at < end + 2;) {
    size_t nl = s.find("\r\n", at);
    std::string_view h = s.substr(at, nl - at);
    at = nl + 2;
    if (h.empty() || h.front() == ' ' || h.front() == '\t') return bad(K::http, "a folded header line");
    size_t colon = h.find(':');
    if (colon == std::string_view::npos || colon == 0) return bad(K::http, "malformed header line");
    std::string_view key = h.substr(0, colon);
    if (!std::all_of(key.begin(), key.end(), [](char c) { return tchar(static_cast<unsigned char>(c)); }))
      return bad(K::http, "a header name with a byte no name has");
    if (iequals(key, "content-length")) content_length = true;
    if (iequals(key, "transfer-encoding")) chunked = true;
    if (!iequals(key, "host")) continue;
    if (!w.name.empty()) return bad(K::http, "two Host headers");
    std::string_view v = h.substr(colon + 1);
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    if (v.starts_with('[')) return bad(K::http, "Host is an IPv6 literal, not a name");
    // A port only as ':' and digits at the end.
    if (auto c = v.rfind(':'); c != std::string_view::npos) {
      std::string_view port = v.substr(c + 1);
      if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), ::isdigit))
        return bad(K::http, "Host is not NAME[:PORT]");
      v = v.substr(0, c);
    }
    if (!host_text(v, w.name)) return bad(K::http, "Host is not a host name");
  }
  if (content_length && chunked) return bad(K::http, "both Content-Length and Transfer-Encoding (request smuggling)");
  return w;
}

}  // namespace

WireName wire_name(std::span<const uint8_t> head) {
  if (head.empty()) return {};
  if (head[0] == 0x16) return parse_tls(head);
  return parse_http(head);
}

std::vector<uint8_t> one_request_only(std::span<const uint8_t> head, const WireName& w) {
  std::string_view s(reinterpret_cast<const char*>(head.data()), head.size());
  std::string out;
  size_t line_end = s.find("\r\n");
  out.append(s.substr(0, line_end + 2));
  for (size_t at = line_end + 2; at < w.header_end - 2;) {
    size_t nl = s.find("\r\n", at);
    std::string_view h = s.substr(at, nl + 2 - at);
    at = nl + 2;
    std::string_view key = h.substr(0, h.find(':'));
    if (iequals(key, "connection") || iequals(key, "keep-alive") || iequals(key, "upgrade") ||
        iequals(key, "proxy-connection"))
      continue;
    out.append(h);
  }
  out.append("Connection: close\r\n\r\n");
  out.append(s.substr(w.header_end));
  return std::vector<uint8_t>(out.begin(), out.end());
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
        else if (got == 0) x.eof = true;
        else if (errno != EAGAIN && errno != EINTR) {
          // A reset (or error) is passed on as a reset, not a clean end: a cut-off upload
          // must not look complete to the server. The caller's close sends it.
          linger l{1, 0};
          ::setsockopt(x.to, SOL_SOCKET, SO_LINGER, &l, sizeof l);
          failed = true;
        }
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
