// SPDX-License-Identifier: Apache-2.0
// Profiles: parsing, validation (one fixture per error, exact file:line:col), extends,
// defaults, YAML round trip, every shipped profile, and the `agentcage profile` commands.
#include "core/policy/profile.h"
#include "core/policy/net_policy.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>
#include <seccomp.h>

#include "cli.h"
#include "core/policy/profile_generate.h"
#include "core/policy/profile_seccomp.h"
#include "core/sandbox/sandbox_policy.h"
#include "support/subprocess.h"

namespace agentcage::core {
namespace {

namespace fs = std::filesystem;
using P = v1::Profile;

const std::string kFixtures = std::string(AGENTCAGE_SOURCE_DIR) + "/tests/unit/fixtures/profiles";
const std::string kShipped = std::string(AGENTCAGE_SOURCE_DIR) + "/profiles";

ProfileVars test_vars() { return ProfileVars{"/w", "/h", "u", "/t"}; }

std::string fixture(const std::string& name) { return kFixtures + "/" + name + ".yaml"; }

// Loads with no search path at all, so only the fixtures directory (next to the file) counts.
Result<LoadedProfile> load_fixture(const std::string& name, const ProfileVars& vars = test_vars()) {
  return resolve_profile(fixture(name), vars, {});
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

std::vector<std::string> repeated(const google::protobuf::RepeatedPtrField<std::string>& r) {
  return {r.begin(), r.end()};
}

// --- one fixture per error: the exact position and what was expected ---

struct ErrorCase {
  const char* fixture;
  int line, column;
  const char* message;  // a fragment of the message after "file:line:col: "
};

void PrintTo(const ErrorCase& c, std::ostream* os) { *os << c.fixture << ".yaml:" << c.line << ":" << c.column; }

class ProfileError : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(ProfileError, ReportsFileLineColumnAndWhatWasExpected) {
  const ErrorCase& c = GetParam();
  auto r = load_fixture(c.fixture);
  ASSERT_FALSE(r.has_value()) << c.fixture << " loaded but should not have";
  std::string text = r.error().message();
  std::string where = fmt::format("{}:{}:{}: ", fixture(c.fixture), c.line, c.column);
  EXPECT_EQ(text.rfind(where, 0), 0u) << "expected to start with " << where << "\ngot: " << text;
  EXPECT_NE(text.find(c.message), std::string::npos) << "expected '" << c.message << "' in: " << text;
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, ProfileError,
    ::testing::Values(
        ErrorCase{"unknown_key", 4, 3, "unknown key 'reed' in filesystem; did you mean 'read'? valid keys: read, write, exec, deny"},
        ErrorCase{"wrong_type", 4, 13, "process.max_pids: expected an integer greater than 0, got 'lots'"},
        ErrorCase{"quoted_int", 4, 13, "process.max_pids: expected an integer greater than 0, got '100'"},
        ErrorCase{"not_a_list", 4, 9, "filesystem.read: expected a list, got '/usr'"},
        ErrorCase{"null_list", 4, 3, "filesystem.read: expected a list (write [] for none), got nothing"},
        ErrorCase{"bool_yes", 4, 16, "filesystem.private_tmp: expected true or false, got 'yes'"},
        ErrorCase{"bad_cidr", 5, 13, "network.rules[0].cidr: CIDR '10.0.0.0/33': prefix length '33' is not a number in 0-32"},
        ErrorCase{"bad_cidr_address", 5, 13, "'10.0.0' is not an IPv4 or IPv6 address"},
        ErrorCase{"cidr_host_bits", 5, 13, "CIDR '10.1.2.3/8': address has bits set beyond the /8 prefix; did you mean 10.0.0.0/8?"},
        ErrorCase{"rule_without_cidr", 5, 7, "network.rules[0]: a network rule needs 'cidr'"},
        ErrorCase{"port_zero", 6, 15, "network.rules[0].ports[0]: port 0 is outside 1-65535"},
        ErrorCase{"port_too_big", 6, 20, "network.rules[0].ports[0].lo: port 70000 is outside 1-65535"},
        ErrorCase{"port_range_reversed", 6, 15, "network.rules[0].ports[0]: port range 9000-8000 is reversed"},
        ErrorCase{"relative_path", 5, 7, "filesystem.write[0]: 'build/out' is not an absolute path"},
        ErrorCase{"dotdot_path", 5, 7, "filesystem.read[0]: '/usr/../etc' contains '..'"},
        ErrorCase{"unknown_variable", 5, 7,
                  "filesystem.write[0]: unknown variable ${WORKSPCE}; known: ${WORKSPACE}, ${HOME}, ${USER}, ${TMPDIR}"},
        ErrorCase{"tilde_user", 5, 7, "~user is not supported"},
        ErrorCase{"unknown_syscall", 4, 18, "syscalls.deny[1]: unknown syscall 'frobnicate'"},
        ErrorCase{"bad_errno", 4, 15, "syscalls.errno_name: unknown errno name 'EPERMS'"},
        ErrorCase{"bad_account", 4, 9, "process.user: 'Root User' is not a user/group name or numeric id"},
        ErrorCase{"bad_enum", 3, 7, "mode: 'enforcing' is not one of: enforce, audit"},
        ErrorCase{"bad_namespace", 4, 23, "process.namespaces[1]: 'network' is not one of: user, mount, pid, net, ipc, uts"},
        ErrorCase{"bad_yaml", 5, 8, "YAML syntax error: end of sequence flow not found"},
        ErrorCase{"duplicate_key", 4, 1, "duplicate key 'mode' (first at line 3)"},
        ErrorCase{"two_documents", 4, 1, "expected one YAML document; a second one (or text after the first)"},
        ErrorCase{"not_a_mapping", 3, 1, "a profile is a mapping with keys: name, description, extends, mode"},
        ErrorCase{"extends_missing", 3, 10, "extends: profile 'no-such-profile' not found; looked for:"},
        ErrorCase{"extends_self", 3, 10, "extends: cycle: "},
        ErrorCase{"seccomp_missing", 4, 17, "/fixtures/profiles/no-such.json): No such file or directory"},
        ErrorCase{"seccomp_bad_json", 4, 17, "oci/bad_syntax.json:5:3: invalid JSON: syntax error"},
        ErrorCase{"seccomp_bad_action", 4, 17, "bad_action.json: syscalls[1].action: unknown action \"SCMP_ACT_PERMIT\""},
        ErrorCase{"env_bad_name", 5, 5, "environment.set: '1BAD' is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"},
        ErrorCase{"env_bad_pattern", 4, 19, "environment.deny[1]: 'AWS-*' is not an environment variable name or pattern"},
        ErrorCase{"env_bad_inherit", 4, 12, "environment.inherit: 'some' is not one of: all, none, base"},
        ErrorCase{"env_set_list", 4, 8, "environment.set: expected a mapping of NAME: value, got a list"},
        ErrorCase{"env_set_value_list", 5, 8, "environment.set.A: expected a string value"},
        ErrorCase{"env_set_duplicate", 6, 5, "duplicate key 'environment.set.A' (first at line 5)"},
        ErrorCase{"env_set_nul", 4, 12, "environment.set.A: a value must not contain a NUL character"},
        ErrorCase{"env_unknown_key", 4, 3, "unknown key 'alow' in environment; did you mean 'allow'? valid keys: inherit, allow, deny, pass, set"},
        ErrorCase{"env_pass_pattern", 4, 24, "environment.pass[1]: '*_KEY' is not an environment variable name"}),
    [](const ::testing::TestParamInfo<ErrorCase>& p) { return std::string(p.param.fixture); });

TEST(Profile, EveryErrorInAFileIsReported) {
  auto r = load_fixture("many_errors");
  ASSERT_FALSE(r);
  std::string f = fixture("many_errors");
  std::vector<std::string> want = {
      f + ":3:7: mode: 'learn'",
      f + ":5:10: filesystem.read[0]: 'relative' is not an absolute path",
      f + ":8:13: network.rules[0].cidr: CIDR '300.0.0.0/8'",
      f + ":9:15: network.rules[0].ports[0]: port 0",
      f + ":11:13: process.max_pids: must be greater than 0",
  };
  auto got = testing::lines(r.error().context);
  ASSERT_EQ(got.size(), want.size()) << r.error().context;
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i].rfind(want[i], 0), 0u) << got[i];
}

TEST(Profile, UnsetVariableIsAnErrorNamingIt) {
  ProfileVars v = test_vars();
  v.workspace.clear();
  auto r = load_fixture("uses_workspace", v);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().context, fixture("uses_workspace") + ":5:7: filesystem.write[0]: ${WORKSPACE} is not set (pass --workspace DIR)");
  v = test_vars();
  v.home.clear();
  r = load_fixture("uses_workspace", v);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().context, fixture("uses_workspace") + ":6:7: filesystem.write[1]: ~ needs ${HOME} is not set");
}

