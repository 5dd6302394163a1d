// SPDX-License-Identifier: Apache-2.0
#include "core/sandbox/git_review.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <set>

#include "core/base/text.h"
#include "core/base/unique_fd.h"

namespace agentcage::core {
namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool is_name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-'; }

// A file at most this large is read whole; git config files are a few KiB. Larger ones are
// read up to here (the first keys still count) rather than letting the agent make the
// review slow.
constexpr size_t kMaxConfigBytes = 1 << 20;

}  // namespace

std::vector<GitConfigEntry> parse_git_config(std::string_view t) {
  std::vector<GitConfigEntry> out;
  std::string section;  // "core", "filter.lfs" (section lower, subsection as written)
  bool have_section = false;
  size_t i = 0, n = t.size();
  auto skip_line = [&] {
    while (i < n && t[i] != '\n') ++i;
  };
  while (i < n) {
    char c = t[i];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      ++i;
      continue;
    }
    if (c == '#' || c == ';') {
      skip_line();
      continue;
    }
    if (c == '[') {
      ++i;
      std::string name;
      while (i < n && (is_name_char(t[i]) || t[i] == '.')) name += t[i++];
      have_section = false;
      if (i < n && t[i] == ']') {
        ++i;
        // Legacy [section.subsection]: git lower-cases the subsection too.
        if (name.empty()) {
          skip_line();
          continue;
        }
        section = lower(name);
        have_section = true;
        continue;
      }
      if (i < n && (t[i] == ' ' || t[i] == '\t') && name.find('.') == std::string::npos && !name.empty()) {
        while (i < n && (t[i] == ' ' || t[i] == '\t')) ++i;
        if (i < n && t[i] == '"') {
          ++i;
          std::string sub;
          bool closed = false;
          while (i < n && t[i] != '\n') {
            if (t[i] == '\\' && i + 1 < n && t[i + 1] != '\n') {
              sub += t[i + 1];
              i += 2;
              continue;
            }
            if (t[i] == '"') {
              closed = true;
              ++i;
              break;
            }
            sub += t[i++];
          }
          if (closed && i < n && t[i] == ']') {
            ++i;
            section = lower(name) + "." + sub;
            have_section = true;
            continue;
          }
        }
      }
      skip_line();  // malformed header: git refuses the file, so nothing in it runs
      continue;
    }
    if (!std::isalpha(static_cast<unsigned char>(c)) || !have_section) {
      skip_line();
      continue;
    }
    std::string name;
    while (i < n && is_name_char(t[i])) name += t[i++];
    while (i < n && (t[i] == ' ' || t[i] == '\t')) ++i;
    GitConfigEntry e;
    e.key = section + "." + lower(name);
    if (i >= n || t[i] == '\n' || t[i] == '\r' || t[i] == '#' || t[i] == ';') {
      e.value = "true";
      out.push_back(std::move(e));
      skip_line();
      continue;
    }
    if (t[i] != '=') {
      skip_line();
      continue;
    }
    ++i;
    while (i < n && (t[i] == ' ' || t[i] == '\t')) ++i;
    std::string v;
    size_t keep = 0;  // v's length up to its last character that is not unquoted whitespace
    bool quoted = false;
    while (i < n) {
      char d = t[i];
      if (d == '\n' && !quoted) break;
      if (d == '\\' && i + 1 < n) {
        char e2 = t[i + 1];
        i += 2;
        if (e2 == '\n') continue;  // a continuation line
        if (e2 == '\r' && i < n && t[i] == '\n') {
          ++i;
          continue;
        }
        v += e2 == 'n' ? '\n' : e2 == 't' ? '\t' : e2 == 'b' ? '\b' : e2;
        keep = v.size();
        continue;
      }
      ++i;
      if (d == '"') {
        quoted = !quoted;
        keep = v.size();
        continue;
      }
      if (!quoted && (d == '#' || d == ';')) {
        skip_line();
        break;
      }
      if (d == '\n') break;  // git ends a quote at the line's end too
      v += d;
      if (quoted || (d != ' ' && d != '\t' && d != '\r')) keep = v.size();
    }
    v.resize(keep);
    e.value = std::move(v);
    out.push_back(std::move(e));
  }
  return out;
}

