// SPDX-License-Identifier: Apache-2.0
// Only what is meant reaches the agent: the environment. With credentials in the caller's
// environment, `agentcage run --profile default -- env` shows the ordinary variables and
// no credential (by name, or a password inside a URL value), names the removed ones (never their values) on stderr, and lets one
// through with --pass-env; in-process as root and through agentcaged as user nobody, with
// the same environment on both paths.
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "support/daemon_process.h"
#include "support/subprocess.h"

namespace agentcage {
namespace {

using testing::run;

// Distinctive values, so their absence from every output means something.
constexpr const char* kAwsValue = "aws-secret-value-4f1c";
constexpr const char* kGhValue = "github-token-value-9b2e";
constexpr const char* kProxyPassword = "proxy-pw-77d1";  // in a value, under a name no pattern denies

class AgentEnvironment : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: loads BPF programs, creates cgroups, runs as nobody";
    dir_ = testing::temp_dir();
    chmod(dir_.c_str(), 0755);
    ws_ = dir_ + "/ws";
    ASSERT_EQ(mkdir(ws_.c_str(), 0755), 0);
    passwd* pw = getpwnam("nobody");
    ASSERT_NE(pw, nullptr);
    ASSERT_EQ(chown(ws_.c_str(), pw->pw_uid, pw->pw_gid), 0);
  }

  // The caller's environment is exactly this (env -i), so both paths start from the same
  // one whoever the caller is. HOME is nobody's, which exists nowhere: the profile's
  // ~/ deny entries then name nothing either caller could reach.
  static std::vector<std::string> with_env(const std::vector<std::string>& argv) {
    std::vector<std::string> out{"/usr/bin/env",
                                 "-i",
                                 "PATH=/usr/local/bin:/usr/bin:/bin",
                                 "HOME=/nonexistent",
                                 "LANG=C.UTF-8",
                                 std::string("AWS_SECRET_ACCESS_KEY=") + kAwsValue,
                                 std::string("GITHUB_TOKEN=") + kGhValue,
                                 std::string("https_proxy=http://alice:") + kProxyPassword + "@proxy.invalid:3128",
                                 "http_proxy=http://proxy.invalid:3128",
                                 "FOO=z"};
    out.insert(out.end(), argv.begin(), argv.end());
    return out;
  }