// --- extends ---

TEST(Profile, ExtendsCycleNamesTheChain) {
  auto r = load_fixture("extends_cycle_a");
  ASSERT_FALSE(r);
  std::string a = fs::canonical(fixture("extends_cycle_a")).string();
  std::string b = fs::canonical(fixture("extends_cycle_b")).string();
  // Reported where the cycle closes: b's extends line.
  EXPECT_EQ(r.error().context,
            fmt::format("{}/extends_cycle_b.yaml:3:10: extends: cycle: {} -> {} -> {}", kFixtures, a, b, a));
}

TEST(Profile, MissingExtendsTargetListsWhereItLooked) {
  auto r = resolve_profile(fixture("extends_missing"), test_vars(), {"/nonexistent/dir"});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().context.find("\n  " + kFixtures + "/no-such-profile.yaml"), std::string::npos) << r.error().context;
  EXPECT_NE(r.error().context.find("\n  /nonexistent/dir/no-such-profile.yaml"), std::string::npos) << r.error().context;
}

TEST(Profile, ErrorInParentIsReportedInTheParentsFile) {
  auto r = load_fixture("extends_broken_parent");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().context.rfind(kFixtures + "/bad_enum.yaml:3:7: mode: 'enforcing'", 0), 0u) << r.error().context;
}

TEST(Profile, ExtendsMergeListsAppendScalarsOverrideMessagesMerge) {
  auto r = load_fixture("merge_child");
  ASSERT_TRUE(r) << r.error().message();
  const P& p = r->profile;
  EXPECT_EQ(p.name(), "merge_child");           // not inherited: the file's own stem
  EXPECT_FALSE(p.has_description());            // not inherited
  EXPECT_FALSE(p.has_extends());                // resolved
  EXPECT_EQ(p.mode(), P::MODE_AUDIT);           // inherited: the child does not set it
  EXPECT_EQ(repeated(p.filesystem().read()), (std::vector<std::string>{"/a", "/b", "/c"}));  // appended, deduplicated
  EXPECT_EQ(repeated(p.filesystem().deny()), (std::vector<std::string>{"/a/secret"}));
  ASSERT_TRUE(p.filesystem().has_private_tmp());
  EXPECT_FALSE(p.filesystem().private_tmp());   // an explicit false overrides the parent's true
  // The identical rule is kept once; the new one is appended with defaults filled in.
  ASSERT_EQ(p.network().rules_size(), 2);
  EXPECT_EQ(p.network().rules(0).cidr(), "10.0.0.0/8");
  ASSERT_EQ(p.network().rules(0).ports_size(), 2);
  EXPECT_EQ(p.network().rules(0).ports(1).lo(), 8000u);
  EXPECT_EQ(p.network().rules(0).ports(1).hi(), 8100u);
  EXPECT_EQ(p.network().rules(0).action(), P::ACTION_ALLOW);
  EXPECT_EQ(p.network().rules(1).cidr(), "::/0");
  EXPECT_EQ(p.network().rules(1).protocol(), P::PROTOCOL_ANY);
  EXPECT_EQ(p.network().rules(1).action(), P::ACTION_AUDIT);
  ASSERT_EQ(p.network().rules(1).ports_size(), 1);
  EXPECT_EQ(p.network().rules(1).ports(0).lo(), 22u);
  EXPECT_EQ(p.network().rules(1).ports(0).hi(), 22u);  // {lo: 22} is the single port 22
  EXPECT_EQ(p.process().max_pids(), 20u);        // overridden
  EXPECT_EQ(p.process().rlimits().nofile(), 100u);  // merged field by field
  EXPECT_EQ(p.process().rlimits().core(), 1u);
  ASSERT_EQ(p.process().namespaces_size(), 1);   // private_tmp is false: no mount namespace added
  EXPECT_EQ(p.process().namespaces(0), P::NAMESPACE_PID);
  EXPECT_EQ(p.actions().exec(), P::ACTION_KILL);
  EXPECT_EQ(p.actions().filesystem(), P::ACTION_DENY);
  // environment: inherit overridden, deny and pass appended (deduplicated), set merged by
  // name with the child's value winning.
  EXPECT_EQ(p.environment().inherit(), P::Environment::INHERIT_NONE);
  EXPECT_EQ(repeated(p.environment().deny()), (std::vector<std::string>{"A_*", "B"}));
  EXPECT_EQ(repeated(p.environment().pass()), (std::vector<std::string>{"A_KEY"}));
  ASSERT_EQ(p.environment().set_size(), 2);
  EXPECT_EQ(p.environment().set().at("X"), "parent");
  EXPECT_EQ(p.environment().set().at("Y"), "child");
  ASSERT_EQ(r->chain.size(), 2u);
  EXPECT_EQ(r->chain[0], fs::canonical(fixture("merge_parent")).string());
  EXPECT_EQ(r->chain[1], fs::canonical(fixture("merge_child")).string());
}

TEST(Profile, ExtendsByRelativePath) {
  auto r = load_fixture("merge_by_path");
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->profile.name(), "merge_by_path");
  EXPECT_EQ(r->profile.mode(), P::MODE_ENFORCE);
  EXPECT_EQ(repeated(r->profile.filesystem().read()), (std::vector<std::string>{"/a", "/b"}));
  // The parent's private_tmp adds the mount namespace it needs.
  EXPECT_EQ(r->profile.process().namespaces_size(), 2);
  EXPECT_EQ(r->profile.process().namespaces(1), P::NAMESPACE_MOUNT);
}

TEST(Profile, ExtendsByNameUsesOwnDirectoryThenSearchPath) {
  std::string lib = testing::temp_dir(), mine = testing::temp_dir();
  write_file(lib + "/layer.yaml", "filesystem: {read: [/from-search-path]}\n");
  write_file(mine + "/child.yaml", "extends: layer\n");
  auto r = resolve_profile(mine + "/child.yaml", test_vars(), {lib});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(repeated(r->profile.filesystem().read()), (std::vector<std::string>{"/from-search-path"}));
  // A profile of that name next to the extending file wins over the search path.
  write_file(mine + "/layer.yaml", "filesystem: {read: [/from-own-dir]}\n");
  r = resolve_profile(mine + "/child.yaml", test_vars(), {lib});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(repeated(r->profile.filesystem().read()), (std::vector<std::string>{"/from-own-dir"}));
  // A name is looked up on the search path; a path is read directly.
  r = resolve_profile("layer", test_vars(), {lib});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(repeated(r->profile.filesystem().read()), (std::vector<std::string>{"/from-search-path"}));
  EXPECT_FALSE(resolve_profile("../etc/passwd", test_vars(), {lib}).has_value());
  EXPECT_FALSE(resolve_profile("nope", test_vars(), {lib}).has_value());
}