bool git_key_runs_code(const std::string& key, const std::string& value) {
  static const std::set<std::string> kExact = {
      "core.fsmonitor",       "core.hookspath",      "core.sshcommand",    "core.gitproxy",
      "core.pager",           "core.editor",         "core.askpass",       "core.alternaterefscommand",
      "sequence.editor",      "diff.external",       "credential.helper",  "gpg.program",
      "include.path",         "uploadpack.packobjectshook", "web.browser", "interactive.difffilter",
      "sendemail.smtpserver", "protocol.allow",      "sendemail.sendmailcmd"};
  if (kExact.count(key)) return true;
  size_t first = key.find('.'), last = key.rfind('.');
  if (first == std::string::npos) return false;
  std::string section = key.substr(0, first), name = key.substr(last + 1);
  bool sub = last > first;
  if (section == "alias") return !value.empty() && value[0] == '!';
  if (section == "pager") return true;  // pager.<cmd>: a program for that command's output
  if (!sub) return false;
  if (section == "includeif") return name == "path";
  if (section == "filter") return name == "clean" || name == "smudge" || name == "process";
  if (section == "diff") return name == "textconv" || name == "command";
  if (section == "merge") return name == "driver";
  if (section == "credential") return name == "helper";
  if (section == "gpg") return name == "program";
  if (section == "difftool" || section == "mergetool") return name == "cmd" || name == "path";
  if (section == "remote") return name == "uploadpack" || name == "receivepack";
  if (section == "browser" || section == "man") return name == "cmd" || name == "path";
  if (section == "hook") return name == "command";
  // ext:: transports run a command; a URL rewrite can send a later fetch there.
  if (section == "protocol") return name == "allow";
  if (section == "url") return name == "insteadof" || name == "pushinsteadof";
  return false;
}

