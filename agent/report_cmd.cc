// SPDX-License-Identifier: Apache-2.0
// `agentcage audit report --sandbox ID`: the incident report on one sandbox. The model and
// its renderers are core (core/report/); this file only finds the events (a store file,
// or agentcaged's Events.Query), says how the records were verified, and writes the file.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include <fmt/format.h>

#include "agentcage/v1/control.grpc.pb.h"
#include "cli.h"
#include "core/policy/profile.h"
#include "core/policy/profile_generate.h"
#include "core/report/report.h"
#include "grpc/client.h"
#include "offline.h"

namespace agentcage::cli {
namespace {

using EventFn = std::function<bool(const v1::Event&)>;

// Where a report's events come from.
class ReportSource {
 public:
  virtual ~ReportSource() = default;
  virtual std::string describe() const = 0;
  virtual core::Status query(const v1::EventFilter& f, const EventFn& fn) = 0;
  // The daemon's record of the sandbox (owner, profile, workspace), if it has one.
  virtual std::optional<v1::Sandbox> sandbox(const std::string& id) = 0;
  virtual v1::ReportVerification verify() = 0;
};

class StoreSource : public ReportSource {
 public:
  explicit StoreSource(std::unique_ptr<core::EventStore> s) : store_(std::move(s)) {}
  std::string describe() const override { return "store " + store_->path(); }
  core::Status query(const v1::EventFilter& f, const EventFn& fn) override { return query_store(*store_, f, fn); }
  std::optional<v1::Sandbox> sandbox(const std::string&) override { return std::nullopt; }
  // The whole chain, as `agentcage audit verify` checks it: a report is only as good as
  // the records under it.
  v1::ReportVerification verify() override {
    v1::ReportVerification v;
    auto rep = store_->verify();
    if (!rep) {
      v.set_state("error");
      v.set_detail("not verified: " + rep.error().message());
    } else if (!rep->ok && rep->unverifiable) {
      // Not a break: a key the chain needs is not available here (as `audit verify` says).
      v.set_state("not_verified");
      v.set_first_bad_seq(rep->first_bad_seq);
      v.set_detail(fmt::format("UNVERIFIED at seq {}: {}", rep->first_bad_seq, rep->what));
    } else if (!rep->ok) {
      v.set_state("broken");
      v.set_first_bad_seq(rep->first_bad_seq);
      v.set_detail(fmt::format("BROKEN at seq {}: {}", rep->first_bad_seq, rep->what));
    } else {
      v.set_state("ok");
      v.set_head_seq(rep->last_seq);
      v.set_detail(fmt::format("OK: {} events, chain intact through head seq {}, {} (audit verify of {})", rep->checked,
                               rep->last_seq, rep->chain, store_->path()));
    }
    return v;
  }

 private:
  std::unique_ptr<core::EventStore> store_;
};

class DaemonSource : public ReportSource {
 public:
  DaemonSource(std::string socket, std::shared_ptr<grpc::Channel> ch) : socket_(std::move(socket)), ch_(std::move(ch)) {}
  std::string describe() const override { return "agentcaged at " + socket_; }
  core::Status query(const v1::EventFilter& f, const EventFn& fn) override {
    auto stub = v1::Events::NewStub(ch_);
    v1::QueryRequest req;
    *req.mutable_filter() = f;
    grpc::ClientContext ctx;
    auto reader = stub->Query(&ctx, req);
    v1::Event ev;
    while (reader->Read(&ev))
      if (!fn(ev)) {
        ctx.TryCancel();
        break;
      }
    auto st = reader->Finish();
    if (!st.ok() && st.error_code() != grpc::StatusCode::CANCELLED) return std::unexpected(grpcapi::rpc_error("Query", st));
    return {};
  }
  std::optional<v1::Sandbox> sandbox(const std::string& id) override {
    auto stub = v1::Control::NewStub(ch_);
    v1::GetSandboxRequest req;
    req.set_sandbox_id(id);
    v1::Sandbox sb;
    grpc::ClientContext ctx;
    if (!stub->GetSandbox(&ctx, req, &sb).ok()) return std::nullopt;  // forgotten: the header says not recorded
    return sb;
  }
  // The daemon API has no verification call: say so, and how to verify.
  v1::ReportVerification verify() override {
    v1::ReportVerification v;
    v.set_state("not_verified");
    v.set_detail("not verified: the events were read through agentcaged's Events.Query, which does not check the "
                 "hash chain; run `agentcage audit verify` on the node (or `audit report --db` on the store file)");
    return v;
  }