// Issue 11 item 4: resolution reads only what the run may trust. A file or directory
// another user can write (or owns) is skipped when found by name, so the search goes on to
// a trusted one, and refused when named by path; a sticky /tmp-like directory passes.
TEST(Profile, ResolutionReadsOnlyWhatTheRunMayTrust) {
  std::string lib = testing::temp_dir(), open_dir = testing::temp_dir(), sticky = testing::temp_dir();
  write_file(lib + "/layer.yaml", "filesystem: {read: [/trusted]}\n");
  write_file(open_dir + "/layer.yaml", "filesystem: {read: [/planted]}\n");
  chmod(open_dir.c_str(), 0777);
  // Found first by name, in a directory anyone may write: skipped, said, the next one used.
  auto r = resolve_profile("layer", test_vars(), {open_dir, lib});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(repeated(r->profile.filesystem().read()), (std::vector<std::string>{"/trusted"}));
  ASSERT_FALSE(r->warnings.empty());
  EXPECT_NE(r->warnings[0].str().find("skipped: " + open_dir + " is writable by every user"), std::string::npos)
      << r->warnings[0].str();
  // Named by path there: refused, saying why.
  auto bad = resolve_profile(open_dir + "/layer.yaml", test_vars(), {});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("is writable by every user"), std::string::npos) << bad.error().message();
  // Only there: not found, and the message says what was skipped.
  auto none = resolve_profile("layer", test_vars(), {open_dir});
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message().find("skipped, not trusted"), std::string::npos) << none.error().message();
  // extends by name from a trusted file does not pick the untrusted one either.
  write_file(lib + "/child.yaml", "extends: layer\n");
  r = resolve_profile(lib + "/child.yaml", test_vars(), {open_dir});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(repeated(r->profile.filesystem().read()), (std::vector<std::string>{"/trusted"}));
  // A file anyone may write, in a trusted directory.
  write_file(lib + "/loose.yaml", "mode: audit\n");
  chmod((lib + "/loose.yaml").c_str(), 0666);
  EXPECT_FALSE(resolve_profile(lib + "/loose.yaml", test_vars(), {}));
  // A sticky world-writable directory (as /tmp) holding the caller's own 0644 file passes.
  chmod(sticky.c_str(), 01777);
  write_file(sticky + "/mine.yaml", "mode: audit\n");
  chmod((sticky + "/mine.yaml").c_str(), 0644);
  EXPECT_TRUE(resolve_profile(sticky + "/mine.yaml", test_vars(), {})) << "a sticky directory is not a hole";
  // Owned by someone else: for root, another user's file; for anyone else, a file of theirs
  // read for another uid's run.
  ProfileVars other = test_vars();
  std::string theirs = lib + "/theirs.yaml";
  write_file(theirs, "mode: audit\n");
  if (geteuid() == 0) {
    ASSERT_EQ(chown(theirs.c_str(), 65534, 65534), 0);
    other.uid = 0;
  } else {
    other.uid = getuid() + 1;
  }
  auto owned = resolve_profile(theirs, other, {});
  ASSERT_FALSE(owned);
  EXPECT_NE(owned.error().message().find("is owned by uid"), std::string::npos) << owned.error().message();
  EXPECT_EQ(untrusted_profile_path(kShipped, geteuid()), "") << "the shipped profiles must be trusted";
}

TEST(Profile, ExtendsDepthIsLimited) {
  std::string dir = testing::temp_dir();
  for (int i = 0; i < 20; ++i) write_file(fmt::format("{}/p{}.yaml", dir, i), fmt::format("extends: p{}\n", i + 1));
  write_file(dir + "/p20.yaml", "mode: audit\n");
  auto r = resolve_profile(dir + "/p0.yaml", test_vars(), {});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().context.find(":1:10: extends: chain deeper than 16 profiles"), std::string::npos) << r.error().context;
  r = resolve_profile(dir + "/p5.yaml", test_vars(), {});  // 15 levels: fine
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->profile.mode(), P::MODE_AUDIT);
  EXPECT_EQ(r->chain.size(), 16u);
}

// --- values ---

TEST(Profile, EmptyProfileGetsExplicitFailClosedDefaults) {
  std::string dir = testing::temp_dir();
  write_file(dir + "/empty.yaml", "{}\n");
  auto r = resolve_profile(dir + "/empty.yaml", test_vars(), {});
  ASSERT_TRUE(r) << r.error().message();
  const P& p = r->profile;
  EXPECT_EQ(p.name(), "empty");
  EXPECT_EQ(p.mode(), P::MODE_ENFORCE);
  EXPECT_EQ(p.actions().filesystem(), P::ACTION_DENY);
  EXPECT_EQ(p.actions().network(), P::ACTION_DENY);
  EXPECT_EQ(p.actions().exec(), P::ACTION_DENY);
  EXPECT_EQ(p.syscalls().action(), P::SYSCALL_ACTION_ERRNO);
  EXPECT_EQ(p.syscalls().errno_name(), "EPERM");
  EXPECT_EQ(p.network().rules_size(), 0);
  // No environment section: the caller's whole environment, as without a profile.
  EXPECT_EQ(p.environment().inherit(), P::Environment::INHERIT_ALL);
  EXPECT_EQ(p.environment().deny_size(), 0);
}

TEST(Profile, EnvironmentAllowThatADenyCoversIsAWarningPointingToPass) {
  std::string dir = testing::temp_dir();
  write_file(dir + "/p.yaml",
             "environment:\n  deny: [\"*_TOKEN\"]\n  allow: [GITHUB_TOKEN, EDITOR, \"X_*\"]\n  pass: [NPM_TOKEN]\n");
  auto r = resolve_profile(dir + "/p.yaml", test_vars(), {});
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_EQ(r->warnings.size(), 1u);
  EXPECT_EQ(r->warnings[0].str(),
            dir + "/p.yaml:3:11: warning: environment.allow[0]: 'GITHUB_TOKEN' is covered by environment.deny entry "
                  "'*_TOKEN'; deny wins, so it lets nothing in (to let a denied variable through, name it in "
                  "environment.pass)");
}

TEST(Profile, VariablesAndTildeExpandAndPathsAreNormalised) {
  auto r = load_fixture("full");
  ASSERT_TRUE(r) << r.error().message();
  const P& p = r->profile;
  EXPECT_EQ(repeated(p.filesystem().read()), (std::vector<std::string>{"/usr", "/h/docs"}));
  EXPECT_EQ(repeated(p.filesystem().write()), (std::vector<std::string>{"/w", "/t/x"}));
  EXPECT_EQ(repeated(p.filesystem().deny()), (std::vector<std::string>{"/h/.ssh"}));
  EXPECT_EQ(repeated(p.filesystem().deny_write()), (std::vector<std::string>{"/w/.git/hooks"}));
  // Relative to the profile's own directory, stored absolute.
  EXPECT_EQ(p.syscalls().seccomp_json(), kFixtures + "/oci/ok.json");
  EXPECT_EQ(p.process().user(), "nobody");
  EXPECT_EQ(p.process().group(), "65534");
  EXPECT_EQ(p.process().rlimits().as(), 5u);
  ASSERT_EQ(p.network().rules(0).ports_size(), 3);
  EXPECT_EQ(p.network().rules(0).ports(2).lo(), 22u);
  EXPECT_EQ(p.network().rules(0).ports(2).hi(), 23u);
  EXPECT_EQ(p.network().rules(0).comment(), "yes");  // a string field keeps YAML 1.1 "booleans" as text

  std::string dir = testing::temp_dir();
  write_file(dir + "/n.yaml", "filesystem: {read: [\"//usr//./lib/\", \"${WORKSPACE}/./src/\"]}\n");
  auto n = resolve_profile(dir + "/n.yaml", test_vars(), {});
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_EQ(repeated(n->profile.filesystem().read()), (std::vector<std::string>{"/usr/lib", "/w/src"}));
}

TEST(Profile, DenyThatSwallowsAnAllowEntryIsAWarningNotAnError) {
  auto r = load_fixture("overlap");
  ASSERT_TRUE(r) << r.error().message();
  std::vector<std::string> got;
  for (const auto& w : r->warnings) got.push_back(w.str());
  std::string f = fixture("overlap");
  EXPECT_EQ(got, (std::vector<std::string>{
                     f + ":10:11: warning: syscalls.allow[0]: 'ptrace' is also denied; deny wins",
                     f + ":6:10: warning: filesystem.deny[0]: '/data' covers filesystem.write entry '/data/project'; "
                         "deny wins, so that entry grants nothing",
                     f + ":7:16: warning: filesystem.deny_write[0]: '/srv/cache' is also in filesystem.write; "
                         "deny_write wins, so that entry grants no writes",
                 }));
  // A deny inside an allowed tree (/srv/cache/keys in /srv/cache) is the point: no warning.
  for (const auto& w : got) EXPECT_EQ(w.find("/srv/cache/keys"), std::string::npos) << w;
}