namespace {

// Opens `name` below `dirfd` as a regular file, never through a symlink, owned by `uid`
// or root, with one link (a hard link to another file would be read as that file).
std::optional<std::string> read_config_at(int dirfd, const char* name, uid_t uid) {
  UniqueFd fd(::openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
  if (!fd) return std::nullopt;
  struct stat st{};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || (st.st_uid != uid && st.st_uid != 0) ||
      st.st_nlink != 1)
    return std::nullopt;
  std::string text;
  char buf[8192];
  while (text.size() < kMaxConfigBytes) {
    ssize_t r = ::read(fd.get(), buf, sizeof buf);
    if (r <= 0) break;
    text.append(buf, static_cast<size_t>(r));
  }
  return text;
}

UniqueFd open_dir_at(int dirfd, const char* name) {
  return UniqueFd(::openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
}

void take(GitConfigSnapshot& out, const std::string& path, const std::optional<std::string>& text) {
  if (!text) return;
  auto& entries = out[path];
  for (auto& e : parse_git_config(*text))
    if (git_key_runs_code(e.key, e.value)) entries.push_back(std::move(e));
}

void read_git_dir(GitConfigSnapshot& out, int gitdir, const std::string& path, uid_t uid, int depth) {
  take(out, path + "/config", read_config_at(gitdir, "config", uid));
  take(out, path + "/config.worktree", read_config_at(gitdir, "config.worktree", uid));
  if (depth >= 3) return;  // submodules of submodules of submodules: enough
  UniqueFd mods = open_dir_at(gitdir, "modules");
  if (!mods) return;
  DIR* d = ::fdopendir(::dup(mods.get()));
  if (!d) return;
  std::vector<std::string> names;
  while (dirent* de = ::readdir(d))
    if (de->d_name[0] != '.') names.push_back(de->d_name);
  ::closedir(d);
  std::sort(names.begin(), names.end());
  if (names.size() > 256) names.resize(256);
  for (const auto& m : names) {
    UniqueFd sub = open_dir_at(mods.get(), m.c_str());
    if (sub) read_git_dir(out, sub.get(), path + "/modules/" + m, uid, depth + 1);
  }
}

}  // namespace

GitConfigSnapshot snapshot_git_config(const std::string& workspace, uid_t uid) {
  GitConfigSnapshot out;
  if (workspace.empty() || workspace[0] != '/') return out;
  UniqueFd ws(::open(workspace.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!ws) return out;
  if (UniqueFd git = open_dir_at(ws.get(), ".git")) {
    read_git_dir(out, git.get(), workspace + "/.git", uid, 0);
    return out;
  }
  // A `.git` file (a worktree or submodule checkout) names its git directory. Only one
  // inside the workspace is read: one outside is not the agent's to change.
  auto link = read_config_at(ws.get(), ".git", uid);
  if (!link || link->rfind("gitdir:", 0) != 0) return out;
  std::string dir = link->substr(7);
  while (!dir.empty() && (dir.back() == '\n' || dir.back() == '\r' || dir.back() == ' ')) dir.pop_back();
  while (!dir.empty() && dir.front() == ' ') dir.erase(0, 1);
  if (dir.empty() || dir[0] == '/' || dir.find("..") != std::string::npos) return out;
  // Component by component, never through a symlink.
  UniqueFd cur(::dup(ws.get()));
  size_t pos = 0;
  while (cur && pos < dir.size()) {
    size_t slash = dir.find('/', pos);
    std::string part = dir.substr(pos, slash == std::string::npos ? std::string::npos : slash - pos);
    pos = slash == std::string::npos ? dir.size() : slash + 1;
    if (part.empty() || part == ".") continue;
    cur = open_dir_at(cur.get(), part.c_str());
  }
  if (cur) read_git_dir(out, cur.get(), workspace + "/" + dir, uid, 0);
  return out;
}

std::vector<GitConfigChange> git_config_changes(const GitConfigSnapshot& before, const GitConfigSnapshot& after) {
  std::vector<GitConfigChange> out;
  static const std::vector<GitConfigEntry> kNone;
  std::set<std::string> files;
  for (const auto& [f, _] : before) files.insert(f);
  for (const auto& [f, _] : after) files.insert(f);
  for (const auto& f : files) {
    auto b = before.count(f) ? before.at(f) : kNone;
    auto a = after.count(f) ? after.at(f) : kNone;
    // A key may repeat (multi-valued: include.path, credential.helper): compared as the
    // ordered list of its values.
    std::map<std::string, std::vector<std::string>> bv, av;
    for (const auto& e : b) bv[e.key].push_back(e.value);
    for (const auto& e : a) av[e.key].push_back(e.value);
    std::set<std::string> keys;
    for (const auto& [k, _] : bv) keys.insert(k);
    for (const auto& [k, _] : av) keys.insert(k);
    for (const auto& k : keys) {
      const auto& x = bv[k];
      const auto& y = av[k];
      if (x == y) continue;
      for (const auto& v : y)
        if (std::find(x.begin(), x.end(), v) == x.end())
          out.push_back({f, k, x.empty() ? "" : x.back(), v, x.empty(), false});
      for (const auto& v : x)
        if (std::find(y.begin(), y.end(), v) == y.end() && y.empty()) out.push_back({f, k, v, "", false, true});
    }
  }
  return out;
}

v1::Event git_change_event(const GitConfigChange& c, const std::string& sandbox_id, const std::string& node,
                           bool before_unknown) {
  v1::Event ev;
  ev.set_sandbox_id(sandbox_id);
  ev.set_node(node);
  auto now = std::chrono::system_clock::now().time_since_epoch();
  ev.set_time_ns(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(now).count()));
  auto* v = ev.mutable_violation();
  v->set_mechanism("git-config");
  v->set_action("audit");
  v->set_rule("filesystem.git_config: report (" + c.key + " runs a program at a later git command)");
  std::string where = printable_text(c.file);
  if (before_unknown)
    v->set_what(fmt::format("{} is {} in {} at the end of the run (what it was before is unknown: agentcaged "
                            "restarted meanwhile): it runs at your next git command in this repository",
                            c.key, printable_text(c.after), where));
  else if (c.removed)
    v->set_what(fmt::format("the agent removed {} = {} from {}", c.key, printable_text(c.before), where));
  else
    v->set_what(fmt::format("the agent set {} to {} in {}{}: it runs at your next git command in this repository",
                            c.key, printable_text(c.after), where,
                            c.added ? "" : " (was " + printable_text(c.before) + ")"));
  return ev;
}

}  // namespace agentcage::core
