// SPDX-License-Identifier: Apache-2.0
// Issue 11 item 9: the workspace's git configuration, which runs programs at the user's next
// git command outside the sandbox: parsing as git does, which keys run code, what changed,
// and reading the files without being led elsewhere by a planted symlink or hard link.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "core/sandbox/git_review.h"
#include "support/subprocess.h"

namespace agentcage::core {
namespace {

std::string value_of(const std::vector<GitConfigEntry>& es, const std::string& key) {
  for (const auto& e : es)
    if (e.key == key) return e.value;
  return "<absent>";
}

TEST(GitConfig, ParsesTheSyntaxGitReads) {
  auto es = parse_git_config(
      "# a comment\n"
      "[core]\n"
      "\trepositoryformatversion = 0\n"
      "\tFSMonitor = \"/tmp/x.sh --flag\" ; trailing comment\n"
      "\tbare\n"
      "[filter \"lfs\"]\n"
      "\tprocess = git-lfs filter-process \\\n --skip\n"
      "[Remote \"Origin\"]\n"
      "  url = https://example.com/a.git # comment\n"
      "[core.Sub]\n"
      "  x = 1\n"
      "[alias]\n"
      "  st = \"!sh -c \\\"id\\\"\"\n"
      "[includeIf \"gitdir:~/w/\"]\n"
      "  path = /tmp/evil.inc\n"
      "[broken\n"
      "  ignored = yes\n");
  EXPECT_EQ(value_of(es, "core.fsmonitor"), "/tmp/x.sh --flag");
  EXPECT_EQ(value_of(es, "core.bare"), "true");
  EXPECT_EQ(value_of(es, "filter.lfs.process"), "git-lfs filter-process  --skip");
  // Section and name lower case; the subsection as written.
  EXPECT_EQ(value_of(es, "remote.Origin.url"), "https://example.com/a.git");
  EXPECT_EQ(value_of(es, "core.sub.x"), "1");  // legacy [a.b]: git lower-cases it
  EXPECT_EQ(value_of(es, "alias.st"), "!sh -c \"id\"");
  EXPECT_EQ(value_of(es, "includeif.gitdir:~/w/.path"), "/tmp/evil.inc");
  // After a malformed header nothing is taken until the next good one (git refuses it).
  EXPECT_EQ(value_of(es, "broken.ignored"), "<absent>");
  EXPECT_EQ(value_of(es, "alias.ignored"), "<absent>");
  // Odd bytes neither crash nor loop.
  EXPECT_NO_THROW(parse_git_config(std::string("[a]\nb = \"\\", 10)));
  EXPECT_NO_THROW(parse_git_config(std::string("\0[\0]\n=\"", 8)));
}

TEST(GitConfig, KeysThatRunProgramsAreKnown) {
  for (const char* k : {"core.fsmonitor", "core.hookspath", "core.sshcommand", "core.pager", "include.path",
                        "includeif.gitdir:/x/.path", "filter.lfs.process", "filter.x.smudge", "diff.x.textconv",
                        "credential.helper", "credential.https://h.helper", "gpg.program", "remote.origin.uploadpack",
                        "pager.log", "hook.pre-commit.command", "url.ext::sh.insteadof", "protocol.ext.allow"})
    EXPECT_TRUE(git_key_runs_code(k, "x")) << k;
  EXPECT_TRUE(git_key_runs_code("alias.st", "!rm -rf ~"));
  EXPECT_FALSE(git_key_runs_code("alias.st", "status -s"));  // a git subcommand: runs nothing new
  for (const char* k : {"core.bare", "user.email", "remote.origin.url", "branch.main.remote", "core.autocrlf"})
    EXPECT_FALSE(git_key_runs_code(k, "x")) << k;
}

TEST(GitConfig, ChangesToCodeRunningKeysAreListed) {
  GitConfigSnapshot before{{"/w/.git/config", {{"core.pager", "less"}, {"include.path", "a"}}}};
  GitConfigSnapshot after{{"/w/.git/config", {{"core.pager", "evil"}, {"include.path", "a"}, {"include.path", "b"},
                                              {"core.fsmonitor", "/w/x"}}}};
  auto ch = git_config_changes(before, after);
  ASSERT_EQ(ch.size(), 3u);
  EXPECT_EQ(ch[0].key, "core.fsmonitor");
  EXPECT_TRUE(ch[0].added);
  EXPECT_EQ(ch[1].key, "core.pager");
  EXPECT_EQ(ch[1].before, "less");
  EXPECT_EQ(ch[1].after, "evil");
  EXPECT_EQ(ch[2].key, "include.path");
  EXPECT_EQ(ch[2].after, "b");
  EXPECT_TRUE(git_config_changes(after, after).empty());
  auto gone = git_config_changes(before, {});
  ASSERT_EQ(gone.size(), 2u);
  EXPECT_TRUE(gone[0].removed);
  auto ev = git_change_event(ch[0], "sb1", "node");
  EXPECT_EQ(ev.violation().mechanism(), "git-config");
  EXPECT_EQ(ev.violation().action(), "audit");
  EXPECT_EQ(ev.violation().what(),
            "the agent set core.fsmonitor to /w/x in /w/.git/config: it runs at your next git command in this repository");
  // A value's control bytes reach no terminal raw.
  GitConfigChange esc{"/w/.git/config", "core.pager", "", "less\x1b[2J", true, false};
  EXPECT_EQ(git_change_event(esc, "sb1", "node").violation().what().find('\x1b'), std::string::npos);
}

TEST(GitConfig, SnapshotReadsTheRepositoryAndIsNotLedElsewhere) {
  std::string ws = testing::temp_dir();
  ASSERT_EQ(mkdir((ws + "/.git").c_str(), 0755), 0);
  std::ofstream(ws + "/.git/config") << "[core]\n  fsmonitor = /ws/run.sh\n  bare = false\n";
  ASSERT_EQ(mkdir((ws + "/.git/modules").c_str(), 0755), 0);
  ASSERT_EQ(mkdir((ws + "/.git/modules/sub").c_str(), 0755), 0);
  std::ofstream(ws + "/.git/modules/sub/config") << "[core]\n  sshcommand = evil\n";
  auto s = snapshot_git_config(ws, getuid());
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[ws + "/.git/config"].size(), 1u);  // only the code-running key
  EXPECT_EQ(value_of(s[ws + "/.git/config"], "core.fsmonitor"), "/ws/run.sh");
  EXPECT_EQ(value_of(s[ws + "/.git/modules/sub/config"], "core.sshcommand"), "evil");
  // Another user's file is not read (agentcaged reads as root: a file the agent could not
  // have written is not its to report, and reading it would leak it).
  EXPECT_TRUE(snapshot_git_config(ws, getuid() + 1).count(ws + "/.git/config") == (getuid() == 0 ? 1u : 0u));
  // A symlink in place of the config, or a hard link to another file, is not followed.
  std::string other = testing::temp_dir() + "/secret";
  std::ofstream(other) << "[core]\n  pager = SECRET\n";
  ASSERT_EQ(unlink((ws + "/.git/config").c_str()), 0);
  ASSERT_EQ(symlink(other.c_str(), (ws + "/.git/config").c_str()), 0);
  EXPECT_EQ(snapshot_git_config(ws, getuid()).count(ws + "/.git/config"), 0u);
  ASSERT_EQ(unlink((ws + "/.git/config").c_str()), 0);
  ASSERT_EQ(link(other.c_str(), (ws + "/.git/config").c_str()), 0);
  EXPECT_EQ(snapshot_git_config(ws, getuid()).count(ws + "/.git/config"), 0u);
  // A `.git` file naming a git directory inside the workspace is followed there; one
  // outside is not.
  std::string wt = testing::temp_dir();
  ASSERT_EQ(mkdir((wt + "/gd").c_str(), 0755), 0);
  std::ofstream(wt + "/gd/config") << "[core]\n  hooksPath = /x\n";
  std::ofstream(wt + "/.git") << "gitdir: gd\n";
  EXPECT_EQ(value_of(snapshot_git_config(wt, getuid())[wt + "/gd/config"], "core.hookspath"), "/x");
  std::ofstream(wt + "/.git") << "gitdir: ../elsewhere\n";
  EXPECT_TRUE(snapshot_git_config(wt, getuid()).empty());
}

}  // namespace
}  // namespace agentcage::core
