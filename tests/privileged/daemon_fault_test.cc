// SPDX-License-Identifier: Apache-2.0
// Faults on the daemon's event path, with real processes and loopback sockets only:
//  - agentcaged killed with SIGKILL mid-load and restarted on the same store: nothing
//    it had stored is lost or changed, the chain verifies, and the collector ends with
//    every stored event exactly once;
//  - the collector killed and restarted under load: the daemon's stream resumes and
//    every event arrives exactly once;
//  - a Subscribe client that stops reading (SIGSTOP) slows neither the kernel reader nor
//    another subscriber; its drops are counted and reported to it in-band.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "core/store/store.h"
#include "support/daemon_process.h"
#include "support/subprocess.h"

namespace agentcage {
namespace {

using namespace std::chrono_literals;

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// Calls fn on the events of `kinds` (empty: all) in a store opened read-only (writers may
// be running); fn returns false to stop. False when the store cannot be opened or read.
template <class F>
bool for_each_stored(const std::string& db, std::vector<std::string> kinds, F fn) {
  core::StoreOptions o;
  o.read_only = true;
  auto s = core::EventStore::open(db, o);
  if (!s) return false;
  core::StoreQuery q;
  q.kinds = std::move(kinds);
  return (*s)->query(q, fn).has_value();
}

// seq -> canonical bytes of every event in a store (read-only; writers may be running).
// A collector store keys by origin seq (the event's own seq field).
std::map<uint64_t, std::string> store_events(const std::string& db, size_t* rows = nullptr) {
  std::map<uint64_t, std::string> out;
  size_t n = 0;
  for_each_stored(db, {}, [&](const v1::Event& e) {
    ++n;
    out[e.seq()] = core::canonical_bytes(e);
    return true;
  });
  if (rows) *rows = n;
  return out;
}

// The store's head (a collector store: its own row count, not origin seqs).
uint64_t last_seq(const std::string& db) {
  core::StoreOptions o;
  o.read_only = true;
  auto s = core::EventStore::open(db, o);
  return s ? (*s)->last_seq() : 0;
}

// The JSON event lines of an `agentcage events` output file.
std::vector<std::string> event_lines(const std::string& text) {
  std::vector<std::string> out;
  for (auto& l : testing::lines(text))
    if (!l.empty() && l[0] == '{') out.push_back(std::move(l));
  return out;
}

bool has_marker(const std::string& db, const std::string& marker) {
  bool found = false;
  for_each_stored(db, {"exec"}, [&](const v1::Event& e) {
    for (const auto& a : e.process().argv()) found |= a == marker;
    return !found;
  });
  return found;
}

template <class F>
bool wait_for(F cond, std::chrono::milliseconds total) {
  auto end = std::chrono::steady_clock::now() + total;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return cond();
}

class Fault : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: agentcaged loads BPF programs";
    dir_ = testing::temp_dir();
    cdb_ = dir_ + "/collector.db";
    ddb_ = dir_ + "/audit.db";
    sock_ = dir_ + "/agentcage.sock";
  }
  void TearDown() override {
    for (pid_t* p : {&load_, &daemon_, &coll_})
      if (*p > 0) {
        kill(*p, SIGKILL);
        testing::wait_status(*p);
        *p = -1;
      }
    testing::remove_daemon_pins(dir_);
  }

  // Starts the collector on `port` (0: any); returns the port it listens on.
  int start_collector(int port) {
    auto log = dir_ + fmt::format("/collector.{}.log", ++collector_runs_);
    coll_ = testing::start({AGENTCAGE_BIN, "collector", "--listen", fmt::format("127.0.0.1:{}", port), "--db", cdb_,
                            "--insecure", "--insecure-accept-any-node"},
                           log);
    int got = 0;
    wait_for(
        [&] {
          std::smatch m;
          std::string text = slurp(log);
          if (std::regex_search(text, m, std::regex("listening on 127\\.0\\.0\\.1:([0-9]+)"))) got = std::stoi(m[1]);
          return got != 0 || !testing::pid_alive(coll_);
        },
        10s);
    EXPECT_GT(got, 0) << slurp(log);
    return got;
  }

  void start_daemon(const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {AGENTCAGED_BIN, "--audit-db", ddb_, "--socket", sock_};
    for (auto& a : testing::daemon_state_args(dir_)) argv.push_back(a);
    argv.insert(argv.end(), extra.begin(), extra.end());
    daemon_ = testing::start(argv, dir_ + fmt::format("/daemon.{}.log", ++daemon_runs_));
  }
  std::string daemon_log() { return slurp(dir_ + fmt::format("/daemon.{}.log", daemon_runs_)); }

