// SPDX-License-Identifier: Apache-2.0
// Offline access and the incident report on a recorded attack: an agent under the
// default profile reads /etc/shadow (denied), connects to 127.0.0.1 on a port nothing
// allows (denied), plants a file outside its workspace, and exits 3. The run is recorded
// in-process (`run --no-daemon --audit-db`); then, with no daemon anywhere, `events --db`
// and `tree --db` return that sandbox's events and tree, and `audit report --db` names
// each attempt in its section in text, JSON and HTML, the HTML as a real browser renders
// it (chromium-headless-shell, installed by scripts/setup.sh: missing is a failure).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <regex>
#include <fstream>

#include "agentcage/v1/report.pb.h"
#include "core/events/event_json.h"
#include "support/loopback_listener.h"
#include "support/subprocess.h"

namespace agentcage {
namespace {

using testing::run;

constexpr const char* kChromium = "/usr/bin/chromium-headless-shell";

using Listener = testing::LoopbackListener;

// The text between "== TITLE" and the next section heading.
std::string section(const std::string& text, const std::string& title) {
  auto b = text.find("\n== " + title);
  if (b == std::string::npos) return {};
  auto e = text.find("\n== ", b + 1);
  return text.substr(b, e == std::string::npos ? std::string::npos : e - b);
}

class RecordedAttack : public ::testing::Test {
 protected:
  // One recorded attack for every test here (a run loads the BPF programs: seconds).
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    dir_ = testing::temp_dir();
    ws_ = dir_ + "/ws";
    db_ = dir_ + "/audit.db";
    std::filesystem::create_directory(ws_);
    listener_ = new Listener;
    planted_ = "/tmp/agentcage-planted-" + std::to_string(getpid());
    std::string script = "cd " + ws_ + " && echo notes > out.txt; cat /etc/shadow; echo pwned > " + planted_ +
                         "; python3 -c 'import socket\ntry: socket.create_connection((\"127.0.0.1\"," +
                         std::to_string(listener_->port) + "),timeout=3)\nexcept OSError as e: print(\"refused\", e.errno)'" +
                         "; exit 3";
    attack_ = run({AGENTCAGE_BIN, "run", "--no-daemon", "--audit-db", db_, "--profile", "default", "--workspace", ws_,
                   "--", "sh", "-c", script});
    // The sandbox id, the way an operator finds it: the exec of the command.
    auto ex = run({AGENTCAGE_BIN, "events", "--db", db_, "--kind", "exec"});
    for (const auto& line : testing::lines(ex.out)) {
      v1::Event ev;
      if (core::message_from_json(line, &ev) && ev.process().argv_size() > 2 &&
          ev.process().argv(2).find(planted_) != std::string::npos)
        sandbox_ = ev.sandbox_id();
    }
  }
  static void TearDownTestSuite() {
    delete listener_;
    listener_ = nullptr;
  }
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: loads BPF programs, creates cgroups and namespaces";
    ASSERT_EQ(attack_.status, 3) << attack_.out << attack_.err;
    ASSERT_NE(attack_.out.find("refused 1"), std::string::npos) << attack_.out << attack_.err;  // EPERM
    ASSERT_EQ(sandbox_.size(), 16u) << "no exec of the attack in " << db_;
  }
  std::string port() const { return std::to_string(listener_->port); }
  std::vector<std::string> report(const std::vector<std::string>& extra) const {
    std::vector<std::string> a{AGENTCAGE_BIN, "audit", "report", "--db", db_, "--sandbox", sandbox_};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }

  static inline std::string dir_, ws_, db_, planted_, sandbox_;
  static inline Listener* listener_ = nullptr;
  static inline testing::ProcResult attack_;
};

