// SPDX-License-Identifier: Apache-2.0
// `agentcage run --profile` end to end: the shipped profiles enforced on real processes
// (root-started, as an agent runtime often is), every denial reported as a violation
// naming its mechanism, the agent's exit status kept.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "support/loopback_listener.h"
#include "support/subprocess.h"

namespace agentcage {
namespace {

using testing::run;

#define REQUIRE_ROOT() \
  if (geteuid() != 0) GTEST_SKIP() << "needs root: loads BPF programs, creates cgroups and namespaces"

std::string read_all(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

using Listener = testing::LoopbackListener;

std::string connect_cmd(const std::string& host, int port) {
  return "python3 -c 'import socket,sys\ntry:\n  socket.create_connection((\"" + host + "\"," + std::to_string(port) +
         "),timeout=3); print(\"connected\")\nexcept OSError as e: print(\"refused\", e.errno)'";
}

class ProfileRun : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_ROOT();
    ws_ = testing::temp_dir();
    std::ofstream(ws_ + "/notes.txt") << "project notes\n";
  }
  testing::ProcResult agent(const std::string& profile, const std::string& script) {
    return run({AGENTCAGE_BIN, "run", "--no-daemon", "--profile", profile, "--workspace", ws_, "--", "sh", "-c",
                "cd " + ws_ + " && " + script});
  }
  std::string ws_;
};

TEST_F(ProfileRun, DefaultAllowsTheWorkspaceAndDeniesSecretsSystemWritesAndNetwork) {
  Listener l;
  auto r = agent("default", "cat notes.txt && echo result > out.txt && cat /etc/shadow; touch /usr/x; " +
                                connect_cmd("127.0.0.1", l.port) + "; exit 3");
  EXPECT_EQ(r.status, 3) << r.err;  // the agent's own status
  EXPECT_NE(r.out.find("project notes"), std::string::npos) << r.out << r.err;
  EXPECT_EQ(read_all(ws_ + "/out.txt"), "result\n");
  EXPECT_EQ(access("/usr/x", F_OK), -1);
  EXPECT_NE(r.out.find("refused 1"), std::string::npos) << r.out;  // EPERM
  // Each denial is a violation naming its mechanism, and the summary counts them.
  EXPECT_NE(r.err.find("open /etc/shadow (mount-mask, filesystem.deny: /etc/shadow)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("/usr/x (mount-mask"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("connect 127.0.0.1:" + std::to_string(l.port) + "/tcp (cgroup-bpf"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("violations: cgroup-bpf 1, mount-mask 2"), std::string::npos) << r.err;
}

// An agent that switches the terminal to the alternate screen and hidden text cannot
// conceal what agentcage reports: on a terminal each relayed violation line resets the
// attributes, and the summary leaves the alternate screen first. Not on a pipe.
TEST_F(ProfileRun, ViolationReportsResetTerminalStateTheAgentChanged) {
  const std::string script = "printf '\\033[?1049h\\033[8m\\033[?25l'; cat /etc/shadow; true";
  std::string cmd = std::string(AGENTCAGE_BIN) + " run --no-daemon --no-store --profile default --workspace " + ws_ +
                    " -- sh -c \"" + script + "\"";
  // script(1) gives the run a pseudo-terminal and copies what it writes to stdout.
  auto r = run({"script", "-qefc", cmd, "/dev/null"});
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  auto agent_alt = r.out.find("\033[?1049h");
  auto relayed = r.out.find("\033[0magentcage: violation: ");
  auto summary = r.out.find("\033[?1049l\033[0m\033[?25h\ragentcage: ");
  ASSERT_NE(agent_alt, std::string::npos) << r.out;
  ASSERT_NE(relayed, std::string::npos) << "relayed line without an attribute reset:\n" << r.out;
  ASSERT_NE(summary, std::string::npos) << "summary without a terminal reset:\n" << r.out;
  EXPECT_LT(agent_alt, relayed);
  EXPECT_LT(relayed, summary);
  EXPECT_NE(r.out.find(" violation", summary), std::string::npos) << r.out;
  // On a pipe nothing is added: stderr stays plain text for logs and tools.
  auto plain = agent("default", "cat /etc/shadow; true");
  EXPECT_NE(plain.err.find("agentcage: violation: "), std::string::npos) << plain.err;
  EXPECT_EQ(plain.err.find('\033'), std::string::npos) << plain.err;
}

TEST_F(ProfileRun, DefaultDeniesDangerousSyscallsWithSeccomp) {
  auto r = agent("default", "unshare -U true; echo rc=$?");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("rc=1"), std::string::npos) << r.out << r.err;
  EXPECT_NE(r.err.find("(seccomp"), std::string::npos) << r.err;
}

// coding-agent reaches public HTTPS but not the host's own services, and a connect to
// the cloud metadata address kills the process on the spot (before any packet leaves).
TEST_F(ProfileRun, CodingAgentDeniesLoopbackAndKillsOnMetadataAccess) {
  Listener l;
  auto r = agent("coding-agent", connect_cmd("127.0.0.1", l.port));
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("refused 1"), std::string::npos) << r.out << r.err;
  EXPECT_NE(r.err.find("deny connect 127.0.0.1:" + std::to_string(l.port)), std::string::npos) << r.err;

  auto k = agent("coding-agent", "exec " + connect_cmd("169.254.169.254", 443));
  EXPECT_EQ(k.status, 128 + 9) << k.out << k.err;
  EXPECT_NE(k.err.find("kill connect 169.254.169.254:443/tcp (cgroup-bpf"), std::string::npos) << k.err;
}

TEST_F(ProfileRun, AuditModeAllowsAndRecordsWhatWouldBeDenied) {
  Listener l;
  std::string prof = ws_ + "/../audit-" + std::to_string(getpid()) + ".yaml";
  std::ofstream(prof) << "name: learn\ndescription: audit-mode default\nextends: default\nmode: audit\n";
  auto r = agent(prof, connect_cmd("127.0.0.1", l.port));
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("connected"), std::string::npos) << r.out << r.err;
  EXPECT_NE(r.err.find("audit connect 127.0.0.1:" + std::to_string(l.port)), std::string::npos) << r.err;
  unlink(prof.c_str());
}

TEST_F(ProfileRun, BadProfileIsAnErrorWithFileLineColumnAndNothingRuns) {
  std::string prof = ws_ + "/../bad-" + std::to_string(getpid()) + ".yaml";
  std::ofstream(prof) << "name: bad\nfilesystem:\n  reed: [/usr]\n";
  auto r = run({AGENTCAGE_BIN, "run", "--no-daemon", "--profile", prof, "--", "sh", "-c", "touch " + ws_ + "/ran"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find(prof + ":3:3: unknown key 'reed'"), std::string::npos) << r.err;
  EXPECT_NE(access((ws_ + "/ran").c_str(), F_OK), 0) << "the command ran despite a bad profile";
  unlink(prof.c_str());
}

template <class F>
bool eventually(F cond, std::chrono::seconds total) {
  auto end = std::chrono::steady_clock::now() + total;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return cond();
}

// Leaves about `keep` bytes free on the file system of `dir` (a tmpfs): a filler file.
void leave_free(const std::string& dir, uint64_t keep) {
  struct statvfs v{};
  ASSERT_EQ(statvfs(dir.c_str(), &v), 0);
  uint64_t avail = static_cast<uint64_t>(v.f_bavail) * v.f_frsize;
  ASSERT_GE(avail, keep);
  if (avail == keep) return;
  int fd = open((dir + "/filler").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(posix_fallocate(fd, 0, static_cast<off_t>(avail - keep)), 0);
  close(fd);
}

// -1: no process with `tag` is in an agentcage cgroup; else its cgroup's frozen state.
int frozen(const std::string& tag) {
  std::string cg2;
  std::istringstream mounts(read_all("/proc/self/mounts"));
  std::string dev, mp, type, rest;
  while (mounts >> dev >> mp >> type && std::getline(mounts, rest))
    if (type == "cgroup2" && cg2.empty()) cg2 = mp;
  for (pid_t p : testing::processes_with(tag)) {
    std::string rel;
    for (const auto& line : testing::lines(read_all("/proc/" + std::to_string(p) + "/cgroup")))
      if (line.rfind("0::", 0) == 0) rel = line.substr(3);
    if (rel.find("/agentcage/") == std::string::npos) continue;
    auto ev = read_all(cg2 + rel + "/cgroup.events");
    if (ev.find("frozen 1") != std::string::npos) return 1;
    if (ev.find("frozen 0") != std::string::npos) return 0;
  }
  return -1;
}

// on_record_failure holds for in-process runs as for daemon sandboxes: the run's store on
// a real tmpfs that fills up. `stop` kills the run; a new run of such a profile is refused
// while the store refuses; `pause` freezes the run until space returns, then it finishes.
TEST_F(ProfileRun, InProcessRunsHonourOnRecordFailure) {
  std::string mnt = ws_ + "/../recfail-" + std::to_string(getpid());
  ASSERT_EQ(mkdir(mnt.c_str(), 0700), 0);
  // Room for the whole run once the filler is gone (its store grows to ~8 MB).
  ASSERT_EQ(run({"mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt}).status, 0);
  struct Unmount {
    std::string m;
    ~Unmount() { run({"umount", "-l", m}); }
  } unmount{mnt};
  std::string pdir = ws_ + "/../recfail-profiles-" + std::to_string(getpid());
  ASSERT_EQ(mkdir(pdir.c_str(), 0755), 0);
  std::ofstream(pdir + "/stopped.yaml") << "extends: default\non_record_failure: stop\n";
  std::ofstream(pdir + "/paused.yaml") << "extends: default\non_record_failure: pause\n";
  std::string tag = "agentcage-recfail-" + std::to_string(getpid());
  auto start_run = [&](const std::string& profile, const std::string& db, const std::string& script,
                       const std::string& out) {
    return testing::start({AGENTCAGE_BIN, "run", "--no-daemon", "--audit-db", db, "--profile", pdir + "/" + profile,
                           "--workspace", ws_, "--", "/bin/sh", "-c", script},
                          out);
  };
  const std::string loop = "i=0; while [ $i -lt 400 ]; do /bin/echo x >/dev/null; i=$((i+1)); done; echo finished # ";

  // 1. stop: the store fills under the run, which is killed.
  leave_free(mnt, 512 << 10);
  std::string out1 = ws_ + "/stopped.out";
  pid_t p1 = start_run("stopped.yaml", mnt + "/a.db", loop + tag + "-s", out1);
  int st1 = testing::wait_status(p1);
  EXPECT_NE(st1, 0) << read_all(out1);
  EXPECT_EQ(read_all(out1).find("finished"), std::string::npos) << "the run was not stopped";
  EXPECT_NE(read_all(out1).find("store_full"), std::string::npos) << read_all(out1);
  EXPECT_NE(read_all(out1).find("stopped (on_record_failure: stop)"), std::string::npos) << read_all(out1);

  // 2. While the store refuses, a run of such a profile does not start. Made certain: a
  // fresh store, a reader holding a snapshot (so SQLite cannot restart its WAL inside the
  // file it has) and almost no free block left, so the run's first record cannot be written.
  unlink((mnt + "/filler").c_str());
  std::string cdb = mnt + "/c.db";
  ASSERT_EQ(run({AGENTCAGE_BIN, "run", "--no-daemon", "--audit-db", cdb, "--", "/bin/true"}).status, 0);
  pid_t holder = testing::start({"/usr/bin/python3", "-c",
                                 "import sqlite3, sys, time\n"
                                 "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
                                 "c.execute('BEGIN'); c.execute('SELECT count(*) FROM events').fetchall()\n"
                                 "print('holding', flush=True); time.sleep(60)",
                                 cdb},
                                ws_ + "/holder.out");
  ASSERT_TRUE(eventually([&] { return read_all(ws_ + "/holder.out").find("holding") != std::string::npos; },
                         std::chrono::seconds(10)))
      << read_all(ws_ + "/holder.out");
  // A few pages: enough for the store to open, not for a transaction that adds a row and
  // its index entries.
  leave_free(mnt, 16 << 10);
  auto refused = run({AGENTCAGE_BIN, "run", "--no-daemon", "--audit-db", cdb, "--profile", pdir + "/stopped.yaml",
                      "--workspace", ws_, "--", "/bin/echo", "ran"});
  kill(holder, SIGKILL);
  testing::wait_status(holder);
  EXPECT_NE(refused.status, 0);
  EXPECT_EQ(refused.out.find("ran"), std::string::npos);
  EXPECT_NE(refused.err.find("the audit store cannot record (store_full), and profile 'stopped' says "
                             "on_record_failure: stop"),
            std::string::npos)
      << refused.out << refused.err;

  // 3. pause: frozen while the store refuses, thawed when space returns; it finishes and
  // the gap is on record.
  unlink((mnt + "/filler").c_str());
  for (const char* db : {"/a.db", "/c.db"})
    for (const char* suffix : {"", "-wal", "-shm", ".id"}) unlink((mnt + db + suffix).c_str());
  leave_free(mnt, 512 << 10);
  std::string out3 = ws_ + "/paused.out";
  pid_t p3 = start_run("paused.yaml", mnt + "/b.db", loop + tag + "-p", out3);
  EXPECT_TRUE(eventually([&] { return frozen(tag + "-p") == 1 || !testing::pid_alive(p3); }, std::chrono::seconds(60)))
      << read_all(out3);
  EXPECT_EQ(frozen(tag + "-p"), 1) << read_all(out3);
  EXPECT_TRUE(testing::pid_alive(p3));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(frozen(tag + "-p"), 1) << "thawed while the store still refuses";
  unlink((mnt + "/filler").c_str());
  int st3 = testing::wait_status(p3);
  EXPECT_EQ(st3, 0) << read_all(out3);
  EXPECT_NE(read_all(out3).find("finished"), std::string::npos) << read_all(out3);
  EXPECT_NE(read_all(out3).find("resumed: the audit store records again"), std::string::npos) << read_all(out3);
  auto v = run({AGENTCAGE_BIN, "audit", "verify", "--db", mnt + "/b.db"});
  EXPECT_EQ(v.status, 0) << v.out << v.err;
  auto n = run({"sqlite3", mnt + "/b.db", "select count(*) from events where kind = 'loss'"});
  EXPECT_GE(std::stoi(n.out.empty() ? "0" : n.out), 1) << n.out << n.err;
}

}  // namespace
}  // namespace agentcage

namespace agentcage {
namespace {

// Embedded mode (no daemon) records into the same hash-chained store the daemon keeps:
// the run and its violations are on record and the chain verifies.
TEST_F(ProfileRun, EmbeddedRunIsRecordedInTheAuditStore) {
  std::string db = ws_ + "/../audit-" + std::to_string(getpid()) + ".db";
  auto r = run({AGENTCAGE_BIN, "run", "--no-daemon", "--audit-db", db, "--profile", "default", "--workspace", ws_, "--",
                "sh", "-c", "cat /etc/shadow; echo recorded-run"});
  EXPECT_EQ(r.status, 0) << r.err;
  auto v = run({AGENTCAGE_BIN, "audit", "verify", "--db", db});
  EXPECT_EQ(v.status, 0) << v.out << v.err;
  EXPECT_EQ(v.out.rfind("OK: ", 0), 0u) << v.out;
  auto n = run({"sqlite3", db, "select count(*) from events where is_violation = 1"});
  EXPECT_EQ(n.status, 0) << n.err;
  EXPECT_GE(std::stoi(n.out.empty() ? "0" : n.out), 1) << "the shadow read's violation is not in the store";
  for (const char* suffix : {"", "-wal", "-shm"}) unlink((db + suffix).c_str());
}

// Issue 11 item 4: a root run never resolves a profile through a file another user can
// write. nobody plants a permissive default.yaml in a directory on root's search path;
// root's `--profile default` skips it (saying so) and gets the shipped default, in-process
// and through agentcaged, whose search path holds the same directory.
TEST_F(ProfileRun, ARootRunSkipsAProfileAnotherUserPlanted) {
  std::string evil = testing::temp_dir();
  chmod(evil.c_str(), 0755);
  std::ofstream(evil + "/default.yaml") << "name: default\nfilesystem:\n  read: [/]\n  write: [/tmp]\n";
  ASSERT_EQ(chown((evil + "/default.yaml").c_str(), 65534, 65534), 0);
  ASSERT_EQ(chown(evil.c_str(), 65534, 65534), 0);
  const std::string env = "AGENTCAGE_PROFILE_PATH=" + evil;
  auto r = run({"/usr/bin/env", env, AGENTCAGE_BIN, "run", "--no-daemon", "--no-store", "--profile", "default",
                "--workspace", ws_, "--", "cat", "/etc/shadow"});
  EXPECT_NE(r.status, 0) << "the planted profile let root's run read /etc/shadow:\n" << r.out;
  EXPECT_EQ(r.out.find("root:"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find(evil + "/default.yaml: skipped: " + evil + " is owned by uid 65534"),
            std::string::npos)
      << r.err;

  std::string dir = testing::temp_dir(), sock = dir + "/agentcage.sock";
  std::vector<std::string> argv{"/usr/bin/env", env, AGENTCAGED_BIN, "--socket", sock, "--audit-db", dir + "/a.db"};
  for (auto& a : testing::daemon_state_args(dir)) argv.push_back(a);
  pid_t d = testing::start(argv, dir + "/daemon.log");
  ASSERT_TRUE(testing::wait_until([&] { return access(sock.c_str(), F_OK) == 0; }, std::chrono::seconds(10)))
      << testing::read_all(dir + "/daemon.log");
  auto viad = run({"/usr/bin/env", env, AGENTCAGE_BIN, "run", "--socket", sock, "--profile", "default", "--workspace",
                   ws_, "--", "cat", "/etc/shadow"});
  kill(d, SIGTERM);
  testing::wait_status(d);
  testing::remove_daemon_pins(dir);
  EXPECT_NE(viad.status, 0) << viad.out << testing::read_all(dir + "/daemon.log");
  EXPECT_EQ(viad.out.find("root:"), std::string::npos) << viad.out;
  EXPECT_NE(viad.err.find("(mount-mask, filesystem.deny: /etc/shadow)"), std::string::npos) << viad.err;
}

// Issue 11 item 2: the private scratch tmpfs mounts are bounded (filesystem.tmp_size,
// default 1 GiB): a write past the bound fails with ENOSPC instead of filling the host's
// memory; /tmp and /dev/shm have the same bound.
TEST_F(ProfileRun, PrivateTmpfsMountsAreBounded) {
  std::string prof = ws_ + "/../tmpsize-" + std::to_string(getpid()) + ".yaml";
  std::ofstream(prof) << "name: tmpsize\nextends: default\nfilesystem:\n  write: [/tmp]\n  tmp_size: 1048576\n";
  auto r = agent(prof, "head -c 2097152 /dev/zero > /tmp/big; echo tmp=$?; df -k /tmp /dev/shm | tail -n 2 |"
                       " awk '{print \"size=\" $2}'");
  EXPECT_NE(r.out.find("tmp=1"), std::string::npos) << r.out << r.err;
  EXPECT_NE(r.out.find("size=1024\nsize=1024"), std::string::npos) << "/tmp and /dev/shm: " << r.out << r.err;
  EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
  // The shipped default bounds them too.
  auto d = agent("default", "df -k /dev/shm | tail -n 1 | awk '{print \"size=\" $2}'");
  EXPECT_NE(d.out.find("size=1048576"), std::string::npos) << d.out << d.err;
  unlink(prof.c_str());
}

}  // namespace
}  // namespace agentcage