  std::vector<std::string> in_process(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> a{AGENTCAGE_BIN, "run", "--no-daemon", "--audit-db", dir_ + "/audit.db"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  std::vector<std::string> via_daemon(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> a{AGENTCAGE_BIN, "run", "--socket", d_.socket()};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }

  testing::ProcResult env_in_sandbox(std::vector<std::string> run_argv, bool nobody) {
    for (const char* s : {"--profile", "default", "--workspace"}) run_argv.push_back(s);
    run_argv.push_back(ws_);
    run_argv.push_back("--");
    run_argv.push_back("env");
    auto argv = with_env(run_argv);
    return run(nobody ? testing::as_nobody(argv) : argv);
  }

  static std::vector<std::string> sorted_lines(const std::string& text) {
    auto l = testing::lines(text);
    std::sort(l.begin(), l.end());
    return l;
  }

  static void expect_filtered(const testing::ProcResult& r, const char* path) {
    SCOPED_TRACE(path);
    ASSERT_EQ(r.status, 0) << r.err;
    auto env = sorted_lines(r.out);
    auto has = [&](const std::string& line) { return std::count(env.begin(), env.end(), line) == 1; };
    EXPECT_TRUE(has("FOO=z")) << r.out;  // default inherits everything the deny list spares
    EXPECT_TRUE(has("PATH=/usr/local/bin:/usr/bin:/bin")) << r.out;
    EXPECT_TRUE(has("LANG=C.UTF-8")) << r.out;
    EXPECT_TRUE(has("http_proxy=http://proxy.invalid:3128")) << r.out;  // no password: kept
    EXPECT_EQ(r.out.find("https_proxy"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find(kProxyPassword), std::string::npos) << r.out;
    EXPECT_EQ(r.err.find(kProxyPassword), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("kept out https_proxy (a URL with a password or token in the value"), std::string::npos)
        << r.err;
    EXPECT_EQ(r.out.find("AWS_SECRET_ACCESS_KEY"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("GITHUB_TOKEN"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find(kAwsValue), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find(kGhValue), std::string::npos) << r.out;
    // One line names what was kept out; values appear nowhere.
    bool named = false;
    for (const auto& l : testing::lines(r.err))
      named |= l.find("environment: kept out AWS_SECRET_ACCESS_KEY, GITHUB_TOKEN (") != std::string::npos;
    EXPECT_TRUE(named) << r.err;
    EXPECT_EQ(r.err.find(kAwsValue), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find(kGhValue), std::string::npos) << r.err;
  }

  static void expect_passed(const testing::ProcResult& r, const char* path) {
    SCOPED_TRACE(path);
    ASSERT_EQ(r.status, 0) << r.err;
    auto env = sorted_lines(r.out);
    EXPECT_EQ(std::count(env.begin(), env.end(), std::string("GITHUB_TOKEN=") + kGhValue), 1) << r.out;
    EXPECT_EQ(r.out.find(kAwsValue), std::string::npos) << r.out;  // only the one named
    EXPECT_NE(r.err.find("environment: kept out AWS_SECRET_ACCESS_KEY ("), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("passed although denied (pass/--pass-env): GITHUB_TOKEN"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find(kGhValue), std::string::npos) << r.err;
  }

  std::string dir_, ws_;
  testing::DaemonProcess d_;
};

TEST_F(AgentEnvironment, DefaultProfileKeepsCredentialsOutInProcess) {
  expect_filtered(env_in_sandbox(in_process(), false), "in-process, root");
}

TEST_F(AgentEnvironment, DefaultProfileKeepsCredentialsOutThroughTheDaemonForNobody) {
  ASSERT_EQ(d_.start(), "");
  auto r = env_in_sandbox(via_daemon(), true);
  expect_filtered(r, "agentcaged, nobody");
  EXPECT_EQ(d_.stop(), 0) << d_.log();
}

TEST_F(AgentEnvironment, PassEnvLetsTheNamedVariableThroughOnBothPaths) {
  expect_passed(env_in_sandbox(in_process({"--pass-env", "GITHUB_TOKEN"}), false), "in-process, root");
  ASSERT_EQ(d_.start(), "");
  expect_passed(env_in_sandbox(via_daemon({"--pass-env", "GITHUB_TOKEN"}), true), "agentcaged, nobody");
  EXPECT_EQ(d_.stop(), 0) << d_.log();
}

// One plan, two launchers: the command sees the same variables whichever path spawned it.
TEST_F(AgentEnvironment, BothPathsGiveTheSameEnvironment) {
  auto local = env_in_sandbox(in_process(), false);
  ASSERT_EQ(d_.start(), "");
  auto daemon = env_in_sandbox(via_daemon(), true);
  EXPECT_EQ(d_.stop(), 0) << d_.log();
  ASSERT_EQ(local.status, 0) << local.err;
  ASSERT_EQ(daemon.status, 0) << daemon.err;
  EXPECT_EQ(sorted_lines(local.out), sorted_lines(daemon.out)) << local.out << "\n---\n" << daemon.out;
  EXPECT_EQ(sorted_lines(local.out),
            (std::vector<std::string>{"FOO=z", "HOME=/nonexistent", "LANG=C.UTF-8", "PATH=/usr/local/bin:/usr/bin:/bin",
                                      "http_proxy=http://proxy.invalid:3128"}));
}

// Without --profile nothing is filtered (a run that is contained and recorded but not
// confined could read ~/.aws anyway), and nothing is reported.
TEST_F(AgentEnvironment, WithoutAProfileTheWholeEnvironmentIsInherited) {
  auto r = run(with_env(in_process({"--", "env"})));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find(std::string("AWS_SECRET_ACCESS_KEY=") + kAwsValue), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("FOO=z"), std::string::npos) << r.out;
  EXPECT_EQ(r.err.find("environment:"), std::string::npos) << r.err;
}

// A profile's `set` and `inherit: none`, end to end: the command is found in the PATH
// the profile gives it, not the caller's.
TEST_F(AgentEnvironment, ProfileSetAndInheritNoneReachTheCommand) {
  std::string prof = dir_ + "/p.yaml";
  {
    FILE* f = fopen(prof.c_str(), "w");
    ASSERT_NE(f, nullptr);
    fputs("extends: default\nenvironment:\n  inherit: none\n  allow: [FOO]\n  set: {PATH: /usr/bin, GREETING: hi}\n", f);
    fclose(f);
  }
  auto argv = in_process({"--profile", prof, "--workspace", ws_, "--", "env"});
  auto r = run(with_env(argv));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(sorted_lines(r.out), (std::vector<std::string>{"FOO=z", "GREETING=hi", "PATH=/usr/bin"})) << r.out;
  EXPECT_NE(r.err.find("kept out AWS_SECRET_ACCESS_KEY, GITHUB_TOKEN"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("not inherited (inherit: none, not in environment.allow): PATH, HOME, LANG"), std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace agentcage