// Large profiles and flag sets are checked in near-linear time, with every overlap still
// found (the fuzzing review: 700 KB took 7 s, 40 000 --allow-net rules 78 s, from checks
// that compared every entry with every other). The alarm is a stall guard with a margin of
// tens over what this takes now, not a benchmark.
TEST(Profile, LargeProfilesAndFlagSetsAreCheckedWithEveryOverlapFound) {
  alarm(60);
  std::string dir = testing::temp_dir();
  std::string y = "filesystem:\n  read:\n";
  for (int i = 0; i < 10000; ++i) y += fmt::format("  - /srv/r{}/sub\n", i);
  y += "  deny:\n";
  for (int i = 0; i < 10000; ++i) y += i % 500 == 0 ? fmt::format("  - /srv/r{}\n", i) : fmt::format("  - /srv/d{}\n", i);
  y += "  - /srv/r1\n";  // covers /srv/r1/sub, not /srv/r10/sub
  y += "environment:\n  allow:\n";
  for (int i = 0; i < 20000; ++i) y += fmt::format("  - VAR_{}\n", i);
  y += "  deny:\n";
  for (int i = 0; i < 20000; ++i) y += fmt::format("  - \"DENY{}_*\"\n", i);
  y += "  - \"VAR_1999?\"\n  - \"*_77\"\n  - \"*AR_5*\"\n";
  write_file(dir + "/big.yaml", y);
  ASSERT_GT(y.size(), 700'000u);
  auto r = resolve_profile(dir + "/big.yaml", test_vars(), {});
  ASSERT_TRUE(r) << r.error().message();
  size_t fs_warnings = 0, env_warnings = 0;
  std::set<std::string> env_named;
  for (const auto& w : r->warnings) {
    if (w.message.find("covers filesystem.read entry") != std::string::npos) ++fs_warnings;
    if (w.message.find("is covered by environment.deny entry") != std::string::npos) {
      ++env_warnings;
      env_named.insert(w.message.substr(0, w.message.find(':')));
    }
  }
  EXPECT_EQ(fs_warnings, 21u);  // /srv/r0, r500, ... r9500 and r1
  // VAR_19990..19999 (VAR_1999?), VAR_77 (*_77), and the 1111 names containing AR_5.
  EXPECT_EQ(env_warnings, 10u + 1u + 1111u);
  bool saw_r1 = false, saw_r10 = false;
  for (const auto& w : r->warnings) {
    saw_r1 |= w.message.find("'/srv/r1' covers filesystem.read entry '/srv/r1/sub'") != std::string::npos;
    saw_r10 |= w.message.find("'/srv/r10/sub'") != std::string::npos;
    if (w.message.find("'VAR_19995'") != std::string::npos) {
      EXPECT_NE(w.message.find("entry 'VAR_1999?'"), std::string::npos) << w.message;  // the first in file order
    }
  }
  EXPECT_TRUE(saw_r1);
  EXPECT_FALSE(saw_r10);

  NetFlags flags;
  for (int i = 0; i < 40000; ++i) flags.allow.push_back(fmt::format("10.{}.{}.{}/32:443", i / 65536 % 256, i / 256 % 256, i % 256));
  flags.allow.push_back("10.0.0.0/8:80");  // an ancestor every /32 inherits port 80 from
  auto np = net_policy_from_flags(flags);
  ASSERT_TRUE(np) << np.error().message();
  auto c = compile(*np, 7);
  ASSERT_TRUE(c) << c.error().message();
  size_t inherited = 0;
  for (const auto& rule : c->rules)
    if (rule.value.count == 2) ++inherited;
  EXPECT_EQ(inherited, 40000u);
  alarm(0);
}

// Issue 11 item 3: byte counts take binary units (powers of 1024, with or without "iB");
// decimal spellings, fractions, signs and overflow are errors naming the line and field.
TEST(Profile, SizesTakeBinaryUnitsAndRefuseTheRest) {
  std::string dir = testing::temp_dir();
  auto load = [&](const std::string& v) {
    write_file(dir + "/p.yaml", "process:\n  memory_max: " + v + "\n");
    return resolve_profile(dir + "/p.yaml", test_vars(), {});
  };
  for (auto [text, want] : std::vector<std::pair<std::string, uint64_t>>{{"1048576", 1048576},
                                                                          {"512M", 512ull << 20},
                                                                          {"8G", 8ull << 30},
                                                                          {"8GiB", 8ull << 30},
                                                                          {"3Ki", 3072},
                                                                          {"2T", 2ull << 40},
                                                                          {"0", 0}}) {
    auto r = load(text);
    ASSERT_TRUE(r) << text << ": " << r.error().message();
    EXPECT_EQ(r->profile.process().memory_max(), want) << text;
  }
  for (const char* bad : {"1MB", "1.5G", "-1", "G", "1g", "\"512M\"", "20000000000T", "1 G"}) {
    auto r = load(bad);
    ASSERT_FALSE(r) << bad << " loaded";
    EXPECT_NE(r.error().message().find(":2:15: process.memory_max: expected a byte count"), std::string::npos)
        << bad << ": " << r.error().message();
  }
  write_file(dir + "/p.yaml", "filesystem:\n  tmp_size: 64M\n");
  auto r = resolve_profile(dir + "/p.yaml", test_vars(), {});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->profile.filesystem().tmp_size(), 64ull << 20);
}

// Issue 12: a profile under /tmp is not self-writable when the sandbox's /tmp is its own
// tmpfs (private_tmp); it is when /tmp is the host's, or when a tree granted by name (the
// workspace) holds it.
TEST(Profile, AProfileUnderAPrivateTmpIsNotSelfWritable) {
  std::string dir = testing::temp_dir();  // under /tmp
  ASSERT_EQ(dir.rfind("/tmp/", 0), 0u) << dir;
  write_file(dir + "/p.yaml", "filesystem: {write: [/tmp], private_tmp: true}\n");
  auto r = resolve_profile(dir + "/p.yaml", test_vars(), {});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_TRUE(r->warnings.empty()) << r->warnings[0].str();
  write_file(dir + "/p.yaml", "filesystem: {write: [/tmp], private_tmp: false}\n");
  r = resolve_profile(dir + "/p.yaml", test_vars(), {});
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_EQ(r->warnings.size(), 1u);
  EXPECT_NE(r->warnings[0].str().find("writable inside the sandbox (filesystem.write entry '/tmp')"), std::string::npos);
  write_file(dir + "/p.yaml", "filesystem: {write: [/tmp, \"${WORKSPACE}\"], private_tmp: true}\n");
  ProfileVars v = test_vars();
  v.workspace = dir;
  r = resolve_profile(dir + "/p.yaml", v, {});
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_EQ(r->warnings.size(), 1u);
  EXPECT_NE(r->warnings[0].str().find("filesystem.write entry '" + dir + "'"), std::string::npos)
      << r->warnings[0].str();
}

TEST(Profile, ProfileTheSandboxCanRewriteIsAWarning) {
  std::string ws = testing::temp_dir();
  fs::create_directories(ws + "/profiles");
  write_file(ws + "/profiles/p.yaml", "filesystem: {write: [\"${WORKSPACE}\"]}\n");
  ProfileVars v = test_vars();
  v.workspace = ws;
  auto r = resolve_profile(ws + "/profiles/p.yaml", v, {});
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_EQ(r->warnings.size(), 1u);
  EXPECT_NE(r->warnings[0].str().find("writable inside the sandbox (filesystem.write entry '" + ws + "')"),
            std::string::npos)
      << r->warnings[0].str();
  // Protecting the profile directory silences it.
  write_file(ws + "/profiles/p.yaml",
             "filesystem: {write: [\"${WORKSPACE}\"], deny_write: [\"${WORKSPACE}/profiles\"]}\n");
  r = resolve_profile(ws + "/profiles/p.yaml", v, {});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_TRUE(r->warnings.empty()) << r->warnings[0].str();
}

TEST(Profile, AliasExpansionIsBounded) {
  // 400 aliases of a rule with 400 ports: 160,000 values from a 6 KiB file.
  std::string y = "network:\n  rules:\n    - &r {cidr: 10.0.0.0/8, ports: [";
  for (int i = 1; i <= 400; ++i) y += std::to_string(i) + (i < 400 ? "," : "]}\n");
  for (int i = 0; i < 400; ++i) y += "    - *r\n";
  std::string dir = testing::temp_dir();
  write_file(dir + "/bomb.yaml", y);
  auto r = resolve_profile(dir + "/bomb.yaml", test_vars(), {});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().context.find("more than 100000 values"), std::string::npos) << r.error().context.substr(0, 300);
  EXPECT_EQ(testing::lines(r.error().context).size(), 1u);  // reported once
}

TEST(Profile, DuplicatesGoEvenWithinOneFileAndAcrossSpellings) {
  std::string dir = testing::temp_dir();
  write_file(dir + "/d.yaml",
             "filesystem: {read: [/usr, /usr/, \"${TMPDIR}\", /t]}\n"
             "network: {rules: [{cidr: 10.0.0.0/8}, {cidr: 10.0.0.0/8, protocol: any, action: allow}]}\n");
  auto r = resolve_profile(dir + "/d.yaml", test_vars(), {});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(repeated(r->profile.filesystem().read()), (std::vector<std::string>{"/usr", "/t"}));
  EXPECT_EQ(r->profile.network().rules_size(), 1);
}

