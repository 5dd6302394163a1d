// SPDX-License-Identifier: Apache-2.0
// The command's environment: patterns, inherit modes, deny over allow, pass and --pass-env
// over deny, set last; and what the shipped profiles keep out of a realistic environment.
#include "core/policy/env_policy.h"

#include <gtest/gtest.h>

#include "core/policy/profile.h"
#include "core/sandbox/sandbox_policy.h"

namespace agentcage::core {
namespace {

using Env = v1::Profile::Environment;
using Names = std::vector<std::string>;

Env policy(Env::Inherit inherit, Names allow = {}, Names deny = {}, Names pass = {}) {
  Env e;
  e.set_inherit(inherit);
  for (const auto& a : allow) e.add_allow(a);
  for (const auto& d : deny) e.add_deny(d);
  for (const auto& p : pass) e.add_pass(p);
  return e;
}

const Names kCaller = {"PATH=/usr/bin:/bin", "HOME=/home/u", "LC_ALL=C.UTF-8", "TERM=xterm",
                       "FOO=z", "AWS_SECRET_ACCESS_KEY=aws-value", "GITHUB_TOKEN=gh-value", "EDITOR=vi"};

TEST(EnvPattern, StarAndQuestionMarkMatchWholeNamesCaseSensitively) {
  EXPECT_TRUE(env_pattern_matches("AWS_*", "AWS_SECRET_ACCESS_KEY"));
  EXPECT_TRUE(env_pattern_matches("AWS_*", "AWS_"));
  EXPECT_FALSE(env_pattern_matches("AWS_*", "XAWS_KEY"));
  EXPECT_TRUE(env_pattern_matches("*_TOKEN", "GITHUB_TOKEN"));
  EXPECT_TRUE(env_pattern_matches("*_TOKEN", "A_TOKEN_TOKEN"));
  EXPECT_FALSE(env_pattern_matches("*_TOKEN", "TOKENIZERS_PARALLELISM"));
  EXPECT_FALSE(env_pattern_matches("*_TOKEN", "GITHUB_TOKENS"));
  EXPECT_TRUE(env_pattern_matches("*SECRET*", "SECRET"));
  EXPECT_TRUE(env_pattern_matches("*SECRET*", "MY_SECRET_KEY"));
  EXPECT_TRUE(env_pattern_matches("LC_?", "LC_X"));
  EXPECT_FALSE(env_pattern_matches("LC_?", "LC_XY"));
  EXPECT_TRUE(env_pattern_matches("*", ""));
  EXPECT_TRUE(env_pattern_matches("FOO", "FOO"));
  EXPECT_FALSE(env_pattern_matches("FOO", "FOOD"));
  EXPECT_FALSE(env_pattern_matches("github_token", "GITHUB_TOKEN"));
  // A pattern written to blow up a naive backtracking matcher still answers at once.
  EXPECT_FALSE(env_pattern_matches("*A*A*A*A*A*A*A*A*A*A*B", std::string(2000, 'A')));
}

TEST(EnvPattern, NamesAndPatternsAreValidated) {
  for (const char* ok : {"A", "_", "PATH", "lower_case", "X1"}) EXPECT_TRUE(valid_env_name(ok)) << ok;
  for (const char* bad : {"", "1A", "A-B", "A=B", "A B", "A*", "Ä"}) EXPECT_FALSE(valid_env_name(bad)) << bad;
  for (const char* ok : {"*", "*_TOKEN", "AWS_*", "LC_?", "A"}) EXPECT_TRUE(valid_env_pattern(ok)) << ok;
  for (const char* bad : {"", "1*", "A-*", "[A]*", "A=*"}) EXPECT_FALSE(valid_env_pattern(bad)) << bad;
}

TEST(EnvPlan, InheritAllKeepsEverythingButWhatDenyMatches) {
  auto plan = plan_environment(policy(Env::INHERIT_ALL, {}, {"AWS_*", "*_TOKEN"}), kCaller, {});
  EXPECT_EQ(plan.env, (Names{"PATH=/usr/bin:/bin", "HOME=/home/u", "LC_ALL=C.UTF-8", "TERM=xterm", "FOO=z", "EDITOR=vi"}));
  EXPECT_EQ(plan.denied, (Names{"AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN"}));
  EXPECT_TRUE(plan.not_inherited.empty());
}

TEST(EnvPlan, UnspecifiedInheritIsAllAndNoSectionKeepsTheWholeEnvironment) {
  auto plan = plan_environment(Env(), kCaller, {});
  EXPECT_EQ(plan.env, kCaller);
  EXPECT_TRUE(plan.denied.empty());
  EXPECT_EQ(plan.inherit, Env::INHERIT_ALL);
  EXPECT_EQ(env_plan_summary(plan), "");
}

TEST(EnvPlan, InheritBaseKeepsTheBaseSetAndWhatAllowNames) {
  auto plan = plan_environment(policy(Env::INHERIT_BASE, {"EDIT*"}), kCaller, {});
  EXPECT_EQ(plan.env, (Names{"PATH=/usr/bin:/bin", "HOME=/home/u", "LC_ALL=C.UTF-8", "TERM=xterm", "EDITOR=vi"}));
  EXPECT_EQ(plan.not_inherited, (Names{"FOO", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN"}));
  EXPECT_TRUE(plan.denied.empty());
}

TEST(EnvPlan, InheritNoneKeepsOnlyWhatAllowPassAndSetName) {
  Env e = policy(Env::INHERIT_NONE, {"FOO"}, {}, {"GITHUB_TOKEN"});
  (*e.mutable_set())["PATH"] = "/opt/bin";
  auto plan = plan_environment(e, kCaller, {});
  EXPECT_EQ(plan.env, (Names{"FOO=z", "GITHUB_TOKEN=gh-value", "PATH=/opt/bin"}));
  EXPECT_EQ(plan.not_inherited, (Names{"PATH", "HOME", "LC_ALL", "TERM", "AWS_SECRET_ACCESS_KEY", "EDITOR"}));
}

TEST(EnvPlan, DenyWinsOverAllowAndInherit) {
  auto plan = plan_environment(policy(Env::INHERIT_BASE, {"GITHUB_TOKEN", "FOO"}, {"*_TOKEN", "PATH"}), kCaller, {});
  EXPECT_EQ(plan.env, (Names{"HOME=/home/u", "LC_ALL=C.UTF-8", "TERM=xterm", "FOO=z"}));
  EXPECT_EQ(plan.denied, (Names{"PATH", "GITHUB_TOKEN"}));
}

TEST(EnvPlan, PassAndPassEnvWinOverDenyAndAreReported) {
  Env e = policy(Env::INHERIT_ALL, {}, {"AWS_*", "*_TOKEN"}, {"AWS_SECRET_ACCESS_KEY"});
  auto plan = plan_environment(e, kCaller, {"GITHUB_TOKEN", "NOT_SET_ANYWHERE"});
  EXPECT_EQ(plan.env, kCaller);
  EXPECT_TRUE(plan.denied.empty());
  EXPECT_EQ(plan.passed, (Names{"AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN"}));
  // --pass-env lets a variable through under inherit: none as well: it names it.
  auto none = plan_environment(policy(Env::INHERIT_NONE), kCaller, {"FOO"});
  EXPECT_EQ(none.env, (Names{"FOO=z"}));
  EXPECT_TRUE(none.passed.empty());  // not denied, only not inherited
}

TEST(EnvPlan, SetReplacesInPlaceAddsTheRestInNameOrderAndIsNotFiltered) {
  Env e = policy(Env::INHERIT_ALL, {}, {"*_TOKEN"});
  (*e.mutable_set())["TERM"] = "dumb";
  (*e.mutable_set())["ZED"] = "1";
  (*e.mutable_set())["CI_TOKEN"] = "fixed";  // the profile's own value: deny filters the caller's only
  (*e.mutable_set())["EMPTY"] = "";
  auto plan = plan_environment(e, {"TERM=xterm", "CI_TOKEN=callers", "A=1"}, {});
  EXPECT_EQ(plan.env, (Names{"TERM=dumb", "A=1", "CI_TOKEN=fixed", "EMPTY=", "ZED=1"}));
  EXPECT_EQ(plan.denied, (Names{"CI_TOKEN"}));
}

TEST(EnvPlan, OnlyTheFirstOfDuplicateNamesCountsAndOddEntriesAreFilteredByName) {
  auto plan = plan_environment(policy(Env::INHERIT_ALL, {}, {"SECRET"}),
                               {"A=1", "A=2", "SECRET=s", "NOEQUALS", "SECRET", "=weird"}, {});
  EXPECT_EQ(plan.env, (Names{"A=1", "NOEQUALS", "=weird"}));
  EXPECT_EQ(plan.denied, (Names{"SECRET"}));
}

TEST(EnvPlan, SummaryNamesWhatWasKeptOutNeverValues) {
  Env e = policy(Env::INHERIT_BASE, {}, {"AWS_*", "*_TOKEN"}, {});
  auto plan = plan_environment(e, kCaller, {"GITHUB_TOKEN"});
  std::string line = env_plan_summary(plan);
  EXPECT_EQ(line,
            "environment: kept out AWS_SECRET_ACCESS_KEY (environment.deny; --pass-env NAME lets one through); "
            "not inherited (inherit: base, not in environment.allow): FOO, EDITOR; passed although denied "
            "(pass/--pass-env): GITHUB_TOKEN");
  EXPECT_EQ(line.find("value"), std::string::npos);
  // A name may hold any byte but '=': it is escaped, so it cannot forge a log line.
  auto odd = plan_environment(policy(Env::INHERIT_ALL, {}, {"*"}), {"BAD\nagentcage: fake=1"}, {});
  EXPECT_EQ(env_plan_summary(odd).find('\n'), std::string::npos) << env_plan_summary(odd);
}

TEST(EnvPlan, UrlUserInformationIsACredentialWhereverItAppears) {
  EXPECT_TRUE(has_url_credentials("http://u:p@proxy:3128"));
  EXPECT_TRUE(has_url_credentials("https://TOKEN@github.com/o/r.git"));        // a token as the user name
  EXPECT_TRUE(has_url_credentials("mongodb+srv://app:pw@c0.example.net/db"));  // scheme with + and .
  EXPECT_TRUE(has_url_credentials("https://pypi.org/simple https://u:p@mirror/simple"));  // the second URL
  EXPECT_TRUE(has_url_credentials("postgres://u:p%40ss@db/x"));                // an escaped @ in the password
  EXPECT_FALSE(has_url_credentials("http://proxy:3128"));
  EXPECT_FALSE(has_url_credentials("https://example.com/users/@me"));   // '@' in the path
  EXPECT_FALSE(has_url_credentials("https://example.com/?to=a@b.c"));   // '@' in the query
  EXPECT_FALSE(has_url_credentials("https://@host/"));                  // empty user information
  EXPECT_FALSE(has_url_credentials("alice@example.com"));               // no URL at all
  EXPECT_FALSE(has_url_credentials("://u:p@host"));                     // no scheme
  EXPECT_FALSE(has_url_credentials(""));

  Env e = policy(Env::INHERIT_ALL);
  const Names caller = {"PROXY=http://u:p@h:1", "PLAIN=http://h:1", "NOVALUE"};
  EXPECT_TRUE(plan_environment(e, caller, {}).url_credentials.empty());  // off unless the profile says so
  e.set_deny_url_credentials(true);
  auto plan = plan_environment(e, caller, {});
  EXPECT_EQ(plan.url_credentials, (Names{"PROXY"}));
  EXPECT_EQ(plan.env, (Names{"PLAIN=http://h:1", "NOVALUE"}));
  auto passed = plan_environment(e, caller, {"PROXY"});
  EXPECT_TRUE(passed.url_credentials.empty());
  EXPECT_EQ(passed.env.front(), "PROXY=http://u:p@h:1");
}

// The shipped base.yaml (through default) on a realistic caller: credentials out by
// name and by convention, ordinary variables and look-alikes in.
TEST(EnvPlan, ShippedDefaultKeepsCredentialsOutAndTheRestIn) {
  auto r = resolve_profile(std::string(AGENTCAGE_SOURCE_DIR) + "/profiles/default.yaml",
                           ProfileVars{"/w", "/h", "u", "/t"}, {});
  ASSERT_TRUE(r) << r.error().message();
  const Names secrets = {"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID", "GOOGLE_APPLICATION_CREDENTIALS",
                         "AZURE_CLIENT_SECRET", "GITHUB_TOKEN", "GH_TOKEN", "GITLAB_TOKEN", "NPM_TOKEN",
                         "NODE_AUTH_TOKEN", "PYPI_TOKEN", "TWINE_PASSWORD", "DOCKER_AUTH_CONFIG", "SSH_AUTH_SOCK",
                         "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "STRIPE_API_KEY", "MY_SERVICE_SECRET", "PGPASSWORD",
                         "MYSQL_PWD", "SLACK_BOT_TOKEN", "HF_TOKEN", "VAULT_TOKEN", "GIT_ASKPASS", "DATABASE_URL",
                         "CI_REGISTRY_PASSWORD", "SENTRY_AUTH_TOKEN", "KUBECONFIG", "GIT_CONFIG_PARAMETERS",
                         "GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_0", "GIT_CONFIG_VALUE_0"};
  const Names ordinary = {"PATH", "HOME", "USER", "LANG", "LC_ALL", "TERM", "PWD", "OLDPWD", "SHELL", "FOO", "EDITOR",
                          "GOPATH", "CARGO_HOME", "VIRTUAL_ENV", "JAVA_HOME", "TOKENIZERS_PARALLELISM",
                          "LD_LIBRARY_PATH", "HTTPS_PROXY", "CI", "GIT_AUTHOR_NAME", "PYTHONPATH"};
  Names caller;
  for (const auto& n : secrets) caller.push_back(n + "=v");
  for (const auto& n : ordinary) caller.push_back(n + "=v");
  auto plan = plan_environment(r->profile.environment(), caller, {});
  EXPECT_EQ(plan.denied, secrets);
  Names kept;
  for (const auto& e : plan.env) kept.push_back(e.substr(0, e.find('=')));
  EXPECT_EQ(kept, ordinary);
  EXPECT_TRUE(plan.url_credentials.empty());

  // A password in a value is kept out under any name; the same variable without one is not.
  auto urls = plan_environment(r->profile.environment(),
                               {"https_proxy=http://alice:pw@proxy.corp:3128", "REDIS_URL=redis://:s3cret@cache:6379/0",
                                "GIT_REMOTE=https://ghp_abc123@github.com/o/r.git", "http_proxy=http://proxy.corp:3128",
                                "GIT_CONFIG_GLOBAL=/h/.gitconfig"},
                               {"GIT_REMOTE"});
  EXPECT_EQ(urls.url_credentials, (Names{"https_proxy", "REDIS_URL"}));
  EXPECT_EQ(urls.env, (Names{"GIT_REMOTE=https://ghp_abc123@github.com/o/r.git", "http_proxy=http://proxy.corp:3128",
                             "GIT_CONFIG_GLOBAL=/h/.gitconfig"}));
  EXPECT_NE(env_plan_summary(urls).find("kept out https_proxy, REDIS_URL (a URL with a password or token"),
            std::string::npos)
      << env_plan_summary(urls);
  EXPECT_EQ(env_plan_summary(urls).find("s3cret"), std::string::npos);

  // mcp-server runs third-party code: the base set only, and still no credential.
  auto m = resolve_profile(std::string(AGENTCAGE_SOURCE_DIR) + "/profiles/mcp-server.yaml",
                           ProfileVars{"/w", "/h", "u", "/t"}, {});
  ASSERT_TRUE(m) << m.error().message();
  auto mp = plan_environment(m->profile.environment(), caller, {});
  Names mkept;
  for (const auto& e : mp.env) mkept.push_back(e.substr(0, e.find('=')));
  EXPECT_EQ(mkept, (Names{"PATH", "HOME", "USER", "LANG", "LC_ALL", "TERM", "PWD", "SHELL"}));
  EXPECT_EQ(mp.denied, secrets);
}

// The plan is part of the compiled profile: computed once, from the caller's environment
// and --pass-env given in the context, so every launcher spawns the same one.
TEST(EnvPlan, CompileProfilePlansTheEnvironmentFromTheContext) {
  auto r = resolve_profile(std::string(AGENTCAGE_SOURCE_DIR) + "/profiles/default.yaml",
                           ProfileVars{"/w", "/h", "u", "/t"}, {});
  ASSERT_TRUE(r) << r.error().message();
  PolicyContext ctx;
  ctx.env = kCaller;
  ctx.pass_env = {"GITHUB_TOKEN"};
  auto c = compile_profile(r->profile, ctx);
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->env.env, (Names{"PATH=/usr/bin:/bin", "HOME=/home/u", "LC_ALL=C.UTF-8", "TERM=xterm", "FOO=z",
                               "GITHUB_TOKEN=gh-value", "EDITOR=vi"}));
  EXPECT_EQ(c->env.denied, (Names{"AWS_SECRET_ACCESS_KEY"}));
  EXPECT_EQ(c->env.passed, (Names{"GITHUB_TOKEN"}));
}

}  // namespace
}  // namespace agentcage::core