  // Waits until the daemon records (a marker exec is in its store): its programs are live.
  void await_recording(const std::string& tag) {
    std::string marker = fmt::format("agentcage-fault-{}-{}", tag, getpid());
    bool ok = wait_for(
        [&] {
          if (!testing::pid_alive(daemon_)) return true;
          testing::run({"/bin/echo", marker});
          return has_marker(ddb_, marker);
        },
        30s);
    ASSERT_TRUE(ok && testing::pid_alive(daemon_)) << daemon_log().substr(0, 4000);
  }

  // Host-wide load: a shell execs /bin/true in a loop until killed.
  void start_load() {
    load_ = testing::start({"/bin/sh", "-c", "while :; do /bin/true; done"}, dir_ + "/load.log");
  }
  void stop_load() {
    kill(load_, SIGKILL);
    testing::wait_status(load_);
    load_ = -1;
  }

  // Ships what the daemon's stream did not get to before it stopped (same store, same
  // collector: the collector's dedup must absorb any overlap).
  void push_rest(int port) {
    auto r = testing::run({AGENTCAGE_BIN, "audit", "push", "--db", ddb_, "--endpoint", fmt::format("127.0.0.1:{}", port),
                           "--insecure", "--all", "--once", "--timeout", "60"});
    ASSERT_EQ(r.status, 0) << r.out << r.err;
  }

  // Every event of the daemon's store is in the collector's, once, byte for byte.
  void expect_exactly_once() {
    size_t crows = 0;
    auto local = store_events(ddb_), remote = store_events(cdb_, &crows);
    ASSERT_FALSE(local.empty());
    EXPECT_EQ(crows, remote.size()) << "the collector holds an event twice";
    EXPECT_EQ(remote.size(), local.size());
    size_t missing = 0, differ = 0, extra = 0;
    for (const auto& [seq, bytes] : local) {
      auto it = remote.find(seq);
      if (it == remote.end()) ++missing;
      else if (it->second != bytes) ++differ;
    }
    for (const auto& [seq, _] : remote) extra += !local.count(seq);
    EXPECT_EQ(missing, 0u);
    EXPECT_EQ(differ, 0u);
    EXPECT_EQ(extra, 0u);
    for (const auto& db : {ddb_, cdb_}) {
      auto v = testing::run({AGENTCAGE_BIN, "audit", "verify", "--db", db});
      EXPECT_EQ(v.status, 0) << db << ": " << v.out << v.err;
    }
  }

  std::string dir_, cdb_, ddb_, sock_;
  pid_t coll_ = -1, daemon_ = -1, load_ = -1;
  int collector_runs_ = 0, daemon_runs_ = 0;
};

// A store whose pages were overwritten (a torn write, a bad disk) opens "healthy" for a
// plain SQLite open; agentcaged checks its pages at start and refuses it, naming the
// damage, instead of starting and failing on whichever query meets the page.
TEST_F(Fault, ADamagedStorePageStopsTheDaemonAtStart) {
  {
    auto s = core::EventStore::open(ddb_, {});
    ASSERT_TRUE(s.has_value()) << s.error().message();
    std::vector<v1::Event> evs(5000);
    for (auto& e : evs) e.mutable_exec()->set_filename("/bin/echo");
    ASSERT_TRUE((*s)->append_batch(evs).has_value());
  }
  auto size = std::filesystem::file_size(ddb_);
  {
    FILE* f = fopen(ddb_.c_str(), "r+b");
    ASSERT_NE(f, nullptr);
    std::string junk(4096, '\x5a');
    ASSERT_EQ(fseek(f, static_cast<long>(size / 4096 / 2) * 4096, SEEK_SET), 0);
    ASSERT_EQ(fwrite(junk.data(), 1, junk.size(), f), junk.size());
    fclose(f);
  }
  start_daemon({});
  int st = testing::wait_status(daemon_);
  daemon_ = -1;
  EXPECT_NE(st, 0);
  EXPECT_NE(daemon_log().find("its pages are damaged (SQLite quick_check:"), std::string::npos) << daemon_log();
  EXPECT_EQ(access(sock_.c_str(), F_OK), -1) << "it served on a damaged store";
}