// Bad input gets an error, never a crash: every prefix of every shipped profile.
TEST(Profile, TruncatedProfilesFailCleanly) {
  std::string dir = testing::temp_dir();
  for (const auto& e : fs::directory_iterator(kShipped)) {
    std::ifstream in(e.path());
    std::stringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    for (size_t n = 0; n < text.size(); n += 31) {
      std::string f = dir + "/" + e.path().filename().string();
      write_file(f, text.substr(0, n));
      auto r = resolve_profile(f, test_vars(), {kShipped});
      if (!r) {
        EXPECT_EQ(r.error().context.find(dir), 0u) << r.error().context;  // located in the file
      }
    }
  }
}

TEST(Profile, DangerousPathsAreCaught) {
  std::string dir = testing::temp_dir();
  write_file(dir + "/ctl.yaml", "filesystem: {read: [\"/etc/pass\\nwd\", \"/etc/x\\0y\"]}\n");
  auto r = resolve_profile(dir + "/ctl.yaml", test_vars(), {});
  ASSERT_FALSE(r);
  EXPECT_EQ(testing::lines(r.error().context).size(), 2u) << r.error().context;
  EXPECT_NE(r.error().context.find(":1:21: filesystem.read[0]: a path must not contain control characters"), std::string::npos)
      << r.error().context;
  // Text quoted from the file cannot forge diagnostic lines.
  write_file(dir + "/key.yaml", "\"x\\n/etc/p.yaml:1:1: ok\": 1\n");
  r = resolve_profile(dir + "/key.yaml", test_vars(), {});
  ASSERT_FALSE(r);
  EXPECT_EQ(testing::lines(r.error().context).size(), 1u) << r.error().context;
  EXPECT_NE(r.error().context.find("unknown key 'x\\n/etc/p.yaml:1:1: ok'"), std::string::npos) << r.error().context;
  // A variable that expands to "/" makes everything writable: legal, but loudly warned.
  ProfileVars v = test_vars();
  v.tmpdir = "/";
  write_file(dir + "/root.yaml", "filesystem: {write: [\"${TMPDIR}\"]}\n");
  auto w = resolve_profile(dir + "/root.yaml", v, {});
  ASSERT_TRUE(w) << w.error().message();
  ASSERT_EQ(w->warnings.size(), 2u);
  EXPECT_NE(w->warnings[0].str().find(":1:22: warning: filesystem.write[0]: the whole file system is writable"),
            std::string::npos)
      << w->warnings[0].str();
  // ... including the profile itself.
  EXPECT_NE(w->warnings[1].str().find("writable inside the sandbox"), std::string::npos) << w->warnings[1].str();
}

TEST(Profile, AuditModeTurnsDenyAndKillIntoAudit) {
  P p;
  p.set_mode(P::MODE_ENFORCE);
  p.mutable_syscalls()->set_action(P::SYSCALL_ACTION_KILL);
  EXPECT_EQ(effective_action(p, P::ACTION_KILL), P::ACTION_KILL);
  EXPECT_EQ(effective_syscall_action(p), P::SYSCALL_ACTION_KILL);
  p.set_mode(P::MODE_AUDIT);
  EXPECT_EQ(effective_action(p, P::ACTION_KILL), P::ACTION_AUDIT);
  EXPECT_EQ(effective_action(p, P::ACTION_DENY), P::ACTION_AUDIT);
  EXPECT_EQ(effective_action(p, P::ACTION_ALLOW), P::ACTION_ALLOW);
  EXPECT_EQ(effective_syscall_action(p), P::SYSCALL_ACTION_LOG);
}

// Every string field is either validated (profile_format) or free text on purpose, so a new
// path field cannot slip in unchecked.
TEST(Profile, EveryStringFieldDeclaresHowItIsValidated) {
  // A map's values are free text; its keys are validated by the map field's own format.
  const std::set<std::string> free_text = {"agentcage.v1.Profile.name", "agentcage.v1.Profile.description",
                                           "agentcage.v1.Profile.extends", "agentcage.v1.Profile.NetworkRule.comment",
                                           "agentcage.v1.Profile.DomainRule.comment",
                                           "agentcage.v1.Profile.Environment.SetEntry.value"};
  std::vector<const google::protobuf::Descriptor*> todo = {P::descriptor()};
  std::set<const google::protobuf::Descriptor*> seen;
  int checked = 0;
  while (!todo.empty()) {
    const auto* d = todo.back();
    todo.pop_back();
    if (!seen.insert(d).second) continue;
    for (int i = 0; i < d->field_count(); ++i) {
      const auto* f = d->field(i);
      if (f->message_type()) todo.push_back(f->message_type());
      if (d->options().map_entry() && f->name() == "key") continue;  // checked on the map field below
      if (f->is_map()) {
        EXPECT_FALSE(f->options().GetExtension(v1::profile_format).empty()) << f->full_name() << ": its keys";
        continue;
      }
      if (f->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_STRING) continue;
      ++checked;
      bool has_format = !f->options().GetExtension(v1::profile_format).empty();
      EXPECT_TRUE(has_format || free_text.count(f->full_name())) << f->full_name() << " has no profile_format";
    }
  }
  EXPECT_GT(checked, 10);
}

TEST(Profile, ErrnoNamesAndResolvers) {
  EXPECT_EQ(errno_from_name("EPERM"), 1);
  EXPECT_EQ(errno_from_name("ENOSYS"), 38);
  EXPECT_FALSE(errno_from_name("EWHATEVER"));
  std::string dir = testing::temp_dir();
  write_file(dir + "/resolv.conf",
             "# comment\nsearch example.com\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\nnameserver bogus\n");
  EXPECT_EQ(system_resolvers(dir + "/resolv.conf"), (std::vector<std::string>{"127.0.0.53", "fe80::1"}));
  P p;
  p.mutable_network()->add_dns("192.0.2.53");
  p.mutable_network()->add_dns("system");
  p.mutable_network()->add_dns("127.0.0.53");
  EXPECT_EQ(dns_servers(p, dir + "/resolv.conf"), (std::vector<std::string>{"192.0.2.53", "127.0.0.53", "fe80::1"}));
}

