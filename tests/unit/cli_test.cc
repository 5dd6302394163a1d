// SPDX-License-Identifier: Apache-2.0
#include "cli.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace agentcage::cli