// The fault review: a store deleted with its identity file (its whole directory) came
// back as a first start. agentcaged's witness outside the store's directory still names
// the store that was there: the new store's first record is a Loss saying so, and status
// tells it (the details to root only).
TEST_F(Fault, AStoreDeletedWithItsIdentityFileIsToldAtTheNextStart) {
  testing::make_reachable(AGENTCAGE_BIN);
  testing::make_reachable(sock_);
  auto status = [&](bool nobody) {
    std::vector<std::string> argv = {AGENTCAGE_BIN, "status", "--socket", sock_};
    return testing::run(nobody ? testing::as_nobody(argv) : argv).out;
  };
  auto started = [&] {
    return wait_for([&] { return access(sock_.c_str(), F_OK) == 0 || !testing::pid_alive(daemon_); }, 20s) &&
           testing::pid_alive(daemon_);
  };
  auto stop = [&] {
    kill(daemon_, SIGTERM);
    int st = testing::wait_status(daemon_);
    daemon_ = -1;
    return st;
  };
  start_daemon({});
  ASSERT_TRUE(started()) << daemon_log();
  EXPECT_EQ(status(false).find("store origin:"), std::string::npos) << "a first store has no finding";
  std::string old_id;
  {
    core::StoreOptions o;
    o.read_only = true;
    auto s = core::EventStore::open(ddb_, o);
    ASSERT_TRUE(s.has_value()) << s.error().message();
    old_id = (*s)->store_id();
  }
  ASSERT_EQ(stop(), 0) << daemon_log();
  for (const char* suffix : {"", "-wal", "-shm", ".id"}) std::filesystem::remove(ddb_ + suffix);

  start_daemon({});
  ASSERT_TRUE(started()) << daemon_log();
  std::string st = status(false);
  EXPECT_NE(st.find("store origin: store: " + ddb_ + " is a new store; store " + old_id + " was there"),
            std::string::npos)
      << st;
  EXPECT_NE(st.find("its identity file with it (the witness " + dir_ + "/witness/"), std::string::npos) << st;
  std::string theirs = status(true);
  EXPECT_NE(theirs.find("store origin: a new or rolled-back store (details for root)"), std::string::npos) << theirs;
  EXPECT_EQ(theirs.find(old_id), std::string::npos) << "the old store's id is root's to see";
  std::vector<v1::Event> first;
  for_each_stored(ddb_, {}, [&](const v1::Event& e) {
    first.push_back(e);
    return false;
  });
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].seq(), 1u);
  EXPECT_EQ(first[0].loss().reason(), "store_replaced");
  EXPECT_NE(first[0].loss().where().find(old_id), std::string::npos) << first[0].loss().where();
  // Told once: the next start continues this store.
  ASSERT_EQ(stop(), 0) << daemon_log();
  start_daemon({});
  ASSERT_TRUE(started()) << daemon_log();
  EXPECT_EQ(status(false).find("store origin:"), std::string::npos) << status(false);
}

TEST_F(Fault, DaemonKilledMidLoadLosesNothingStored) {
  int port = start_collector(0);
  ASSERT_GT(port, 0);
  std::vector<std::string> args = {"--monitor", "host", "--audit-endpoint", fmt::format("127.0.0.1:{}", port),
                                   "--audit-insecure", "--audit-all"};
  start_daemon(args);
  await_recording("first");
  start_load();
  // Let the load build up in the store, then snapshot what is stored and kill at once.
  uint64_t base = last_seq(ddb_);
  ASSERT_TRUE(wait_for([&] { return last_seq(ddb_) > base + 2000; }, 30s)) << "no load recorded";
  auto before = store_events(ddb_);
  kill(daemon_, SIGKILL);
  EXPECT_EQ(testing::wait_status(daemon_), 128 + SIGKILL);
  daemon_ = -1;

  // Same store, same socket path (the stale socket is the dead daemon's), load still on.
  start_daemon(args);
  await_recording("second");
  uint64_t head = last_seq(ddb_);
  ASSERT_TRUE(wait_for([&] { return last_seq(ddb_) > head + 500; }, 30s)) << daemon_log().substr(0, 4000);
  stop_load();
  kill(daemon_, SIGTERM);
  EXPECT_EQ(testing::wait_status(daemon_), 0) << daemon_log().substr(0, 4000);
  daemon_ = -1;

  auto after = store_events(ddb_);
  size_t lost = 0, changed = 0;
  for (const auto& [seq, bytes] : before) {
    auto it = after.find(seq);
    if (it == after.end()) ++lost;
    else if (it->second != bytes) ++changed;
  }
  EXPECT_EQ(lost, 0u) << "of " << before.size() << " stored before the kill";
  EXPECT_EQ(changed, 0u);
  EXPECT_GT(after.size(), before.size());
  // Seqs continue gap-free across the restart (audit verify checks the chain too).
  EXPECT_EQ(after.rbegin()->first - after.begin()->first + 1, after.size());
  printf("stored before the kill: %zu, at the end: %zu, collector before the final push: %zu\n", before.size(),
         after.size(), store_events(cdb_).size());
  push_rest(port);
  expect_exactly_once();
}