TEST(Profile, OciSeccompParsesDockerFormat) {
  auto r = parse_oci_seccomp(kFixtures + "/oci/ok.json");
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->default_action, "SCMP_ACT_ERRNO");
  EXPECT_EQ(r->default_errno_ret, 1u);
  EXPECT_EQ(r->architectures.size(), 3u);
  ASSERT_EQ(r->syscalls.size(), 4u);
  EXPECT_EQ(r->syscalls[0].names, (std::vector<std::string>{"read", "write", "exit_group"}));
  EXPECT_EQ(r->unknown_syscalls, (std::vector<std::string>{"futex_waitv_from_the_future"}));
  ASSERT_EQ(r->syscalls[2].args.size(), 1u);
  EXPECT_EQ(r->syscalls[2].args[0].op, "SCMP_CMP_MASKED_EQ");
  EXPECT_EQ(r->syscalls[2].args[0].value, 2114060288u);
  EXPECT_EQ(r->syscalls[2].exclude_caps, (std::vector<std::string>{"CAP_SYS_ADMIN"}));
  EXPECT_EQ(r->syscalls[3].errno_ret, 38u);
  EXPECT_EQ(r->syscalls[3].min_kernel, "4.8");

  // The real thing: Podman's default profile (containers/common 0.50.1, Apache-2.0, from
  // Debian's golang-github-containers-common: /usr/share/containers/seccomp.json), which
  // uses archMap, includes/excludes by capability, args and errnoRet.
  auto podman = parse_oci_seccomp(kFixtures + "/oci/podman-default.json");
  ASSERT_TRUE(podman) << podman.error().message();
  EXPECT_EQ(podman->default_action, "SCMP_ACT_ERRNO");
  EXPECT_EQ(podman->default_errno_ret, 38u);
  EXPECT_EQ(podman->syscalls.size(), 35u);
  EXPECT_EQ(podman->syscalls[0].action, "SCMP_ACT_ERRNO");
  EXPECT_EQ(podman->syscalls[0].errno_ret, 1u);
  EXPECT_EQ(podman->syscalls[0].names.size() + podman->unknown_syscalls.size(), 28u);
  EXPECT_EQ(podman->syscalls[2].names, (std::vector<std::string>{"personality"}));
  EXPECT_EQ(podman->syscalls[2].args[0].op, "SCMP_CMP_EQ");
  EXPECT_EQ(podman->syscalls[12].include_caps, (std::vector<std::string>{"CAP_DAC_READ_SEARCH"}));
  EXPECT_EQ(podman->architectures.size(), 13u);
  EXPECT_NE(std::find(podman->architectures.begin(), podman->architectures.end(), "SCMP_ARCH_X32"),
            podman->architectures.end());

  auto bad = [](const std::string& json) {
    auto p = parse_oci_seccomp_text(json, "x.json");
    return p ? std::string("(parsed)") : p.error().context;
  };
  EXPECT_EQ(bad("{}"), "x.json: (top level): missing \"defaultAction\"");
  EXPECT_EQ(bad(R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                   "args": [{"index": 6, "op": "SCMP_CMP_EQ"}]}]})"),
            "x.json: syscalls[0].args[0].index: 6 is not a syscall argument index (0..5)");
  EXPECT_EQ(bad(R"({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["x86_64"]})"),
            "x.json: architectures[0]: \"x86_64\" is not an architecture (SCMP_ARCH_X86_64, SCMP_ARCH_AARCH64, ...)");
  EXPECT_EQ(bad(R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]})"),
            "x.json: syscalls[0]: needs \"names\"");
  EXPECT_EQ(bad("{\n  \"defaultAction\": 3\n}"), "x.json: (top level).defaultAction: expected a string, got number");
  EXPECT_EQ(bad(R"({"defaultAction": "SCMP_ACT_ALLOW", "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                   "subArchitectures": ["Z80"]}]})"),
            "x.json: archMap[0]: \"Z80\" is not an architecture (SCMP_ARCH_X86_64, SCMP_ARCH_AARCH64, ...)");
  // The file's strings are escaped in the message (an ESC would reach the terminal).
  EXPECT_EQ(bad(R"({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["x\u001b"]})"),
            "x.json: architectures[0]: \"x\\x1b\" is not an architecture (SCMP_ARCH_X86_64, SCMP_ARCH_AARCH64, ...)");
  // Architectures newer than this libseccomp are skipped and reported, not refused: the
  // filter is for the native architecture only, as Docker builds it from its archMap.
  auto unknown = parse_oci_seccomp_text(R"({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_PDP11"],
      "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_Z80", "SCMP_ARCH_X86"]}]})",
                                        "x.json");
  ASSERT_TRUE(unknown) << unknown.error().message();
  EXPECT_EQ(unknown->unknown_architectures, (std::vector<std::string>{"SCMP_ARCH_PDP11", "SCMP_ARCH_Z80"}));
  EXPECT_EQ(unknown->architectures, (std::vector<std::string>{"SCMP_ARCH_X86_64", "SCMP_ARCH_X86"}));
}

// Docker's current default (moby/profiles/seccomp v0.2.3, Apache-2.0, as vendored in
// moby/moby; fetched once into the fixtures) lists SCMP_ARCH_LOONGARCH64, which Debian 12's
// libseccomp 2.5.4 does not know: it loads, with that one reported as skipped.
TEST(Profile, DockersCurrentDefaultSeccompProfileLoads) {
  auto docker = parse_oci_seccomp(kFixtures + "/oci/docker-default.json");
  ASSERT_TRUE(docker) << docker.error().message();
  EXPECT_EQ(docker->default_action, "SCMP_ACT_ERRNO");
  EXPECT_EQ(docker->default_errno_ret, 1u);
  EXPECT_NE(std::find(docker->architectures.begin(), docker->architectures.end(), "SCMP_ARCH_X86_64"),
            docker->architectures.end());
  if (seccomp_arch_resolve_name("loongarch64") == 0) {
    EXPECT_EQ(docker->unknown_architectures, (std::vector<std::string>{"SCMP_ARCH_LOONGARCH64"}));
  }
  std::string dir = testing::temp_dir();
  write_file(dir + "/d.yaml", "name: d\nextends: default\nsyscalls:\n  seccomp_json: " + kFixtures +
                                  "/oci/docker-default.json\n");
  auto r = resolve_profile(dir + "/d.yaml", test_vars());
  ASSERT_TRUE(r) << r.error().message();
  bool told = false;
  for (const auto& w : r->warnings) told |= w.message.find("architectures unknown to this libseccomp") != std::string::npos;
  EXPECT_EQ(told, !docker->unknown_architectures.empty());
}

// --- shipped profiles ---

std::vector<std::string> shipped() {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(kShipped))
    if (e.path().extension() == ".yaml") out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(ShippedProfiles, AllPresentCleanAndDocumented) {
  std::set<std::string> names;
  for (const auto& f : shipped()) {
    SCOPED_TRACE(f);
    auto r = resolve_profile(f, test_vars(), {});
    ASSERT_TRUE(r) << r.error().message();
    // Clean even from a clone under /tmp (as CI uses): the sandbox's /tmp is private.
    for (const auto& w : r->warnings) ADD_FAILURE() << w.str();
    EXPECT_EQ(r->profile.name(), fs::path(f).stem().string());
    EXPECT_FALSE(r->profile.description().empty());
    std::ifstream in(f);
    std::stringstream text;
    text << in.rdbuf();
    EXPECT_NE(text.str().find("# Who it is for:"), std::string::npos) << "needs a comment block saying who it is for";
    EXPECT_EQ(text.str().rfind("# SPDX-License-Identifier:", 0), 0u);
    names.insert(r->profile.name());
  }
  for (const char* n : {"default", "coding-agent", "coding-agent-open-https", "readonly-analyst", "network-none",
                        "mcp-server", "package-install"})
    EXPECT_TRUE(names.count(n)) << "missing shipped profile " << n;
}

bool has(const google::protobuf::RepeatedPtrField<std::string>& r, const std::string& v) {
  return std::find(r.begin(), r.end(), v) != r.end();
}

