// SPDX-License-Identifier: Apache-2.0
#include "cli.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

namespace agentcage::cli {
namespace {

template <class T>
const T& as(const Parsed& p) {
  if (auto* e = std::get_if<Exit>(&p)) ADD_FAILURE() << "parse exited " << e->status << ": " << e->text;
  return std::get<T>(p);
}

TEST(Cli, RunTakesEverythingAfterDoubleDash) {
  auto p = parse({"run", "--", "sh", "-c", "echo hi", "--help"});
  ASSERT_TRUE(std::holds_alternative<RunArgs>(p));
  EXPECT_EQ(as<RunArgs>(p).command, (std::vector<std::string>{"sh", "-c", "echo hi", "--help"}));
}

TEST(Cli, SequenceNumbersAreStrictNonNegativeIntegersInRange) {
  auto ok = parse({"events", "--from-seq", "9223372036854775807", "--limit", "0"});
  ASSERT_TRUE(std::holds_alternative<EventsArgs>(ok));
  EXPECT_EQ(as<EventsArgs>(ok).from_seq, 9223372036854775807ull);
  for (const char* bad : {"-1", "9223372036854775808", "18446744073709551616", "1e3", "", "+5"}) {
    auto p = parse({"events", "--from-seq", bad});
    ASSERT_TRUE(std::holds_alternative<Exit>(p)) << bad;
    EXPECT_EQ(std::get<Exit>(p).status, 2) << bad;
    EXPECT_NE(std::get<Exit>(p).text.find("--from-seq"), std::string::npos) << std::get<Exit>(p).text;
  }
  EXPECT_TRUE(std::holds_alternative<Exit>(parse({"events", "--limit", "-3"})));
}

TEST(Cli, RunWithoutCommandIsUsageError) {
  auto p = parse({"run"});
  ASSERT_TRUE(std::holds_alternative<Exit>(p));
  EXPECT_EQ(std::get<Exit>(p).status, 2);
  EXPECT_NE(std::get<Exit>(p).text.find("command"), std::string::npos);
}

TEST(Cli, UnknownOptionIsUsageError) {
  auto p = parse({"run", "--frobnicate", "--", "true"});
  ASSERT_TRUE(std::holds_alternative<Exit>(p));
  EXPECT_EQ(std::get<Exit>(p).status, 2);
  EXPECT_NE(std::get<Exit>(p).text.find("frobnicate"), std::string::npos);
}

TEST(Cli, NoSubcommandIsUsageError) {
  auto p = parse({});
  ASSERT_TRUE(std::holds_alternative<Exit>(p));
  EXPECT_EQ(std::get<Exit>(p).status, 2);
}

TEST(Cli, UnknownSubcommandIsUsageError) {
  auto p = parse({"fly"});
  ASSERT_TRUE(std::holds_alternative<Exit>(p));
  EXPECT_EQ(std::get<Exit>(p).status, 2);
}

TEST(Cli, HelpExitsZeroForEveryCommand) {
  for (auto args : std::vector<std::vector<std::string>>{{"--help"}, {"run", "--help"}, {"trace", "--help"}}) {
    auto p = parse(args);
    ASSERT_TRUE(std::holds_alternative<Exit>(p)) << args[0];
    EXPECT_EQ(std::get<Exit>(p).status, 0);
    EXPECT_NE(std::get<Exit>(p).text.find("Usage"), std::string::npos) << std::get<Exit>(p).text;
  }
  auto sub = std::get<Exit>(parse({"trace", "--help"}));
  EXPECT_NE(sub.text.find("--host"), std::string::npos);
}

TEST(Cli, TraceOptions) {
  auto p = parse({"trace", "-o", "text", "--output", "/tmp/x", "--ring-bytes", "1048576", "--", "ls", "-l"});
  const auto& t = as<TraceArgs>(p);
  EXPECT_EQ(t.format, OutputFormat::text);
  EXPECT_EQ(t.output, "/tmp/x");
  EXPECT_EQ(t.ring_bytes, 1048576u);
  EXPECT_EQ(t.command, (std::vector<std::string>{"ls", "-l"}));
}

TEST(Cli, TraceRejectsBadValues) {
  EXPECT_EQ(std::get<Exit>(parse({"trace", "-o", "xml", "--", "true"})).status, 2);
  EXPECT_EQ(std::get<Exit>(parse({"trace", "--ring-bytes", "100000", "--", "true"})).status, 2);
  EXPECT_EQ(std::get<Exit>(parse({"trace", "--ring-bytes"})).status, 2);
  EXPECT_EQ(std::get<Exit>(parse({"trace"})).status, 2);
}

TEST(Cli, TraceHostNeedsNoCommand) {
  auto p = parse({"trace", "--host"});
  EXPECT_TRUE(as<TraceArgs>(p).host);
  EXPECT_TRUE(as<TraceArgs>(p).command.empty());
}

TEST(Cli, NoNetworkOptionMeansNoPolicy) {
  EXPECT_FALSE(as<RunArgs>(parse({"run", "--", "true"})).net);
  EXPECT_FALSE(as<TraceArgs>(parse({"trace", "--", "true"})).net);
}

TEST(Cli, AllowNetIsRepeatableAndParsed) {
  auto p = parse({"run", "--allow-net", "127.0.0.1:8000-8100/tcp", "--allow-net", "[::1]:443", "--", "true"});
  const auto& net = as<RunArgs>(p).net;
  ASSERT_TRUE(net);
  ASSERT_EQ(net->allow.size(), 2u);
  EXPECT_EQ(net->allow[0].cidr, "127.0.0.1");
  EXPECT_EQ(net->allow[0].port_lo, 8000);
  EXPECT_EQ(net->allow[0].port_hi, 8100);
  EXPECT_EQ(net->allow[0].proto, core::NetProto::tcp);
  EXPECT_EQ(net->allow[1].cidr, "::1");
  EXPECT_EQ(net->default_action, core::NetAction::deny);
  EXPECT_EQ(as<RunArgs>(p).command, (std::vector<std::string>{"true"}));

  // A repeatable option right before `--` must not take the command's own options.
  auto q = parse({"trace", "--allow-net", "10.0.0.0/8", "--allow-unix", "@x", "--", "sh", "-c", "echo"});
  EXPECT_EQ(as<TraceArgs>(q).command, (std::vector<std::string>{"sh", "-c", "echo"}));
  EXPECT_EQ(as<TraceArgs>(q).net->allow.size(), 1u);
  EXPECT_EQ(as<TraceArgs>(q).net->unix_allow.size(), 1u);
}

TEST(Cli, NetDefaultAloneSwitchesPolicyOn) {
  auto p = parse({"trace", "--net-default", "kill", "--allow-unix", "@sock", "--", "true"});
  const auto& net = as<TraceArgs>(p).net;
  ASSERT_TRUE(net);
  EXPECT_TRUE(net->allow.empty());
  EXPECT_EQ(net->default_action, core::NetAction::kill);
  EXPECT_EQ(net->unix_allow, (std::vector<std::string>{"@sock"}));
  EXPECT_EQ(as<RunArgs>(parse({"run", "--net-default", "audit", "--", "true"})).net->default_action,
            core::NetAction::audit);
  EXPECT_FALSE(net->allow_all_unix);
  auto any = parse({"run", "--allow-unix", "*", "--allow-unix", "/run/a.sock", "--", "true"});
  EXPECT_TRUE(as<RunArgs>(any).net->allow_all_unix);
  EXPECT_EQ(as<RunArgs>(any).net->unix_allow, (std::vector<std::string>{"/run/a.sock"}));
}

TEST(Cli, AllowDomainIsTheNetworkOptionAProfileTakes) {
  // Without a profile: a policy of its own, forwarding to --dns.
  auto p = parse({"run", "--allow-domain", "pypi.org", "--dns", "192.0.2.53", "--", "pip", "install", "x"});
  const auto& net = as<RunArgs>(p).net;
  ASSERT_TRUE(net);
  ASSERT_EQ(net->domains.size(), 1u);
  EXPECT_EQ(net->domains[0].pattern, "pypi.org");
  EXPECT_EQ(net->dns_resolvers, (std::vector<std::string>{"192.0.2.53"}));
  EXPECT_TRUE(as<RunArgs>(p).allow_domains.empty());
  // With one: the names amend it (checked here, added where the profile is resolved).
  auto q = parse({"run", "--profile", "coding-agent", "--allow-domain", "api.anthropic.com", "--allow-domain",
                  "*.example.com:8443", "--", "true"});
  EXPECT_FALSE(as<RunArgs>(q).net);
  EXPECT_EQ(as<RunArgs>(q).allow_domains, (std::vector<std::string>{"api.anthropic.com", "*.example.com:8443"}));
  EXPECT_EQ(as<TraceArgs>(parse({"trace", "--profile", "x", "--allow-domain", "a.example", "--", "true"})).allow_domains,
            (std::vector<std::string>{"a.example"}));
  for (std::vector<std::string> bad :
       {std::vector<std::string>{"run", "--profile", "p", "--allow-domain", "a..example", "--", "true"},
        {"run", "--profile", "p", "--allow-net", "10.0.0.0/8", "--", "true"},
        {"run", "--profile", "p", "--allow-domain", "a.example", "--dns", "192.0.2.1", "--", "true"},
        {"run", "--allow-domain", "a.example:0", "--dns", "192.0.2.1", "--", "true"},
        {"run", "--allow-domain", "a.example", "--dns", "dns.example", "--", "true"}}) {
    auto e = parse(bad);
    ASSERT_TRUE(std::holds_alternative<Exit>(e)) << bad[3];
    EXPECT_EQ(std::get<Exit>(e).status, 2) << bad[3];
  }
  auto both = std::get<Exit>(parse({"run", "--profile", "p", "--allow-net", "10.0.0.0/8", "--", "true"})).text;
  EXPECT_NE(both.find("--allow-domain may be added to a profile"), std::string::npos) << both;
}

TEST(Cli, BadNetworkOptionsAreUsageErrors) {
  auto p = parse({"run", "--allow-net", "10.0.0.1/8:80", "--", "true"});
  ASSERT_TRUE(std::holds_alternative<Exit>(p));
  EXPECT_EQ(std::get<Exit>(p).status, 2);
  EXPECT_NE(std::get<Exit>(p).text.find("--allow-net"), std::string::npos) << std::get<Exit>(p).text;
  EXPECT_NE(std::get<Exit>(p).text.find("10.0.0.0/8"), std::string::npos) << std::get<Exit>(p).text;  // the hint

  EXPECT_EQ(std::get<Exit>(parse({"trace", "--net-default", "allow", "--", "true"})).status, 2);
  EXPECT_EQ(std::get<Exit>(parse({"trace", "--allow-net", "[::1]:99999", "--", "true"})).status, 2);
  auto u = parse({"run", "--allow-unix", "relative.sock", "--", "true"});
  ASSERT_TRUE(std::holds_alternative<Exit>(u));
  EXPECT_NE(std::get<Exit>(u).text.find("relative.sock"), std::string::npos);
}

TEST(Cli, HelpDescribesNetworkOptions) {
  for (const char* cmd : {"run", "trace"}) {
    auto p = parse({cmd, "--help"});
    ASSERT_TRUE(std::holds_alternative<Exit>(p));
    const auto& text = std::get<Exit>(p).text;
    EXPECT_EQ(std::get<Exit>(p).status, 0);
    for (const char* s : {"--allow-net", "--allow-unix", "--net-default", "CIDR[:PORT[-PORT]][/tcp|/udp]"})
      EXPECT_NE(text.find(s), std::string::npos) << cmd << " help lacks " << s;
  }
}

TEST(Cli, DenyPathAndDenyExecRepeat) {
  auto p = parse({"trace", "--deny-path", "/a", "--deny-path", "/b", "--deny-exec", "/c", "--", "cat", "/a"});
  const auto& t = as<TraceArgs>(p);
  EXPECT_EQ(t.deny_paths, (std::vector<std::string>{"/a", "/b"}));
  EXPECT_EQ(t.deny_execs, (std::vector<std::string>{"/c"}));
  EXPECT_EQ(t.command, (std::vector<std::string>{"cat", "/a"}));
  auto r = parse({"run", "--no-daemon", "--deny-path", "/s", "--", "cat", "/s"});
  EXPECT_EQ(as<RunArgs>(r).deny_paths, (std::vector<std::string>{"/s"}));
  EXPECT_EQ(as<RunArgs>(r).command, (std::vector<std::string>{"cat", "/s"}));
}

TEST(Cli, DenyPathMustBeAbsolute) {
  auto e = std::get<Exit>(parse({"trace", "--deny-path", "secret", "--", "true"}));
  EXPECT_EQ(e.status, 2);
  EXPECT_NE(e.text.find("--deny-path: 'secret' is not an absolute path"), std::string::npos) << e.text;
  e = std::get<Exit>(parse({"run", "--deny-exec", "bin/x", "--", "true"}));
  EXPECT_EQ(e.status, 2);
  EXPECT_NE(e.text.find("--deny-exec"), std::string::npos) << e.text;
}

TEST(Cli, TreeTakesASandboxId) {
  auto p = parse({"tree", "0123456789abcdef", "-o", "json", "--socket", "/tmp/s"});
  const auto& t = as<TreeArgs>(p);
  EXPECT_EQ(t.sandbox, "0123456789abcdef");
  EXPECT_EQ(t.socket, "/tmp/s");
  EXPECT_EQ(t.format, OutputFormat::json);
  EXPECT_EQ(as<TreeArgs>(parse({"tree", "0123456789abcdef"})).format, OutputFormat::text);
  auto e = std::get<Exit>(parse({"tree", "../etc"}));
  EXPECT_EQ(e.status, 2);
  EXPECT_NE(e.text.find("not a sandbox id"), std::string::npos) << e.text;
  EXPECT_EQ(std::get<Exit>(parse({"tree"})).status, 2);
  auto h = std::get<Exit>(parse({"tree", "--help"}));
  EXPECT_EQ(h.status, 0);
  EXPECT_NE(h.text.find("process tree"), std::string::npos) << h.text;
}

// An open descriptor of this process, closed at the end of the scope.
struct OpenFd {
  int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ~OpenFd() { ::close(fd); }
};

TEST(Cli, PassFdTakesOpenDescriptorsAboveTwo) {
  OpenFd a, b;
  ASSERT_GT(a.fd, 2);
  auto fa = std::to_string(a.fd), fb = std::to_string(b.fd);
  auto p = parse({"run", "--pass-fd", fa, "--pass-fd", fb, "--", "cat"});
  EXPECT_EQ(as<RunArgs>(p).pass_fds, (std::vector<int>{a.fd, b.fd}));
  EXPECT_EQ(as<RunArgs>(p).command, (std::vector<std::string>{"cat"}));
  auto t = parse({"trace", "--pass-fd", fa, "--", "cat"});
  EXPECT_EQ(as<TraceArgs>(t).pass_fds, (std::vector<int>{a.fd}));
  EXPECT_TRUE(as<RunArgs>(parse({"run", "--", "cat"})).pass_fds.empty());
}

TEST(Cli, PassFdRefusesWhatIsNotAnOpenDescriptorAboveTwo) {
  OpenFd closed;
  int gone = closed.fd;
  ::close(closed.fd);
  closed.fd = -1;
  auto why = [](std::vector<std::string> args) {
    auto p = parse(args);
    if (!std::holds_alternative<Exit>(p)) return std::string("accepted");
    EXPECT_EQ(std::get<Exit>(p).status, 2);
    return std::get<Exit>(p).text;
  };
  for (const char* cmd : {"run", "trace"}) {
    for (std::string bad : {"abc", "7x", "", "1.5", "99999999999"})
      EXPECT_NE(why({cmd, "--pass-fd", bad, "--", "true"}).find("--pass-fd: '" + bad + "' is not a file descriptor number"),
                std::string::npos)
          << bad;
    // A negative number is no descriptor either (CLI11 may read it as an unknown option).
    EXPECT_NE(why({cmd, "--pass-fd", "-1", "--", "true"}).find("-1"), std::string::npos);
    for (std::string std_fd : {"0", "1", "2"})
      EXPECT_NE(why({cmd, "--pass-fd", std_fd, "--", "true"}).find("--pass-fd: " + std_fd + " is standard input"),
                std::string::npos);
    EXPECT_NE(why({cmd, "--pass-fd", std::to_string(gone), "--", "true"})
                  .find("--pass-fd: descriptor " + std::to_string(gone) + " is not open in the caller"),
              std::string::npos);
  }
  OpenFd open;
  EXPECT_NE(why({"trace", "--host", "--pass-fd", std::to_string(open.fd)}).find("--pass-fd needs a command"),
            std::string::npos);
}

TEST(Cli, PassEnvTakesVariableNamesForRunAndTrace) {
  auto p = parse({"run", "--pass-env", "GITHUB_TOKEN", "--pass-env", "_x1", "--", "env"});
  EXPECT_EQ(as<RunArgs>(p).pass_env, (std::vector<std::string>{"GITHUB_TOKEN", "_x1"}));
  EXPECT_EQ(as<RunArgs>(p).command, (std::vector<std::string>{"env"}));
  auto t = parse({"trace", "--pass-env", "ANTHROPIC_API_KEY", "--", "env"});
  EXPECT_EQ(as<TraceArgs>(t).pass_env, (std::vector<std::string>{"ANTHROPIC_API_KEY"}));
  EXPECT_TRUE(as<RunArgs>(parse({"run", "--", "env"})).pass_env.empty());
}

TEST(Cli, PassEnvRefusesWhatIsNotAVariableNameNamingTheFlag) {
  for (const char* cmd : {"run", "trace"}) {
    for (std::string bad : {"1ABC", "A-B", "A=B", "A B", "*_TOKEN", ""}) {
      auto p = parse({cmd, "--pass-env", bad, "--", "true"});
      ASSERT_TRUE(std::holds_alternative<Exit>(p)) << cmd << " accepted '" << bad << "'";
      EXPECT_EQ(std::get<Exit>(p).status, 2);
      EXPECT_NE(std::get<Exit>(p).text.find("--pass-env: '" + bad + "' is not an environment variable name"),
                std::string::npos)
          << std::get<Exit>(p).text;
    }
  }
  auto host = parse({"trace", "--host", "--pass-env", "A"});
  ASSERT_TRUE(std::holds_alternative<Exit>(host));
  EXPECT_NE(std::get<Exit>(host).text.find("--pass-env needs a command"), std::string::npos);
}

TEST(Cli, RunHelpDocumentsPassFdAndTheExitStatuses) {
  auto h = std::get<Exit>(parse({"run", "--help"}));
  EXPECT_NE(h.text.find("--pass-fd"), std::string::npos) << h.text;
  EXPECT_NE(h.text.find("127 when the"), std::string::npos) << h.text;
  EXPECT_NE(h.text.find("SIGWINCH"), std::string::npos) << h.text;
  EXPECT_NE(std::get<Exit>(parse({"trace", "--help"})).text.find("--pass-fd"), std::string::npos);
  EXPECT_NE(h.text.find("--pass-env NAME"), std::string::npos) << h.text;
  EXPECT_NE(h.text.find("never the values"), std::string::npos) << h.text;
  EXPECT_NE(std::get<Exit>(parse({"trace", "--help"})).text.find("--pass-env"), std::string::npos);
}

}  // namespace
}  // namespace agentcage::cli