TEST_F(Fault, CollectorOutageUnderLoadDeliversEverythingOnce) {
  int port = start_collector(0);
  ASSERT_GT(port, 0);
  start_daemon({"--monitor", "host", "--audit-endpoint", fmt::format("127.0.0.1:{}", port), "--audit-insecure",
                "--audit-all"});
  await_recording("outage");
  start_load();
  ASSERT_TRUE(wait_for([&] { return last_seq(cdb_) > 1000; }, 30s)) << daemon_log().substr(0, 4000);
  // Kill, not stop: batches in flight are never acknowledged and must be sent again.
  kill(coll_, SIGKILL);
  testing::wait_status(coll_);
  coll_ = -1;
  uint64_t at_outage = last_seq(ddb_);
  ASSERT_TRUE(wait_for([&] { return last_seq(ddb_) > at_outage + 2000; }, 30s)) << "no load during the outage";
  ASSERT_EQ(start_collector(port), port);
  // The daemon's own stream (not the final push) fills the gap: wait for the collector to
  // reach what the daemon had stored well after the restart.
  std::this_thread::sleep_for(1s);
  uint64_t target = last_seq(ddb_);
  bool caught_up = wait_for(
      [&] {
        auto remote = store_events(cdb_);
        for (uint64_t s = 1; s <= target; ++s)
          if (!remote.count(s)) return false;
        return true;
      },
      60s);
  EXPECT_TRUE(caught_up) << "collector did not get seq 1.." << target << " after the outage\n"
                         << daemon_log().substr(0, 4000);
  stop_load();
  kill(daemon_, SIGTERM);
  EXPECT_EQ(testing::wait_status(daemon_), 0) << daemon_log().substr(0, 4000);
  daemon_ = -1;
  printf("collector had seq 1..%lu after the outage; stored at the end: %zu\n", target, store_events(ddb_).size());
  push_rest(port);
  expect_exactly_once();
}