TEST(ShippedProfiles, SayWhatTheirCommentsPromise) {
  auto load = [](const std::string& n) {
    auto r = resolve_profile(n, test_vars(), {kShipped});
    EXPECT_TRUE(r) << r.error().message();
    return r ? r->profile : P();
  };
  P def = load("default");
  EXPECT_TRUE(has(def.filesystem().write(), "/w"));
  EXPECT_FALSE(has(def.filesystem().exec(), "/w"));
  for (const char* secret : {"/h/.ssh", "/h/.aws", "/h/.config/gcloud", "/h/.gnupg", "/h/.netrc", "/h/.docker", "/h/.kube",
                             "/etc/shadow", "/etc/gshadow", "/proc/kcore"})
    EXPECT_TRUE(has(def.filesystem().deny(), secret)) << secret;
  EXPECT_TRUE(has(def.filesystem().read(), "/etc"));
  EXPECT_EQ(def.network().rules_size(), 0);
  EXPECT_EQ(def.network().dns_size(), 0);
  EXPECT_EQ(def.actions().network(), P::ACTION_DENY);
  EXPECT_EQ(def.mode(), P::MODE_ENFORCE);
  EXPECT_GT(def.process().max_pids(), 0u);

  P coding = load("coding-agent");
  EXPECT_TRUE(has(coding.filesystem().exec(), "/w"));
  EXPECT_TRUE(has(coding.filesystem().deny(), "/h/.ssh"));  // inherited from base through default
  // HTTPS by name only: no address rule allows anything, the registries are domains on 443.
  bool any_allow = false, metadata_kill = false, plain_http = false;
  for (const auto& rule : coding.network().rules()) {
    if (rule.action() == P::ACTION_ALLOW || rule.action() == P::ACTION_UNSPECIFIED) any_allow = true;
    if (rule.cidr() == "169.254.169.254/32" && rule.action() == P::ACTION_KILL) metadata_kill = true;
  }
  EXPECT_FALSE(any_allow);
  EXPECT_TRUE(metadata_kill);
  std::set<std::string> names;
  for (const auto& d : coding.network().domains()) {
    names.insert(d.name());
    ASSERT_EQ(d.ports_size(), 1) << d.name();
    EXPECT_EQ(d.ports(0).lo(), 443u) << d.name();
    EXPECT_EQ(d.protocol(), P::PROTOCOL_TCP) << d.name();
    EXPECT_TRUE(d.action() == P::ACTION_ALLOW || d.action() == P::ACTION_UNSPECIFIED) << d.name();
  }
  // What its comment promises: npm, PyPI, crates.io, the Go proxy, Maven Central, GitHub, GitLab.
  for (const char* n : {"registry.npmjs.org", "pypi.org", "files.pythonhosted.org", "index.crates.io", "static.crates.io",
                        "proxy.golang.org", "repo.maven.apache.org", "github.com", "*.githubusercontent.com",
                        "gitlab.com"})
    EXPECT_TRUE(names.count(n)) << n;
  EXPECT_EQ(std::vector<std::string>(coding.network().dns().begin(), coding.network().dns().end()),
            std::vector<std::string>{"system"});
  auto compiled = compile_profile(coding, PolicyContext{});
  ASSERT_TRUE(compiled) << compiled.error().message();
  ASSERT_TRUE(compiled->net);
  EXPECT_EQ(compiled->net->domains.size(), names.size());
  EXPECT_TRUE(compiled->net->allow.empty()) << "coding-agent allows an address by rule";

  // The explicit choice of the old behaviour: any public address on 443, no names.
  P open = load("coding-agent-open-https");
  bool https = false;
  for (const auto& rule : open.network().rules())
    for (const auto& pr : rule.ports()) {
      if (rule.cidr() == "0.0.0.0/0" && rule.action() == P::ACTION_ALLOW && pr.lo() == 443) https = true;
      if (pr.lo() <= 80 && 80 <= pr.hi()) plain_http = true;
    }
  EXPECT_TRUE(https);
  EXPECT_FALSE(plain_http);
  EXPECT_EQ(open.network().domains_size(), 0);
  EXPECT_TRUE(has(open.filesystem().exec(), "/w"));  // the same coding-base layer

  P install = load("package-install");
  plain_http = false;
  for (const auto& d : install.network().domains())
    for (const auto& pr : d.ports())
      if (d.name() == "deb.debian.org" && pr.lo() == 80) plain_http = true;
  EXPECT_TRUE(plain_http);
  EXPECT_GT(install.network().domains_size(), coding.network().domains_size());

  P analyst = load("readonly-analyst");
  EXPECT_TRUE(has(analyst.filesystem().read(), "/w"));
  EXPECT_FALSE(has(analyst.filesystem().write(), "/w"));
  EXPECT_FALSE(has(analyst.filesystem().exec(), "/w"));

  P none = load("network-none");
  auto& ns = none.process().namespaces();
  EXPECT_NE(std::find(ns.begin(), ns.end(), P::NAMESPACE_NET), ns.end());

  P mcp = load("mcp-server");
  EXPECT_EQ(mcp.actions().exec(), P::ACTION_KILL);
  EXPECT_FALSE(has(mcp.filesystem().write(), "/w"));
  EXPECT_EQ(mcp.network().rules_size(), 0);
  // Its kill is the kernel's (AC_SB_EXEC_KILL), not a deny with a note; audit mode kills nothing.
  auto cm = compile_profile(mcp, PolicyContext{});
  ASSERT_TRUE(cm) << cm.error().message();
  EXPECT_TRUE(cm->exec_kill);
  for (const auto& n : cm->notes) EXPECT_EQ(n.find("actions.exec"), std::string::npos) << n;
  mcp.set_mode(P::MODE_AUDIT);
  cm = compile_profile(mcp, PolicyContext{});
  ASSERT_TRUE(cm) << cm.error().message();
  EXPECT_FALSE(cm->exec_kill);
}

// --- show ---

TEST(ProfileShow, RoundTripsEveryShippedProfileAndEveryField) {
  std::vector<std::string> files = shipped();
  files.push_back(fixture("full"));
  files.push_back(fixture("merge_child"));
  std::string dir = testing::temp_dir();
  for (const auto& f : files) {
    SCOPED_TRACE(f);
    auto r = resolve_profile(f, test_vars(), {});
    ASSERT_TRUE(r) << r.error().message();
    std::string yaml = to_yaml(r->profile, {"a header comment"});
    std::string out = dir + "/" + fs::path(f).filename().string();
    write_file(out, yaml);
    auto back = resolve_profile(out, test_vars(), {});
    ASSERT_TRUE(back) << back.error().message() << "\n" << yaml;
    std::string diff;
    google::protobuf::util::MessageDifferencer d;
    d.ReportDifferencesToString(&diff);
    EXPECT_TRUE(d.Compare(r->profile, back->profile)) << diff << "\n" << yaml;
  }
}

TEST(ProfileShow, WritesEnumsAndPortRangesTheWayTheyAreRead) {
  auto r = load_fixture("full");
  ASSERT_TRUE(r);
  std::string y = to_yaml(r->profile);
  EXPECT_NE(y.find("mode: audit"), std::string::npos) << y;
  EXPECT_NE(y.find("ports: [443, \"8000-8100\", \"22-23\"]"), std::string::npos) << y;
  EXPECT_NE(y.find("namespaces: [user, mount, pid, net, ipc, uts]"), std::string::npos) << y;
  EXPECT_EQ(y.find("extends"), std::string::npos) << y;
  // Quoted so that other YAML tools read them as the strings they are.
  EXPECT_NE(y.find("comment: \"yes\""), std::string::npos) << y;
  EXPECT_NE(y.find("group: \"65534\""), std::string::npos) << y;
  // environment: patterns quoted where YAML would read `*` as an alias, set as a mapping
  // in name order.
  EXPECT_NE(y.find("inherit: base"), std::string::npos) << y;
  EXPECT_NE(y.find("- \"*_TOKEN\""), std::string::npos) << y;
  EXPECT_NE(y.find("  set:\n    EMPTY: \"\"\n    FLAG: \"yes\"\n    GREETING: \"hello: world\"\n    PIP_NO_INPUT: \"1\"\n"
                   "    lower_case: x\n"),
            std::string::npos)
      << y;
}

// --- the CLI ---

TEST(ProfileCli, Parses) {
  auto p = cli::parse({"profile", "lint", "a.yaml", "b.yaml"});
  ASSERT_TRUE(std::holds_alternative<cli::ProfileLintArgs>(p));
  EXPECT_EQ(std::get<cli::ProfileLintArgs>(p).files, (std::vector<std::string>{"a.yaml", "b.yaml"}));
  p = cli::parse({"profile", "show", "coding-agent", "--workspace", "/src"});
  ASSERT_TRUE(std::holds_alternative<cli::ProfileShowArgs>(p));
  EXPECT_EQ(std::get<cli::ProfileShowArgs>(p).name, "coding-agent");
  EXPECT_EQ(std::get<cli::ProfileShowArgs>(p).workspace, "/src");
  for (auto args : std::vector<std::vector<std::string>>{{"profile"}, {"profile", "lint"}, {"profile", "show"},
                                                         {"profile", "frob"}}) {
    auto e = cli::parse(args);
    ASSERT_TRUE(std::holds_alternative<cli::Exit>(e)) << args.back();
    EXPECT_EQ(std::get<cli::Exit>(e).status, 2) << args.back();
  }
  EXPECT_NE(std::get<cli::Exit>(cli::parse({"profile"})).text.find("lint, show or generate"), std::string::npos);
  auto help = cli::parse({"profile", "lint", "--help"});
  ASSERT_TRUE(std::holds_alternative<cli::Exit>(help));
  EXPECT_EQ(std::get<cli::Exit>(help).status, 0);
  EXPECT_NE(std::get<cli::Exit>(help).text.find("FILE:LINE:COL"), std::string::npos);
}

TEST(ProfileCli, RunTakesAProfileNameOrPath) {
  for (std::string prof : {"coding-agent", "./my.yaml", "/etc/agentcage/profiles/x.yaml"}) {
    auto p = cli::parse({"run", "--profile", prof, "--workspace", "/src", "--", "true"});
    ASSERT_TRUE(std::holds_alternative<cli::RunArgs>(p)) << prof;
    EXPECT_EQ(std::get<cli::RunArgs>(p).profile, prof);
    EXPECT_EQ(std::get<cli::RunArgs>(p).workspace, "/src");
  }
  EXPECT_FALSE(is_profile_path("coding-agent"));
  EXPECT_TRUE(is_profile_path("./my.yaml"));
  EXPECT_TRUE(is_profile_path("my.yaml"));
  EXPECT_TRUE(is_profile_path("dir/x"));
}

