// SPDX-License-Identifier: Apache-2.0
// Workspace files that run code later, outside the sandbox: git's configuration. Keys such as
// core.fsmonitor, core.hooksPath, core.sshCommand or include.path in the workspace's
// .git/config make the user's next `git status` run what the agent wrote there. With
// filesystem.git_config: report the engine reads those files before the command starts and
// after the sandbox ends, and every change to such a key is reported (a violation with
// action audit, mechanism git-config), on both paths.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "agentcage/v1/event.pb.h"

namespace agentcage::core {

// One `key = value` of a git config file, in order. The key is git's canonical spelling:
// section and name lower case, a subsection as written ("filter.lfs.process",
// "includeif.gitdir:~/w/.path"). A name without `=` is a boolean true (value "true").
struct GitConfigEntry {
  std::string key;
  std::string value;
};
// Pure: the syntax git reads (sections, "subsections", legacy [a.b], quotes, escapes, line
// continuations, # and ; comments). A malformed line is skipped, not fatal: git itself
// would refuse the file, so it runs nothing from it. Unit-tested.
std::vector<GitConfigEntry> parse_git_config(std::string_view text);

// Pure: whether git (or a tool reading git's configuration) runs a program named by this
// key at a later git command: core.fsmonitor, core.hookspath, core.sshcommand, filter.*,
// diff.*.textconv, credential.helper, include.path, `!` aliases, ... Unit-tested.
bool git_key_runs_code(const std::string& key, const std::string& value);

// The code-running entries of the workspace's git config files: file path -> its entries.
using GitConfigSnapshot = std::map<std::string, std::vector<GitConfigEntry>>;

// Reads `workspace`/.git/config and config.worktree (or those of the directory a `.git`
// file's gitdir names, when it is inside the workspace) and each submodule's under
// .git/modules. Nothing is followed through a symlink, and only regular files owned by
// `uid` (or root) are read: agentcaged reads them as root, and a symlink or hard link the
// agent planted must not turn this into a way to read another file.
GitConfigSnapshot snapshot_git_config(const std::string& workspace, uid_t uid);

struct GitConfigChange {
  std::string file;
  std::string key;
  std::string before;  // empty with added
  std::string after;   // empty with removed
  bool added = false;
  bool removed = false;
};
// Pure: the code-running keys whose values differ between the snapshots. Unit-tested.
std::vector<GitConfigChange> git_config_changes(const GitConfigSnapshot& before, const GitConfigSnapshot& after);

// The report of one change: a violation (mechanism git-config, action audit) naming the
// file, the key and the new value; `what` reads "the agent set core.fsmonitor to ...".
// before_unknown: the snapshot from before the run was lost (agentcaged restarted meanwhile),
// so `c` is a code-running key present at the end, said so.
v1::Event git_change_event(const GitConfigChange& c, const std::string& sandbox_id, const std::string& node,
                           bool before_unknown = false);

}  // namespace agentcage::core