namespace agentcage::cli {
namespace {

TEST(Cli, DbReadsAStoreFileAndExcludesTheSocketAndFollow) {
  auto e = parse({"events", "--db", "audit.db", "--sandbox", "0123456789abcdef", "--kind", "exec", "-o", "text"});
  EXPECT_EQ(as<EventsArgs>(e).db, "audit.db");
  EXPECT_EQ(as<TreeArgs>(parse({"tree", "--db", "audit.db", "0123456789abcdef"})).db, "audit.db");
  for (auto args : std::vector<std::vector<std::string>>{{"events", "--db", "a.db", "--socket", "/s"},
                                                          {"events", "--db", "a.db", "-f"},
                                                          {"tree", "--db", "a.db", "--socket", "/s", "0123456789abcdef"},
                                                          {"audit", "report", "--sandbox", "0123456789abcdef", "--db",
                                                           "a.db", "--socket", "/s"}}) {
    auto p = parse(args);
    ASSERT_TRUE(std::holds_alternative<Exit>(p)) << args[0];
    EXPECT_EQ(std::get<Exit>(p).status, 2);
    EXPECT_NE(std::get<Exit>(p).text.find("excludes"), std::string::npos) << std::get<Exit>(p).text;
  }
}

TEST(Cli, AuditReportTakesASandboxAFormatAndAnOutputFile) {
  auto p = parse({"audit", "report", "--sandbox", "0123456789abcdef", "--db", "a.db", "-o", "html", "--output", "r.html",
                  "--workspace", "/ws"});
  const auto& r = as<AuditReportArgs>(p);
  EXPECT_EQ(r.sandbox, "0123456789abcdef");
  EXPECT_EQ(r.db, "a.db");
  EXPECT_EQ(r.format, ReportFormat::html);
  EXPECT_EQ(r.output, "r.html");
  EXPECT_EQ(r.workspace, "/ws");
  EXPECT_EQ(as<AuditReportArgs>(parse({"audit", "report", "--sandbox", "0123456789abcdef"})).format, ReportFormat::text);
  for (auto args : std::vector<std::vector<std::string>>{{"audit", "report"},
                                                          {"audit", "report", "--sandbox", "../../etc"},
                                                          {"audit", "report", "--sandbox", "0123456789abcdef", "-o", "pdf"}})
    EXPECT_EQ(std::get<Exit>(parse(args)).status, 2) << args.back();
}

}  // namespace
}  // namespace agentcage::cli