TEST(ProfileCli, LintReportsEachFileAndExitsOneOnAnyError) {
  auto ok = testing::run({AGENTCAGE_BIN, "profile", "lint", fixture("merge_child"), fixture("merge_parent")});
  EXPECT_EQ(ok.status, 0) << ok.err;
  EXPECT_EQ(ok.out, fixture("merge_child") + ": ok\n" + fixture("merge_parent") + ": ok\n");
  auto bad = testing::run({AGENTCAGE_BIN, "profile", "lint", fixture("merge_child"), fixture("bad_enum")});
  EXPECT_EQ(bad.status, 1);
  EXPECT_EQ(bad.out, fixture("merge_child") + ": ok\n" + fixture("bad_enum") + ": invalid\n");
  EXPECT_EQ(bad.err, fixture("bad_enum") + ":3:7: mode: 'enforcing' is not one of: enforce, audit\n");
  auto warn = testing::run({AGENTCAGE_BIN, "profile", "lint", fixture("overlap")});
  EXPECT_EQ(warn.status, 0);
  EXPECT_EQ(warn.out, fixture("overlap") + ": ok (3 warnings)\n");
  auto usage = testing::run({AGENTCAGE_BIN, "profile", "lint"});
  EXPECT_EQ(usage.status, 2);
}

TEST(ProfileCli, ShowPrintsTheResolvedProfile) {
  auto r = testing::run({AGENTCAGE_BIN, "profile", "show", "coding-agent", "--workspace", "/srv/app"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("# agentcage profile 'coding-agent', fully resolved"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("/profiles/base.yaml\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("  - /srv/app\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("169.254.169.254/32"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("extends:"), std::string::npos) << r.out;
  auto missing = testing::run({AGENTCAGE_BIN, "profile", "show", "no-such-profile"});
  EXPECT_EQ(missing.status, 1);
  EXPECT_NE(missing.err.find("profile 'no-such-profile' not found"), std::string::npos) << missing.err;
}

TEST(ProfileCli, RunRejectsAnInvalidProfileWithItsLocation) {
  auto r = testing::run({AGENTCAGE_BIN, "run", "--profile", fixture("port_zero"), "--", "true"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find(fixture("port_zero") + ":6:15: network.rules[0].ports[0]: port 0 is outside 1-65535"),
            std::string::npos)
      << r.err;
}

// --- generate (issue 12 item 4) ---

v1::Event audit_report(const std::string& mechanism, const std::string& rule, const std::string& what) {
  v1::Event ev;
  ev.mutable_process()->set_comm("tool");
  ev.mutable_process()->set_pid(42);
  auto* v = ev.mutable_violation();
  v->set_action("audit");
  v->set_mechanism(mechanism);
  v->set_rule(rule);
  v->set_what("audit: would deny " + what);
  return ev;
}

// Each audit report becomes one grant: a file's directory (the file alone where the
// directory is top-level or holds a path the base denies), never a denied path; syscalls
// and destinations too; each with its first report; the YAML loads as a profile.
TEST(ProfileGenerate, EachWouldDenyBecomesTheNarrowestSensibleGrant) {
  P base;
  base.mutable_filesystem()->add_deny("/srv/app/secrets");
  base.mutable_filesystem()->add_deny("/etc/shadow");
  std::vector<v1::Event> evs{
      audit_report("landlock", "filesystem: /data/in/a.csv needs read_file, not granted by read/write/exec",
                   "open /data/in/a.csv"),
      audit_report("landlock", "filesystem: /data/in/b.csv needs read_file, not granted by read/write/exec",
                   "open /data/in/b.csv"),
      audit_report("landlock", "filesystem: /w/build/out.o needs write_file|make_reg, not granted by read/write/exec",
                   "open /w/build/out.o"),
      audit_report("landlock", "filesystem: /srv/app/config.yaml needs read_file, not granted by read/write/exec",
                   "open /srv/app/config.yaml"),
      audit_report("landlock", "filesystem: /srv needs read_dir, not granted by read/write/exec", "open /srv"),
      audit_report("landlock", "filesystem.exec: /opt/tool/bin/run is outside the exec paths", "exec /opt/tool/bin/run"),
      audit_report("landlock", "filesystem: /opt/tool/bin/run needs read_file, not granted by read/write/exec",
                   "open /opt/tool/bin/run"),
      audit_report("mount-mask", "filesystem.deny: /etc/shadow", "open /etc/shadow"),
      audit_report("landlock", "filesystem: /srv/app/secrets/k needs read_file, not granted by read/write/exec",
                   "open /srv/app/secrets/k"),
      audit_report("seccomp", "syscalls.deny: ptrace (builtin)", "syscall ptrace"),
      audit_report("seccomp", "syscalls.deny: socket with domain == AF_PACKET (builtin)", "syscall socket"),
      audit_report("landlock", "scope: signal to a process outside the sandbox", "kill"),
  };
  v1::Event net = audit_report("cgroup-bpf", "network.default: deny", "connect 203.0.113.7:443/tcp");
  net.mutable_violation()->mutable_net()->set_protocol("tcp");
  net.mutable_violation()->mutable_net()->mutable_remote()->set_family("inet");
  net.mutable_violation()->mutable_net()->mutable_remote()->set_address("203.0.113.7");
  net.mutable_violation()->mutable_net()->mutable_remote()->set_port(443);
  evs.push_back(net);
  v1::Event denied_ok;  // a plain deny (enforcing run): not a report of a learning run
  denied_ok.mutable_violation()->set_action("deny");
  evs.push_back(denied_ok);

  auto g = generate_profile(GenerateOptions{"job", "default", "/w", "store x"}, base, evs);
  EXPECT_EQ(g.reports, evs.size() - 1);
  const std::string& y = g.yaml;
  auto in_yaml = [&](const std::string& s) { return y.find(s) != std::string::npos; };
  EXPECT_TRUE(in_yaml("name: \"job\"\nextends: \"default\"\nmode: enforce\n")) << y;
  EXPECT_TRUE(in_yaml("    - \"/data/in\"  # first: open /data/in/a.csv (tool, pid 42)\n")) << y;  // folded, once
  EXPECT_FALSE(in_yaml("b.csv")) << y;
  EXPECT_TRUE(in_yaml("  write:\n    - \"${WORKSPACE}/build\"")) << y;
  EXPECT_TRUE(in_yaml("    - \"/srv/app/config.yaml\"")) << "its directory holds a denied path: " << y;
  EXPECT_FALSE(in_yaml("- \"/srv\"")) << "a listed top-level directory would open its whole tree: " << y;
  EXPECT_TRUE(in_yaml("  exec:\n    - \"/opt/tool/bin\"")) << y;
  EXPECT_FALSE(in_yaml("- \"/opt/tool/bin/run\"")) << "exec implies read: " << y;
  EXPECT_FALSE(in_yaml("shadow")) << y;
  EXPECT_FALSE(in_yaml("secrets")) << y;
  EXPECT_TRUE(in_yaml("syscalls:\n  allow:\n    - \"ptrace\"")) << y;
  EXPECT_TRUE(in_yaml("    - cidr: \"203.0.113.7/32\"\n      ports: [443]\n      protocol: tcp\n")) << y;
  EXPECT_FALSE(in_yaml("\"socket\"")) << "allowing socket would lift the whole family filter: " << y;
  EXPECT_EQ(g.grants, 6u) << y;
  ASSERT_EQ(g.skipped.size(), 5u);  // shadow, secrets/k, the /srv listing, the AF_PACKET socket, the scope report
  EXPECT_NE(g.skipped[1].find("the base denies it (filesystem.deny: /etc/shadow)"), std::string::npos) << g.skipped[1];

  // It loads as a profile (over a stand-in base) and grants exactly that.
  std::string dir = testing::temp_dir();
  write_file(dir + "/default.yaml", "name: default\nfilesystem:\n  deny: [/srv/app/secrets]\n");
  write_file(dir + "/job.yaml", y);
  auto r = resolve_profile(dir + "/job.yaml", test_vars(), {dir});
  ASSERT_TRUE(r) << r.error().message() << "\n" << y;
  EXPECT_EQ(r->profile.mode(), P::MODE_ENFORCE);
  EXPECT_TRUE(has(r->profile.filesystem().read(), "/data/in"));
  EXPECT_TRUE(has(r->profile.filesystem().write(), "/w/build"));
}

}  // namespace
}  // namespace agentcage::core