TEST_F(RecordedAttack, EventsDbReturnsTheSandboxsEventsWithTheDaemonsFilters) {
  auto all = run({AGENTCAGE_BIN, "events", "--db", db_, "--sandbox", sandbox_});
  ASSERT_EQ(all.status, 0) << all.err;
  size_t n = 0, violations = 0;
  for (const auto& line : testing::lines(all.out)) {
    v1::Event ev;
    ASSERT_TRUE(core::message_from_json(line, &ev)) << line;
    if (!ev.has_loss()) {
      EXPECT_EQ(ev.sandbox_id(), sandbox_) << line;
    }
    ++n;
    violations += ev.has_violation();
  }
  EXPECT_GE(n, 10u) << all.out;
  EXPECT_EQ(violations, 2u) << all.out;
  auto v = run({AGENTCAGE_BIN, "events", "--db", db_, "--sandbox", sandbox_, "--violations", "-o", "text"});
  ASSERT_EQ(v.status, 0) << v.err;
  EXPECT_EQ(testing::lines(v.out).size(), 2u) << v.out;
  EXPECT_NE(v.out.find("VIOLATION"), std::string::npos) << v.out;
  EXPECT_NE(v.out.find("deny open /etc/shadow (mount-mask"), std::string::npos) << v.out;
  EXPECT_NE(v.out.find("deny connect 127.0.0.1:" + port() + "/tcp (cgroup-bpf"), std::string::npos) << v.out;
  auto lim = run({AGENTCAGE_BIN, "events", "--db", db_, "--sandbox", sandbox_, "--limit", "3", "--from-seq", "2"});
  ASSERT_EQ(testing::lines(lim.out).size(), 3u) << lim.out;
  v1::Event first;
  ASSERT_TRUE(core::message_from_json(testing::lines(lim.out)[0], &first));
  EXPECT_GE(first.seq(), 2u);
  auto other = run({AGENTCAGE_BIN, "events", "--db", db_, "--sandbox", "0123456789abcdef"});
  EXPECT_EQ(other.status, 0) << other.err;
  EXPECT_EQ(other.out, "") << "another sandbox's filter returned events";
}

TEST_F(RecordedAttack, TreeDbShowsTheProcessTreeWithExitStatus) {
  auto t = run({AGENTCAGE_BIN, "tree", "--db", db_, sandbox_});
  ASSERT_EQ(t.status, 0) << t.err;
  EXPECT_NE(t.out.find("exit 3  sh -c cd " + ws_), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("exit 1  cat /etc/shadow"), std::string::npos) << t.out;
  auto j = run({AGENTCAGE_BIN, "tree", "--db", db_, "-o", "json", sandbox_});
  ASSERT_EQ(j.status, 0) << j.err;
  v1::ProcessTreeResponse tree;
  ASSERT_TRUE(core::message_from_json(j.out.substr(0, j.out.find('\n')), &tree)) << j.out;
  EXPECT_GE(tree.roots_size(), 1);
}

TEST_F(RecordedAttack, DbErrorsNameTheFileAndNeverCrash) {
  std::string junk = dir_ + "/junk.db";
  std::ofstream(junk) << "not a store\n";
  for (const auto& f : {dir_ + "/missing.db", junk, dir_}) {
    for (auto argv : std::vector<std::vector<std::string>>{{AGENTCAGE_BIN, "events", "--db", f},
                                                            {AGENTCAGE_BIN, "tree", "--db", f, sandbox_},
                                                            {AGENTCAGE_BIN, "audit", "report", "--db", f, "--sandbox", sandbox_}}) {
      auto r = run(argv);
      EXPECT_TRUE(r.status == 1 || r.status == 2) << argv[1] << " " << f << ": " << r.status << r.err;
      EXPECT_NE(r.err.find("--db " + f), std::string::npos) << r.err;
    }
  }
}

TEST_F(RecordedAttack, TextReportNamesEachAttemptInItsSection) {
  auto r = run(report({"--workspace", ws_}));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto& text = r.out;
  EXPECT_NE(section(text, "Sandbox").find("exited with status 3"), std::string::npos) << text;
  EXPECT_NE(section(text, "Sandbox").find("mount-mask, cgroup-bpf"), std::string::npos) << text;
  auto timeline = section(text, "Timeline");
  EXPECT_NE(timeline.find("exec cat /etc/shadow"), std::string::npos) << timeline;
  EXPECT_NE(timeline.find("deny open /etc/shadow"), std::string::npos) << timeline;
  EXPECT_NE(timeline.find("deny connect 127.0.0.1:" + port() + "/tcp"), std::string::npos) << timeline;
  EXPECT_NE(timeline.find("open(create) " + planted_), std::string::npos) << timeline;
  EXPECT_NE(section(text, "Process tree").find("cat /etc/shadow"), std::string::npos) << text;
  EXPECT_NE(section(text, "Files read outside the workspace").find("/etc/shadow  [open]"), std::string::npos) << text;
  auto written = section(text, "Files written outside the workspace");
  EXPECT_NE(written.find(planted_ + "  [open(create)]"), std::string::npos) << written;
  EXPECT_EQ(written.find("out.txt"), std::string::npos) << "a workspace file listed as outside:\n" << written;
  EXPECT_NE(section(text, "Network").find("denied   connect 127.0.0.1:" + port() + "/tcp"), std::string::npos) << text;
  auto viol = section(text, "Violations (2)");
  EXPECT_NE(viol.find("deny open /etc/shadow  mechanism mount-mask  rule filesystem.deny: /etc/shadow"),
            std::string::npos) << text;
  EXPECT_NE(viol.find("mechanism cgroup-bpf"), std::string::npos) << viol;
  EXPECT_NE(section(text, "Verification").find("OK: "), std::string::npos) << text;
}

