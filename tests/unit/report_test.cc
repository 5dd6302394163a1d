// SPDX-License-Identifier: Apache-2.0
// The incident report from synthetic events whose agent-controlled bytes (argv, paths,
// comm) carry invalid UTF-8, newlines, ANSI/OSC escapes, C1 controls, HTML and a forged
// "VIOLATION" line: the text view carries no control byte and no forged line, the JSON is
// strictly valid and reads back losslessly, the HTML has no markup from the agent; and
// each section names the secret read, the denied connect and the planted file.
#include "core/report/report.h"

#include <fcntl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <google/protobuf/util/message_differencer.h>
#include <nlohmann/json.hpp>

#include "core/base/text.h"
#include "core/events/event_json.h"

namespace agentcage::core {
namespace {

const std::string kSandbox = "00112233aabbccdd";
const std::string kWorkspace = "/home/agent/ws";
// ESC ] 0 ; title BEL (OSC), CSI in UTF-8 (U+009B) and raw, a newline, a forged line,
// markup, bytes that are not UTF-8.
const std::string kNasty = std::string("\x1b]0;pwned\x07\x1b[2J\xc2\x9b") + "31m\x9b" +
                           "\nVIOLATION 1 fake deny nothing\r<script>alert(1)</script>\"'&\xff\xfe";
const std::string kSecret = "/home/agent/.ssh/id_rsa" + kNasty;
const std::string kPlanted = "/tmp/planted" + kNasty;

uint64_t t(int i) { return 1700000000'000000000ull + static_cast<uint64_t>(i) * 1'000'000; }

v1::Event base(uint64_t seq, uint32_t pid, const std::string& comm = "agent") {
  v1::Event e;
  e.set_seq(seq);
  e.set_time_ns(t(static_cast<int>(seq)));
  e.set_node("node-1");
  e.set_sandbox_id(kSandbox);
  auto* p = e.mutable_process();
  p->set_pid(pid);
  p->set_exec_id("boot:" + std::to_string(pid));
  p->set_ppid(pid == 100 ? 1 : 100);
  p->set_parent_exec_id(pid == 100 ? "" : "boot:100");
  p->set_uid(1000);
  p->set_comm(comm);
  p->set_cwd(kWorkspace);
  return e;
}

v1::Event exec_ev(uint64_t seq, uint32_t pid, const std::vector<std::string>& argv) {
  auto e = base(seq, pid, argv[0].substr(0, 15));
  for (const auto& a : argv) e.mutable_process()->add_argv(a);
  e.mutable_exec()->set_filename(argv[0]);
  return e;
}

v1::Event file_ev(uint64_t seq, uint32_t pid, const std::string& path, uint32_t flags, int result = 3) {
  auto e = base(seq, pid);
  auto* f = e.mutable_file();
  f->set_op("open");
  f->set_path(path);
  f->set_flags(flags);
  f->set_result(result);
  if (result < 0) f->set_error("EACCES");
  return e;
}

// The attack: a shell whose argv and comm are hostile reads a secret (denied by
// Landlock), connects to 127.0.0.1:4444 (denied by cgroup-bpf), plants a file outside
// the workspace, writes one inside it, and exits 3; one loss of 5 events.
std::vector<v1::Event> attack() {
  std::vector<v1::Event> evs;
  evs.push_back(exec_ev(1, 100, {"/bin/sh", "-c", "run " + kNasty}));
  evs.back().mutable_process()->set_comm("sh" + kNasty.substr(0, 12));
  evs.push_back(exec_ev(2, 101, {"cat", kSecret}));
  evs.push_back(file_ev(3, 101, kSecret, O_RDONLY, -13));
  auto v = base(4, 101, "cat");
  v.mutable_violation()->set_mechanism("landlock");
  v.mutable_violation()->set_action("deny");
  v.mutable_violation()->set_rule("filesystem.deny: /home/agent/.ssh");
  v.mutable_violation()->set_what("open " + kSecret);
  *v.mutable_violation()->mutable_file() = file_ev(4, 101, kSecret, O_RDONLY, -13).file();
  evs.push_back(v);
  auto n = base(5, 102, "curl");
  n.mutable_violation()->set_mechanism("cgroup-bpf");
  n.mutable_violation()->set_action("deny");
  n.mutable_violation()->set_rule("network.default: deny");
  n.mutable_violation()->set_what("connect 127.0.0.1:4444/tcp");
  auto* net = n.mutable_violation()->mutable_net();
  net->set_op("connect");
  net->set_protocol("tcp");
  net->mutable_remote()->set_family("inet");
  net->mutable_remote()->set_address("127.0.0.1");
  net->mutable_remote()->set_port(4444);
  net->set_result(-1);
  net->set_error("EPERM");
  evs.push_back(n);
  evs.push_back(file_ev(6, 100, kPlanted, O_WRONLY | O_CREAT | O_TRUNC));
  evs.push_back(file_ev(7, 100, "out.txt", O_WRONLY | O_CREAT));  // relative: in the cwd, the workspace
  auto loss = base(8, 0);
  loss.clear_process();
  loss.mutable_loss()->set_count(5);
  loss.mutable_loss()->set_reason("ringbuf_full");
  loss.mutable_loss()->set_where("kernel");
  evs.push_back(loss);
  auto x = base(9, 100, "sh");
  x.mutable_exit()->set_code(3);
  evs.push_back(x);
  return evs;
}

v1::IncidentReport report_of(const std::vector<v1::Event>& evs, const std::string& workspace = kWorkspace) {
  ReportContext ctx;
  ctx.sandbox_id = kSandbox;
  ctx.source = "store test.db";
  ctx.generated_ns = t(100);
  ctx.workspace = workspace;
  ReportBuilder b(ctx);
  for (const auto& e : evs) b.add(e);
  v1::ReportVerification v;
  v.set_state("ok");
  v.set_detail("OK: 9 events, chain intact through head seq 9");
  return b.build(v);
}

// The text between "== TITLE" and the next section heading.
std::string section(const std::string& text, const std::string& title) {
  auto b = text.find("\n== " + title);
  if (b == std::string::npos) return {};
  auto e = text.find("\n== ", b + 1);
  return text.substr(b, e == std::string::npos ? std::string::npos : e - b);
}

TEST(Report, TextHasNoControlBytesAndNoForgedLines) {
  auto text = render_report_text(report_of(attack()));
  for (size_t i = 0; i < text.size(); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    ASSERT_TRUE(c == '\n' || (c >= 0x20 && c != 0x7f)) << "control byte " << int(c) << " at " << i << ":\n" << text;
    if (c == 0xc2 && i + 1 < text.size()) {
      auto d = static_cast<unsigned char>(text[i + 1]);
      ASSERT_FALSE(d >= 0x80 && d < 0xa0) << "C1 control at " << i;
    }
    ASSERT_NE(c, 0x9b) << "raw CSI byte at " << i;  // never valid UTF-8 on its own: must be escaped
  }
  for (const auto& line : [&] {
         std::vector<std::string> v;
         for (size_t b = 0, e; b < text.size(); b = e + 1) v.push_back(text.substr(b, (e = text.find('\n', b)) - b));
         return v;
       }()) {
    auto body = line.substr(std::min(line.find_first_not_of(' '), line.size()));
    EXPECT_NE(body.rfind("VIOLATION", 0), 0u) << "forged line: " << line;
  }
  EXPECT_NE(text.find("\\x1b]0;pwned\\x07"), std::string::npos) << text;  // visible, as escapes
  EXPECT_NE(text.find("\\nVIOLATION 1 fake"), std::string::npos) << text;
  EXPECT_NE(text.find("\\xff\\xfe"), std::string::npos) << text;
}

TEST(Report, TextSectionsNameTheSecretTheConnectAndThePlantedFile) {
  auto text = render_report_text(report_of(attack()));
  auto secret = escape_text(kSecret), planted = escape_text(kPlanted);
  EXPECT_NE(section(text, "Sandbox").find("node-1"), std::string::npos) << text;
  EXPECT_NE(section(text, "Sandbox").find("exited with status 3"), std::string::npos) << text;
  EXPECT_NE(section(text, "Sandbox").find("5 events lost: ringbuf_full 5"), std::string::npos) << text;
  EXPECT_NE(section(text, "Sandbox").find("landlock, cgroup-bpf"), std::string::npos) << text;
  auto timeline = section(text, "Timeline");
  EXPECT_NE(timeline.find("deny open " + secret), std::string::npos) << timeline;
  EXPECT_NE(timeline.find("deny connect 127.0.0.1:4444/tcp"), std::string::npos) << timeline;
  EXPECT_NE(timeline.find("open(create) " + planted), std::string::npos) << timeline;
  EXPECT_EQ(timeline.find("out.txt"), std::string::npos) << "a write inside the workspace is no timeline entry";
  EXPECT_NE(section(text, "Process tree").find("101  running  cat " + secret), std::string::npos) << text;
  auto read = section(text, "Files read outside the workspace");
  EXPECT_NE(read.find(secret + "  [open] x1, 1 failed (EACCES), 1 violation (landlock)"), std::string::npos) << read;
  auto written = section(text, "Files written outside the workspace");
  EXPECT_NE(written.find(planted), std::string::npos) << written;
  EXPECT_EQ(written.find("out.txt"), std::string::npos) << written;
  EXPECT_NE(written.find("inside the workspace: 0 reads, 1 writes"), std::string::npos) << written;
  EXPECT_NE(section(text, "Network").find("denied   connect 127.0.0.1:4444/tcp  pid 102 curl"), std::string::npos) << text;
  auto viol = section(text, "Violations (2)");
  EXPECT_NE(viol.find("mechanism landlock  rule filesystem.deny: /home/agent/.ssh"), std::string::npos) << viol;
  EXPECT_NE(viol.find("mechanism cgroup-bpf  rule network.default: deny"), std::string::npos) << viol;
  EXPECT_NE(section(text, "Verification").find("OK: 9 events"), std::string::npos) << text;
}

// The project's JSON maps bytes that are not UTF-8 to \udcXX (surrogateescape), which a
// strict parser rejects as a lone surrogate; \udcXX -> \u00XX keeps every other property
// of the text (same length, same structure), so nlohmann checks the rest strictly.
std::string strict_view(std::string json) {
  for (size_t i = 0; (i = json.find("\\udc", i)) != std::string::npos; i += 4) json.replace(i, 4, "\\u00");
  return json;
}

TEST(Report, JsonIsValidAndReadsBackLosslessly) {
  auto r = report_of(attack());
  auto json = render_report_json(r);
  ASSERT_EQ(json.back(), '\n');
  for (unsigned char c : json) ASSERT_TRUE(c >= 0x20 || c == '\n') << "raw control byte in JSON";
  nlohmann::json doc;
  ASSERT_NO_THROW(doc = nlohmann::json::parse(strict_view(json))) << json;
  EXPECT_EQ(doc["header"]["sandbox_id"], kSandbox);
  EXPECT_EQ(doc["violations"].size(), 2u);
  EXPECT_EQ(doc["connections"][0]["outcome"], "denied");
  v1::IncidentReport back;
  auto st = message_from_json(json, &back);
  ASSERT_TRUE(st) << st.error().message();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(back, r)) << json;
  ASSERT_EQ(back.files_read_size(), 1);
  EXPECT_EQ(back.files_read(0).path(), kSecret);  // every byte, as the kernel gave it
  ASSERT_EQ(back.files_written_size(), 1);
  EXPECT_EQ(back.files_written(0).path(), kPlanted);
}

TEST(Report, HtmlCarriesNoMarkupFromTheAgentAndLoadsNothing) {
  auto html = render_report_html(report_of(attack()));
  std::string lower = html;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  EXPECT_EQ(lower.find("<script"), std::string::npos) << html;
  for (const char* ref : {" src=", "href=", "url(", "@import", "http:", "https:"})
    EXPECT_EQ(lower.find(ref), std::string::npos) << ref;
  for (unsigned char c : html) ASSERT_TRUE(c >= 0x20 || c == '\n') << "raw control byte in HTML";
  EXPECT_NE(html.find("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;\\xff\\xfe"), std::string::npos) << html;
  EXPECT_NE(html.find("Content-Security-Policy\" content=\"default-src 'none'"), std::string::npos);
  for (const char* id : {"sandbox", "timeline", "process-tree", "files-read", "files-written", "network", "violations",
                         "verification"})
    EXPECT_NE(html.find("<section id=\"" + std::string(id) + "\">"), std::string::npos) << id;
  EXPECT_NE(html.find(html_escape(kSecret)), std::string::npos);
  EXPECT_NE(html.find(html_escape(kPlanted)), std::string::npos);
  EXPECT_NE(html.find("127.0.0.1:4444"), std::string::npos);
}

TEST(Report, LongTextSectionsSayHowManyMoreAndJsonKeepsEveryEntry) {
  std::vector<v1::Event> evs{exec_ev(1, 100, {"sh"})};
  for (int i = 0; i < 150; ++i) evs.push_back(exec_ev(2 + i, 200 + i, {"tool", std::to_string(i)}));
  auto r = report_of(evs);
  auto text = render_report_text(r, 100);
  EXPECT_NE(section(text, "Timeline (151)").find("... 51 more"), std::string::npos) << section(text, "Timeline");
  EXPECT_EQ(section(text, "Timeline").find("tool 149"), std::string::npos);
  EXPECT_EQ(r.timeline_size(), 151);
  v1::IncidentReport back;
  ASSERT_TRUE(message_from_json(render_report_json(r), &back));
  EXPECT_EQ(back.timeline_size(), 151);
  EXPECT_NE(render_report_html(r).find("tool 149"), std::string::npos);
  EXPECT_NE(render_report_text(r, 0).find("tool 149"), std::string::npos) << "0: no cap";
}

TEST(Report, WithoutAWorkspaceEveryFileIsListedAndTheHeaderSaysNotRecorded) {
  auto r = report_of(attack(), "");
  auto text = render_report_text(r);
  EXPECT_NE(text.find("workspace:   not recorded"), std::string::npos) << text;
  EXPECT_NE(text.find("profile:     not recorded"), std::string::npos) << text;
  EXPECT_NE(section(text, "Files written (2)").find(kWorkspace + "/out.txt"), std::string::npos) << text;
}

TEST(Report, TheRunEndsWithItsFirstExecutedProcessAndTheDaemonRecordFillsTheHeader) {
  auto evs = attack();
  evs.pop_back();  // no exit recorded
  ReportContext ctx;
  ctx.sandbox_id = kSandbox;
  v1::Sandbox sb;
  sb.set_owner_uid(1000);
  sb.set_profile("default");
  sb.set_workspace(kWorkspace);
  ctx.sandbox = sb;
  ReportBuilder b(ctx);
  // The launcher's fork comes first in a sandbox's events; the run is its child's.
  v1::Event fork = base(0, 50, "agentcage");
  fork.mutable_process()->set_exec_id("boot:50");
  fork.mutable_fork()->set_child_pid(100);
  fork.mutable_fork()->set_child_exec_id("boot:100");
  b.add(fork);
  for (const auto& e : evs) b.add(e);
  v1::Event store_loss;
  store_loss.mutable_loss()->set_reason("sink_queue_full");
  store_loss.mutable_loss()->set_count(2);
  b.add_store_loss(store_loss);
  auto r = b.build({});
  EXPECT_EQ(r.header().ending().state(), "running");
  EXPECT_EQ(r.header().ending().pid(), 100u);
  EXPECT_EQ(r.header().lost_events(), 7u);
  auto text = render_report_text(r);
  EXPECT_NE(text.find("owner:       uid 1000 (first process ran as uid 1000)"), std::string::npos) << text;
  EXPECT_NE(text.find("profile:     default"), std::string::npos) << text;
  EXPECT_NE(text.find("first process (pid 100) still running"), std::string::npos) << text;
  EXPECT_NE(text.find("sink_queue_full 2 (1 record, store-wide)"), std::string::npos) << text;
  EXPECT_NE(section(text, "Files read outside the workspace").find("id_rsa"), std::string::npos) << text;
}

// Issue 14: the report reads by name. DNS queries are grouped per name and outcome (what
// resolved, what was refused, with the entry that decided), and connections name what
// they were reached by: the resolver's answer or the name the connection asked for.
TEST(Report, NamesWhatWasResolvedRefusedAndConnectedTo) {
  std::vector<v1::Event> evs;
  evs.push_back(exec_ev(1, 100, {"npm", "install"}));
  for (uint64_t seq : {2, 3}) {
    auto q = base(seq, 100, "npm");
    auto* d = q.mutable_dns();
    d->set_name("registry.npmjs.org");
    d->set_type("A");
    d->set_rcode("NOERROR");
    d->add_answers("104.16.1.34 ttl=300");
    d->set_rule("registry.npmjs.org");
    evs.push_back(q);
  }
  auto r = base(4, 100, "npm");
  r.mutable_violation()->set_mechanism("dns");
  r.mutable_violation()->set_action("deny");
  r.mutable_violation()->set_what("dns A c2VjcmV0.evil.example (udp): refused, not sent upstream");
  r.mutable_violation()->mutable_dns()->set_name("c2VjcmV0.evil.example" + kNasty);
  r.mutable_violation()->mutable_dns()->set_rcode("REFUSED");
  evs.push_back(r);
  auto c = base(5, 100, "npm");
  auto* n = c.mutable_net();
  n->set_op("connect");
  n->set_protocol("tcp");
  n->mutable_remote()->set_family("inet");
  n->mutable_remote()->set_address("104.16.1.34");
  n->mutable_remote()->set_port(443);
  n->set_learned(true);
  n->set_name("registry.npmjs.org");
  evs.push_back(c);
  auto f = base(6, 100, "npm");
  f.mutable_violation()->set_mechanism("tls-sni");
  f.mutable_violation()->set_action("deny");
  f.mutable_violation()->set_rule("network.domains: no entry for evil.example (network.default: deny)");
  *f.mutable_violation()->mutable_net() = c.net();
  f.mutable_violation()->mutable_net()->set_name("evil.example");
  f.mutable_violation()->mutable_net()->set_wire("tls-sni");
  evs.push_back(f);

  auto rep = report_of(evs);
  ASSERT_EQ(rep.names_size(), 2);
  EXPECT_EQ(rep.names(0).name(), "c2VjcmV0.evil.example" + kNasty);
  EXPECT_EQ(rep.names(0).outcome(), "refused");
  EXPECT_EQ(rep.names(1).outcome(), "resolved");
  EXPECT_EQ(rep.names(1).count(), 2u);
  auto text = render_report_text(rep);
  auto names = section(text, "Names");
  EXPECT_NE(names.find("resolved registry.npmjs.org  x2  (entry registry.npmjs.org)  -> 104.16.1.34 ttl=300"),
            std::string::npos)
      << names;
  EXPECT_NE(names.find("refused  c2VjcmV0.evil.example\\x1b]0;pwned"), std::string::npos) << names;
  auto net = section(text, "Network");
  EXPECT_NE(net.find("allowed  connect registry.npmjs.org (104.16.1.34:443)/tcp  pid 100 npm"), std::string::npos)
      << net;
  EXPECT_NE(net.find("denied   connect evil.example (104.16.1.34:443)/tcp  pid 100 npm  x1  (tls-sni, "),
            std::string::npos)
      << net;
  auto html = render_report_html(rep);
  EXPECT_NE(html.find("registry.npmjs.org (104.16.1.34:443)"), std::string::npos);
  EXPECT_NE(html.find("Names (DNS)"), std::string::npos);
  EXPECT_EQ(html.find("<script>alert"), std::string::npos);
}

}  // namespace
}  // namespace agentcage::core