 private:
  std::string socket_;
  std::shared_ptr<grpc::Channel> ch_;
};

core::Result<std::unique_ptr<ReportSource>> open_source(const std::string& db, const std::string& chain_key,
                                                        const std::string& socket) {
  if (!db.empty()) {
    auto s = open_store_file(db, chain_key);
    if (!s) return std::unexpected(s.error());
    return std::make_unique<StoreSource>(std::move(*s));
  }
  auto ch = grpcapi::connect_daemon(socket);
  if (!ch) return std::unexpected(ch.error());
  return std::make_unique<DaemonSource>(socket, std::move(*ch));
}

// The sandbox's events, then the losses that name no sandbox (a full ring buffer drops
// whatever it drops) stored while it ran: both are gaps in this sandbox's record.
core::Result<v1::IncidentReport> build(const AuditReportArgs& a, ReportSource& src) {
  core::ReportContext ctx;
  ctx.sandbox_id = a.sandbox;
  ctx.source = src.describe();
  ctx.generated_ns = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  ctx.sandbox = src.sandbox(a.sandbox);
  ctx.workspace = a.workspace;
  core::ReportBuilder b(ctx);
  v1::EventFilter f;
  f.add_sandbox_ids(a.sandbox);
  uint64_t n = 0;
  if (auto st = src.query(f, [&](const v1::Event& ev) {
        b.add(ev);
        ++n;
        return true;
      });
      !st)
    return std::unexpected(st.error());
  if (!n) return core::error("no events recorded for sandbox " + a.sandbox + " in " + src.describe(),
                             "check the id (agentcage events --kind exec shows each run's sandbox_id)");
  v1::EventFilter lf;
  lf.add_kinds("loss");
  lf.set_since_ns(b.first_time_ns());
  lf.set_until_ns(b.last_time_ns() + 1);  // the store's bound is exclusive
  if (auto st = src.query(lf, [&](const v1::Event& ev) {
        if (ev.sandbox_id().empty()) b.add_store_loss(ev);
        return true;
      });
      !st)
    return std::unexpected(st.error());
  return b.build(src.verify());
}

// stdout, or FILE created 0600: the report holds the sandbox's argv and paths, which the
// store keeps owner-only too.
core::Status write_output(const std::string& path, const std::string& text) {
  if (path == "-") {
    fwrite(text.data(), 1, text.size(), stdout);
    return fflush(stdout) == 0 ? core::Status{} : core::sys_error("write standard output");
  }
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return core::sys_error("--output " + path);
  size_t off = 0;
  while (off < text.size()) {
    ssize_t w = ::write(fd, text.data() + off, text.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      int e = errno;
      ::close(fd);
      return core::sys_error("write " + path, e);
    }
    off += static_cast<size_t>(w);
  }
  if (::close(fd) != 0) return core::sys_error("close " + path);
  return {};
}

}  // namespace

int run_report(const AuditReportArgs& a) {
  auto src = open_source(a.db, a.chain_key, a.socket);
  if (!src) {
    fprintf(stderr, "agentcage: error: %s\n", src.error().message().c_str());
    return 2;
  }
  auto r = build(a, **src);
  if (!r) {
    fprintf(stderr, "agentcage: error: %s\n", r.error().message().c_str());
    return 2;
  }
  std::string text = a.format == ReportFormat::json   ? core::render_report_json(*r)
                     : a.format == ReportFormat::html ? core::render_report_html(*r)
                                                      : core::render_report_text(*r);
  if (auto st = write_output(a.output, text); !st) {
    fprintf(stderr, "agentcage: error: %s\n", st.error().message().c_str());
    return 2;
  }
  return r->verification().state() == "broken" ? 1 : 0;
}

}  // namespace agentcage::cli

namespace agentcage::cli {

int run_profile_generate(const ProfileGenerateArgs& a) {
  auto fail = [](const std::string& msg, const std::string& hint = {}) {
    fprintf(stderr, "agentcage: error: %s\n", msg.c_str());
    if (!hint.empty()) fprintf(stderr, "hint: %s\n", hint.c_str());
    return 2;
  };
  auto src = open_source(a.db, a.chain_key, a.socket);
  if (!src) return fail(src.error().message());
  std::string ws = a.workspace;
  if (ws.empty())
    if (auto sb = (*src)->sandbox(a.from)) ws = sb->workspace();
  auto vars = core::ProfileVars::from_environment(ws.empty() ? "/WORKSPACE" : ws);
  auto base = core::resolve_profile(a.extends, vars);
  if (!base) return fail("--extends " + a.extends + ": " + base.error().message());
  std::vector<v1::Event> events;
  v1::EventFilter f;
  f.add_sandbox_ids(a.from);
  f.add_kinds("violation");
  if (auto st = (*src)->query(f, [&](const v1::Event& ev) {
        events.push_back(ev);
        return true;
      });
      !st)
    return fail(st.error().message());
  core::GenerateOptions o{a.name, a.extends, ws, (*src)->describe() + ", sandbox " + a.from};
  auto g = core::generate_profile(o, base->profile, events);
  if (!g.reports)
    return fail("sandbox " + a.from + " has no audit reports in " + (*src)->describe(),
                "record a learning run first: a profile with `extends: " + a.extends +
                    "` and `mode: audit`, then generate from its sandbox id");
  // The result must load as any profile does: written beside the output (or in /tmp) and
  // resolved with the same variables.
  char tmpl[] = "/tmp/agentcage-generated-XXXXXX.yaml";
  int fd = ::mkstemps(tmpl, 5);
  if (fd < 0) return fail(std::string("mkstemps: ") + strerror(errno));
  bool wrote = ::write(fd, g.yaml.data(), g.yaml.size()) == static_cast<ssize_t>(g.yaml.size());
  ::close(fd);
  auto check = wrote ? core::resolve_profile(tmpl, vars) : core::Result<core::LoadedProfile>(core::error("write failed"));
  ::unlink(tmpl);
  if (!check) {
    fprintf(stderr, "%s", g.yaml.c_str());
    return fail("the generated profile does not load (a bug in generate): " + check.error().message());
  }
  if (auto st = write_output(a.output, g.yaml); !st) return fail(st.error().message());
  for (const auto& sk : g.skipped) fprintf(stderr, "agentcage: not granted: %s\n", sk.c_str());
  fprintf(stderr, "agentcage: profile %s: %zu grants from %zu audit reports of sandbox %s (extends %s)\n",
          a.name.c_str(), g.grants, g.reports, a.from.c_str(), a.extends.c_str());
  return 0;
}

}  // namespace agentcage::cli
