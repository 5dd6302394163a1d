// SPDX-License-Identifier: Apache-2.0
// Parsing of `agentcage audit ...` and `agentcage collector`.
#include <gtest/gtest.h>

#include "cli.h"

namespace agentcage::cli {
namespace {

TEST(AuditCli, VerifyDefaultsToTheDaemonStore) {
  auto p = parse({"audit", "verify"});
  ASSERT_TRUE(std::holds_alternative<AuditVerifyArgs>(p));
  EXPECT_EQ(std::get<AuditVerifyArgs>(p).db, "/var/lib/agentcage/audit.db");
  p = parse({"audit", "verify", "--db", "/tmp/x.db"});
  EXPECT_EQ(std::get<AuditVerifyArgs>(p).db, "/tmp/x.db");
}

TEST(AuditCli, AuditNeedsASubcommand) {
  auto p = parse({"audit"});
  ASSERT_TRUE(std::holds_alternative<Exit>(p));
  EXPECT_EQ(std::get<Exit>(p).status, 2);
}

TEST(AuditCli, PushOptions) {
  auto p = parse({"audit", "push", "--db", "a.db", "--endpoint", "c:7443", "--ca", "ca.pem", "--cert", "n.pem", "--key",
                  "n.key", "--server-name", "collector", "--all", "--once", "--node", "n1", "--batch", "64",
                  "--timeout", "9"});
  ASSERT_TRUE(std::holds_alternative<AuditPushArgs>(p)) << std::get<Exit>(p).text;
  const auto& a = std::get<AuditPushArgs>(p);
  EXPECT_EQ(a.db, "a.db");
  EXPECT_EQ(a.endpoint, "c:7443");
  EXPECT_EQ(a.ca, "ca.pem");
  EXPECT_EQ(a.cert, "n.pem");
  EXPECT_EQ(a.key, "n.key");
  EXPECT_EQ(a.server_name, "collector");
  EXPECT_TRUE(a.all);
  EXPECT_TRUE(a.once);
  EXPECT_FALSE(a.insecure);
  EXPECT_EQ(a.node, "n1");
  EXPECT_EQ(a.batch, 64u);
  EXPECT_EQ(a.timeout_s, 9u);
}

TEST(AuditCli, PushUsageErrors) {
  for (auto args : std::vector<std::vector<std::string>>{
           {"audit", "push", "--db", "a.db"},                                             // no endpoint
           {"audit", "push", "--endpoint", "c:1", "--insecure", "--ca", "ca.pem"},        // plaintext + TLS
           {"audit", "push", "--endpoint", "c:1", "--cert", "n.pem"},                     // cert without key
           {"audit", "push", "--endpoint", "c:1", "--batch", "0"},                        // out of range
       }) {
    auto p = parse(args);
    ASSERT_TRUE(std::holds_alternative<Exit>(p)) << args.back();
    EXPECT_EQ(std::get<Exit>(p).status, 2) << args.back();
  }
}

TEST(AuditCli, CollectorNeedsTlsOrAnExplicitInsecure) {
  auto p = parse({"collector", "--listen", "127.0.0.1:0"});
  ASSERT_TRUE(std::holds_alternative<Exit>(p));
  EXPECT_NE(std::get<Exit>(p).text.find("--insecure"), std::string::npos);
  p = parse({"collector", "--listen", "127.0.0.1:0", "--insecure", "--tls-cert", "s.pem"});
  ASSERT_TRUE(std::holds_alternative<Exit>(p));
  // Nodes authenticate, or the operator says in so many words that anyone may push as
  // anyone: plaintext and TLS without a client CA are refused otherwise.
  for (std::vector<std::string> args : {std::vector<std::string>{"collector", "--listen", "127.0.0.1:0", "--insecure"},
                                        {"collector", "--listen", "127.0.0.1:0", "--tls-cert", "s.pem", "--tls-key",
                                         "s.key"}}) {
    p = parse(args);
    ASSERT_TRUE(std::holds_alternative<Exit>(p)) << args.back();
    EXPECT_EQ(std::get<Exit>(p).status, 2);
    EXPECT_NE(std::get<Exit>(p).text.find("no client authentication: pass --tls-client-ca"), std::string::npos)
        << std::get<Exit>(p).text;
    args.push_back("--insecure-accept-any-node");
    p = parse(args);
    ASSERT_TRUE(std::holds_alternative<CollectorArgs>(p)) << std::get<Exit>(p).text;
    EXPECT_TRUE(std::get<CollectorArgs>(p).accept_any_node);
  }
  p = parse({"collector", "--listen", "127.0.0.1:0", "--tls-cert", "s.pem", "--tls-key", "s.key", "--tls-client-ca",
             "ca.pem", "--insecure-accept-any-node"});
  ASSERT_TRUE(std::holds_alternative<Exit>(p));
  EXPECT_NE(std::get<Exit>(p).text.find("excludes --tls-client-ca"), std::string::npos);
  p = parse({"collector", "--listen", "0.0.0.0:7443", "--db", "c.db", "--tls-cert", "s.pem", "--tls-key", "s.key",
             "--tls-client-ca", "ca.pem"});
  ASSERT_TRUE(std::holds_alternative<CollectorArgs>(p));
  const auto& c = std::get<CollectorArgs>(p);
  EXPECT_EQ(c.listen, "0.0.0.0:7443");
  EXPECT_EQ(c.db, "c.db");
  EXPECT_EQ(c.tls_client_ca, "ca.pem");
}

TEST(AuditCli, HelpShowsTheDeepestCommand) {
  auto p = parse({"audit", "push", "--help"});
  ASSERT_TRUE(std::holds_alternative<Exit>(p));
  EXPECT_EQ(std::get<Exit>(p).status, 0);
  EXPECT_NE(std::get<Exit>(p).text.find("--endpoint"), std::string::npos) << std::get<Exit>(p).text;
  p = parse({"collector", "--help"});
  EXPECT_NE(std::get<Exit>(p).text.find("--tls-client-ca"), std::string::npos);
  p = parse({"--help"});
  EXPECT_NE(std::get<Exit>(p).text.find("collector"), std::string::npos);
}

}  // namespace
}  // namespace agentcage::cli