// The in-process run recorded its sandbox: the header needs no --workspace and no daemon.
TEST_F(RecordedAttack, HeaderComesFromTheSandboxsOwnRecord) {
  auto r = run(report({}));
  ASSERT_EQ(r.status, 0) << r.err;
  auto head = section(r.out, "Sandbox");
  EXPECT_TRUE(std::regex_search(head, std::regex("profile: +default\n"))) << head;
  EXPECT_TRUE(std::regex_search(head, std::regex("workspace: +" + ws_ + "\n"))) << head;
  EXPECT_TRUE(std::regex_search(head, std::regex("owner: +uid 0"))) << head;
  EXPECT_TRUE(std::regex_search(head, std::regex("in force: +landlock: abi "))) << head;
  EXPECT_TRUE(std::regex_search(head, std::regex("sandbox: +closed at .*exit status 3"))) << head;
  EXPECT_TRUE(std::regex_search(head, std::regex("profile sha: +[0-9a-f]{64}\n"))) << head;
  EXPECT_EQ(section(r.out, "Files written outside the workspace").find("out.txt"), std::string::npos) << r.out;
}

TEST_F(RecordedAttack, JsonReportIsOneDocumentWithEveryAttempt) {
  auto r = run(report({"-o", "json"}));
  ASSERT_EQ(r.status, 0) << r.err;
  v1::IncidentReport rep;
  auto st = core::message_from_json(r.out, &rep);
  ASSERT_TRUE(st) << st.error().message() << "\n" << r.out;
  EXPECT_EQ(rep.header().sandbox_id(), sandbox_);
  EXPECT_EQ(rep.header().ending().exit_status(), 3);
  auto has_path = [](const auto& files, const std::string& p) {
    for (const auto& f : files)
      if (f.path() == p) return true;
    return false;
  };
  EXPECT_TRUE(has_path(rep.files_read(), "/etc/shadow"));
  EXPECT_TRUE(has_path(rep.files_written(), planted_));
  bool denied = false;
  for (const auto& c : rep.connections())
    denied |= c.outcome() == "denied" && c.address() == "127.0.0.1" && c.port() == static_cast<uint32_t>(listener_->port);
  EXPECT_TRUE(denied) << r.out;
  ASSERT_EQ(rep.violations_size(), 2);
  EXPECT_EQ(rep.verification().state(), "ok");
  EXPECT_EQ(rep.verification().head_seq(), rep.header().last_seq());
}

TEST_F(RecordedAttack, HtmlReportRendersInABrowserWithEverySection) {
  ASSERT_TRUE(std::filesystem::exists(kChromium))
      << kChromium << " is missing: scripts/setup.sh installs chromium-headless-shell (apt)";
  std::string html = dir_ + "/report.html";
  auto r = run(report({"-o", "html", "--output", html}));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "");
  // The DOM after parsing, as the browser built it: what a reader of the file sees.
  auto dom = run({kChromium, "--no-sandbox", "--headless", "--disable-gpu", "--user-data-dir=" + dir_ + "/chromium",
                  "--dump-dom", "file://" + html},
                 std::chrono::seconds(120));
  ASSERT_EQ(dom.status, 0) << dom.err;
  for (const char* h : {"<h2>Sandbox</h2>", "<h2>Timeline (", "<h2>Process tree</h2>", "<h2>Files read outside the workspace (",
                        "<h2>Files written outside the workspace (", "<h2>Network (", "<h2>Violations (2)</h2>", "<h2>Verification</h2>"})
    EXPECT_NE(dom.out.find(h), std::string::npos) << h << " not in the rendered DOM:\n" << dom.out.substr(0, 4000);
  EXPECT_NE(dom.out.find("deny open /etc/shadow (mount-mask"), std::string::npos);
  EXPECT_NE(dom.out.find("deny connect 127.0.0.1:" + port() + "/tcp"), std::string::npos);
  EXPECT_NE(dom.out.find(planted_), std::string::npos);
  EXPECT_EQ(dom.out.find("<script"), std::string::npos);
}

// Last (gtest runs a suite's tests in order): it edits the store.
TEST_F(RecordedAttack, ABrokenChainIsReportedAndTheExitStatusSaysSo) {
  auto e = run({"sqlite3", db_, "UPDATE events SET is_violation = 1 - is_violation WHERE seq = 2"});
  ASSERT_EQ(e.status, 0) << e.err;
  auto r = run(report({}));
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(section(r.out, "Verification").find("BROKEN at seq 2"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace agentcage