// A subscriber that stops reading: gRPC flow control stops its stream, its bounded queue
// overflows and drops, and nobody else notices. The queue (--subscriber-queue 8192, an
// eighth of the default) holds two whole store-writer batches (at most 4096 events each,
// published at once), so a subscriber that reads never drops even when the loaded test
// machine pauses it for a moment, while the stalled one (about 20000 events) must.
// The store's file system fills up under load (an 8 MiB tmpfs): live subscribers learn it
// in-band at once (a Loss with reason store_full while the store still refuses, and the
// events themselves), `status` says the store is failing and why, and once space returns
// the store records how many events it could not keep, under that reason, and verifies.
TEST_F(Fault, DiskFullIsToldInBandAtOnceAndRecordedWhenSpaceReturns) {
  std::string mnt = dir_ + "/full";
  ASSERT_EQ(mkdir(mnt.c_str(), 0700), 0);
  ASSERT_EQ(testing::run({"mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt}).status, 0);
  struct Unmount {
    std::string m;
    pid_t* daemon;
    ~Unmount() {
      if (*daemon > 0) kill(*daemon, SIGKILL), testing::wait_status(*daemon), *daemon = -1;
      testing::run({"umount", "-l", m});
    }
  } unmount{mnt, &daemon_};
  ddb_ = mnt + "/audit.db";
  // Profiles that must not run unrecorded: one paused, one stopped while the store fails.
  std::string pdir = dir_ + "/profiles";
  ASSERT_EQ(mkdir(pdir.c_str(), 0755), 0);
  std::ofstream(pdir + "/paused.yaml") << "extends: default\non_record_failure: pause\n";
  std::ofstream(pdir + "/stopped.yaml") << "extends: default\non_record_failure: stop\n";
  // The audit stream goes to a collector whose disk is fine: it must hear of the failure
  // at once too, not when (if ever) the node's store recovers.
  int port = start_collector(0);
  ASSERT_GT(port, 0);
  setenv("AGENTCAGE_PROFILE_PATH", pdir.c_str(), 1);
  start_daemon({"--audit-endpoint", fmt::format("127.0.0.1:{}", port), "--audit-insecure"});
  unsetenv("AGENTCAGE_PROFILE_PATH");
  ASSERT_TRUE(wait_for([&] { return access(sock_.c_str(), F_OK) == 0 || !testing::pid_alive(daemon_); }, 20s));
  std::string tag = fmt::format("agentcage-recfail-{}", getpid());
  auto profiled = [&](const std::string& profile, const std::string& cmd, const std::string& out) {
    return testing::start({AGENTCAGE_BIN, "run", "--socket", sock_, "--profile", pdir + "/" + profile + ".yaml", "--",
                           "/bin/sh", "-c", cmd},
                          out);
  };
  pid_t paused = profiled("paused", "while :; do sleep 1; done # " + tag + "-p", dir_ + "/paused.out");
  pid_t stopped = profiled("stopped", "sleep 1000 # " + tag + "-s", dir_ + "/stopped.out");
  // The paused sandbox's shell, and whether its cgroup is frozen.
  std::string cg2;  // the cgroup2 mount (/sys/fs/cgroup, or .../unified on hybrid hosts)
  {
    std::istringstream mounts(slurp("/proc/self/mounts"));
    std::string dev, mp, type, rest;
    while (mounts >> dev >> mp >> type && std::getline(mounts, rest))
      if (type == "cgroup2" && cg2.empty()) cg2 = mp;
  }
  ASSERT_FALSE(cg2.empty());
  auto frozen = [&]() -> int {
    auto pids = testing::processes_with(tag + "-p");
    for (pid_t p : pids) {
      std::string rel;
      for (const auto& line : testing::lines(slurp(fmt::format("/proc/{}/cgroup", p))))
        if (line.rfind("0::", 0) == 0) rel = line.substr(3);
      if (rel.find("/agentcage/") == std::string::npos) continue;  // the client, not the sandbox
      std::string path = cg2 + rel;
      std::string events = slurp(path + "/cgroup.events");
      if (events.find("frozen 1") != std::string::npos) return 1;
      if (events.find("frozen 0") != std::string::npos) return 0;
    }
    return -1;
  };
  ASSERT_TRUE(wait_for([&] { return frozen() == 0 && testing::processes_with(tag + "-s").size() > 0; }, 20s))
      << slurp(dir_ + "/paused.out") << slurp(dir_ + "/stopped.out");
  pid_t sub = testing::start({AGENTCAGE_BIN, "events", "-f", "--socket", sock_}, dir_ + "/sub.json");
  auto status = [&] { return testing::run({AGENTCAGE_BIN, "status", "--socket", sock_}).out; };
  // It, and the violation relays of the two runs.
  ASSERT_TRUE(wait_for([&] { return status().find("subscribers: 3") != std::string::npos; }, 20s)) << status();
  EXPECT_NE(status().find("store: ok"), std::string::npos) << status();

  std::string marker = fmt::format("agentcage-full-{}", getpid());
  load_ = testing::start({AGENTCAGE_BIN, "run", "--socket", sock_, "--", "/bin/sh", "-c",
                          "i=0; while [ $i -lt 20000 ]; do /bin/echo " + marker + " >/dev/null; i=$((i+1)); done"},
                         dir_ + "/load.log");
  std::string st;
  ASSERT_TRUE(wait_for([&] { return (st = status()).find("store: failing since") != std::string::npos; }, 60s))
      << st << daemon_log().substr(0, 3000);
  EXPECT_NE(st.find(": store_full: "), std::string::npos) << st;
  EXPECT_NE(st.find("No space left on device"), std::string::npos) << st;
  // A probe reading only the exit status sees it too, in either format.
  EXPECT_EQ(testing::run({AGENTCAGE_BIN, "status", "--socket", sock_}).status, 2);
  EXPECT_EQ(testing::run({AGENTCAGE_BIN, "status", "-o", "json", "--socket", sock_}).status, 2);
  // In-band while it still fails, not when it recovers.
  EXPECT_TRUE(wait_for([&] { return slurp(dir_ + "/sub.json").find("\"store_full\"") != std::string::npos; }, 1s))
      << slurp(dir_ + "/sub.json").substr(0, 2000);
  EXPECT_NE(status().find("store: failing since"), std::string::npos);
  // The collector holds the Loss, told in-band without a seq (EventBatch.unstored).
  auto collector_losses = [&](bool with_seq) {
    uint64_t n = 0;
    for_each_stored(cdb_, {"loss"}, [&](const v1::Event& e) {
      if (e.loss().reason() == "store_full" && (e.seq() != 0) == with_seq) n += e.loss().count();
      return true;
    });
    return n;
  };
  EXPECT_TRUE(wait_for([&] { return collector_losses(false) > 0; }, 2s)) << daemon_log().substr(0, 3000);
  // status says so: what the stream told in-band, and what did not fit its queue.
  {
    std::smatch c;
    std::string s;
    EXPECT_TRUE(wait_for([&] {
      s = status();
      return std::regex_search(s, c, std::regex("audit\\.unstored\\.sent\\s+([0-9]+)")) && std::stoull(c[1]) > 0;
    }, 5s)) << s;
    EXPECT_TRUE(std::regex_search(s, std::regex("audit\\.unstored\\.dropped\\s+[0-9]+"))) << s;
    EXPECT_TRUE(std::regex_search(s, std::regex("audit\\.connected\\s+1"))) << s;
  }
  // And the subscriber still sees what happens (events without seq), not nothing.
  size_t before = event_lines(slurp(dir_ + "/sub.json")).size();
  EXPECT_TRUE(wait_for([&] { return event_lines(slurp(dir_ + "/sub.json")).size() > before + 100; }, 10s));
  std::smatch m;
  st = status();
  ASSERT_TRUE(std::regex_search(st, m, std::regex("store\\.dropped\\.not_stored\\s+([0-9]+)"))) << st;
  EXPECT_GT(std::stoull(m[1]), 0u) << st;
  // on_record_failure: pause froze its sandbox, stop ended its one, and no new sandbox of
  // such a profile starts while nothing can be recorded.
  EXPECT_TRUE(wait_for([&] { return frozen() == 1; }, 5s)) << daemon_log().substr(0, 3000);
  EXPECT_TRUE(wait_for([&] { return !testing::pid_alive(stopped); }, 5s));
  EXPECT_NE(testing::wait_status(stopped), 0);
  auto refused = testing::run({AGENTCAGE_BIN, "run", "--socket", sock_, "--profile", pdir + "/stopped.yaml", "--",
                               "/bin/true"});
  EXPECT_NE(refused.status, 0);
  EXPECT_NE(refused.err.find("the audit store cannot record (store_full)"), std::string::npos) << refused.err;
  stop_load();

  // Space returns: the store takes events again and records the gap with its reason.
  ASSERT_EQ(testing::run({"mount", "-o", "remount,size=256m", mnt}).status, 0);
  EXPECT_TRUE(wait_for([&] { return status().find("store: ok") != std::string::npos; }, 20s)) << status();
  EXPECT_EQ(testing::run({AGENTCAGE_BIN, "status", "--socket", sock_}).status, 0);
  EXPECT_TRUE(wait_for([&] { return frozen() == 0; }, 5s)) << "the paused sandbox resumes";
  EXPECT_TRUE(testing::pid_alive(paused));
  kill(paused, SIGTERM);
  testing::wait_status(paused);
  uint64_t recorded = 0;
  ASSERT_TRUE(for_each_stored(ddb_, {"loss"}, [&](const v1::Event& e) {
    if (e.loss().reason() == "store_full") recorded += e.loss().count();
    EXPECT_NE(e.loss().reason(), "store_queue_full") << "a full disk is not a full queue";
    return true;
  }));
  EXPECT_GT(recorded, 0u);
  auto v = testing::run({AGENTCAGE_BIN, "audit", "verify", "--db", ddb_});
  EXPECT_EQ(v.status, 0) << v.out << v.err;
  // The stored record of the gap ships too, with its seq; the collector's chain (with the
  // seq-less rows) verifies.
  EXPECT_TRUE(wait_for([&] { return collector_losses(true) == recorded; }, 20s))
      << collector_losses(true) << " vs " << recorded;
  v = testing::run({AGENTCAGE_BIN, "audit", "verify", "--db", cdb_});
  EXPECT_EQ(v.status, 0) << v.out << v.err;
  kill(sub, SIGTERM);
  testing::wait_status(sub);
}

TEST_F(Fault, StalledSubscriberDropsAloneAndIsToldSo) {
  start_daemon({"--subscriber-queue", "8192"});
  ASSERT_TRUE(wait_for([&] { return access(sock_.c_str(), F_OK) == 0 || !testing::pid_alive(daemon_); }, 20s));
  pid_t fast = testing::start({AGENTCAGE_BIN, "events", "-f", "--socket", sock_}, dir_ + "/fast.json");
  pid_t slow = testing::start({AGENTCAGE_BIN, "events", "-f", "--socket", sock_}, dir_ + "/slow.json");
  auto status = [&] { return testing::run({AGENTCAGE_BIN, "status", "--socket", sock_}).out; };
  ASSERT_TRUE(wait_for([&] { return status().find("subscribers: 2") != std::string::npos; }, 20s)) << status();
  kill(slow, SIGSTOP);

  // About 3 events (fork, exec, exit) per iteration, all in one sandbox.
  auto r = testing::run({AGENTCAGE_BIN, "run", "--socket", sock_, "--", "/bin/sh", "-c",
                         "i=0; while [ $i -lt 4000 ]; do /bin/true; i=$((i+1)); done"});
  ASSERT_EQ(r.status, 0) << r.err;

  // Everything is stored: the query count is the truth the subscribers are held to.
  auto stored = [&] { return event_lines(testing::run({AGENTCAGE_BIN, "events", "--socket", sock_}).out).size(); };
  size_t total = 0;
  ASSERT_TRUE(wait_for(
      [&] {
        size_t a = stored();
        std::this_thread::sleep_for(300ms);
        total = stored();
        return a == total && total > 12000;
      },
      30s))
      << total;
  // The fast subscriber has every event and no loss.
  bool fast_done = wait_for([&] { return event_lines(slurp(dir_ + "/fast.json")).size() >= total; }, 30s);
  auto fast_lines = event_lines(slurp(dir_ + "/fast.json"));
  EXPECT_TRUE(fast_done) << fast_lines.size() << " of " << total;
  EXPECT_EQ(fast_lines.size(), total);
  for (const auto& l : fast_lines) ASSERT_EQ(l.find("\"loss\""), std::string::npos) << l;

  // The stalled one's drops are counted per sink, and the kernel lost nothing.
  std::string st = status();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(st, m, std::regex(fmt::format("sink\\.subscriber-pid{}\\.dropped\\s+([0-9]+)", slow))))
      << st;
  uint64_t dropped = std::stoull(m[1]);
  EXPECT_GT(dropped, 0u) << st;
  printf("stalled subscriber: %lu of %zu events dropped\n", dropped, total);
  ASSERT_TRUE(std::regex_search(st, m, std::regex(fmt::format("sink\\.subscriber-pid{}\\.dropped\\s+([0-9]+)", fast))))
      << st;
  EXPECT_EQ(m[1], "0") << st;
  ASSERT_TRUE(std::regex_search(st, m, std::regex("kernel\\.ringbuf_full\\s+([0-9]+)"))) << st;
  EXPECT_EQ(m[1], "0") << st;

  // Resumed, it learns of the gap in-band: events received + reported losses = all.
  kill(slow, SIGCONT);
  uint64_t got = 0, lost = 0;
  bool whole = wait_for(
      [&] {
        got = lost = 0;
        for (const auto& l : event_lines(slurp(dir_ + "/slow.json"))) {
          std::smatch lm;
          if (std::regex_search(l, lm, std::regex("\"loss\":\\{\"count\":\"?([0-9]+)")))
            lost += std::stoull(lm[1]);
          else
            ++got;
        }
        return got + lost >= total;
      },
      30s);
  EXPECT_TRUE(whole) << got << " received + " << lost << " lost of " << total;
  EXPECT_EQ(got + lost, total);
  EXPECT_EQ(lost, dropped);
  EXPECT_NE(slurp(dir_ + "/slow.json").find("sink_queue_full"), std::string::npos);
  for (pid_t p : {fast, slow}) {
    kill(p, SIGINT);
    testing::wait_status(p);
  }
  kill(daemon_, SIGTERM);
  EXPECT_EQ(testing::wait_status(daemon_), 0) << daemon_log().substr(0, 4000);
  daemon_ = -1;
}

}  // namespace
}  // namespace agentcage
