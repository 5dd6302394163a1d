// SPDX-License-Identifier: Apache-2.0
// The escape suite: each attack program runs inside a real sandbox and must be blocked;
// the control cases must work. Every case runs on each path (Paths/Escape.*/N): as root
// in-process (run_session with a ConfinePolicy, what `agentcage run --no-daemon` does),
// and through agentcaged, which starts the command itself, as root and as user nobody
// (`agentcage run --profile escape`, the same policy as a profile). The cases that need a
// policy no profile spells (EscapeInProcess.*) run in-process. The test process itself
// is never confined.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/confine/cgroup.h"
#include "core/confine/confine.h"
#include "core/sandbox/session.h"
#include "support/daemon_process.h"
#include "support/subprocess.h"

namespace agentcage {
namespace {

namespace fs = std::filesystem;
using core::ConfinePolicy;

constexpr int kBlocked = 10;
constexpr int kEscaped = 20;
constexpr int kSigsys = 128 + SIGSYS;
constexpr uint32_t kMaxPids = 32;

const std::string kFs = std::string(ESCAPE_BIN_DIR) + "/escape_fs";
const std::string kSys = std::string(ESCAPE_BIN_DIR) + "/escape_sys";

void write_text(const std::string& path, const std::string& text, mode_t mode = 0644) {
  std::ofstream(path) << text;
  ASSERT_EQ(::chmod(path.c_str(), mode), 0) << path;
}

// The scene: T/ws is the workspace (writable) with T/ws/.env and T/ws/secrets/ denied
// inside it; T/outside holds a secret and a victim file no list grants; an outside
// process (sleep) runs with its cwd in T/outside.
class EscapeScene : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    char tmpl[] = "/tmp/agentcage-escape.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    ::chmod(root_.c_str(), 0755);
    ws_ = root_ + "/ws";
    outside_ = root_ + "/outside";
    fs::create_directories(ws_ + "/secrets");
    ::chmod(ws_.c_str(), 0777);  // user nobody's workspace too (the daemon path)
    fs::create_directories(outside_);
    fs::create_directories(root_ + "/bin");
    write_text(ws_ + "/.env", "API_KEY=workspace-secret\n", 0600);
    write_text(ws_ + "/secrets/key", "-----BEGIN KEY-----\n", 0600);
    write_text(ws_ + "/README", "hello\n");
    write_text(outside_ + "/secret.txt", "outside-secret\n", 0600);
    write_text(outside_ + "/victim", "victim\n", 0644);
    // A setuid-root copy of the attack program, executable by anyone.
    suid_ = root_ + "/bin/escape_sys_suid";
    fs::copy_file(kSys, suid_, fs::copy_options::overwrite_existing);
    ASSERT_EQ(::chown(suid_.c_str(), 0, 0), 0);
    ASSERT_EQ(::chmod(suid_.c_str(), 04755), 0);

    // Host daemons' sockets the agent must not reach: one on a path outside every list
    // (like /run/docker.sock), one in the abstract namespace.
    host_sock_ = outside_ + "/host.sock";
    abstract_name_ = "agentcage-escape-" + std::to_string(::getpid());
    for (int i = 0; i < 2; ++i) {
      int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un sa{};
      sa.sun_family = AF_UNIX;
      socklen_t len = sizeof sa;
      if (i == 0) {
        std::strncpy(sa.sun_path, host_sock_.c_str(), sizeof sa.sun_path - 1);
      } else {
        std::strncpy(sa.sun_path + 1, abstract_name_.c_str(), sizeof sa.sun_path - 2);
        len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + abstract_name_.size());
      }
      ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sa), len), 0) << strerror(errno);
      ASSERT_EQ(::listen(fd, 16), 0);
      listeners_.push_back(fd);
    }

    outsider_ = ::fork();
    if (outsider_ == 0) {
      if (::chdir(outside_.c_str()) != 0) _exit(1);
      ::execl("/bin/sleep", "sleep", "600", (char*)nullptr);
      _exit(127);
    }
  }

  static void TearDownTestSuite() {
    if (outsider_ > 0) {
      ::kill(outsider_, SIGKILL);
      ::waitpid(outsider_, nullptr, 0);
    }
    for (int fd : listeners_) ::close(fd);
    if (!root_.empty()) fs::remove_all(root_);
  }

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: the sandbox must hold against a root-started agent";
    auto kf = core::probe_kernel_features();
    if (kf.landlock_abi < 6) GTEST_SKIP() << "needs Landlock ABI 6 (have " << kf.landlock_abi << ")";
    ASSERT_TRUE(testing::pid_alive(outsider_));
  }

  // Roughly the shipped "default" profile, pointed at the scene.
  static ConfinePolicy policy() {
    ConfinePolicy p;
    p.fs.read = {"/etc", "/proc", "/dev", "/sys"};
    p.fs.exec = {"/usr", "/bin", "/lib", "/lib64", "/sbin", ESCAPE_BIN_DIR, root_ + "/bin"};
    p.fs.write = {ws_, "/dev/null", "/dev/ptmx", "/dev/pts"};
    p.fs.deny = {ws_ + "/.env", ws_ + "/secrets", "/etc/shadow"};
    p.max_pids = kMaxPids;
    return p;
  }

  static int run_in(const ConfinePolicy& p, std::vector<std::string> argv) {
    core::SessionOptions so;
    so.argv = std::move(argv);
    so.confine = p;
    auto r = core::run_session(so);
    EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message());
    return r ? r->exit_status : -1;
  }
  // What policy() says, as a profile: agentcaged compiles it for its caller.
  static std::string policy_yaml() {
    auto list = [](const std::vector<std::string>& v) {
      std::string out = "[";
      for (const auto& x : v) out += (out.size() > 1 ? ", " : "") + std::string("\"") + x + "\"";
      return out + "]";
    };
    auto p = policy();
    return "name: escape\nfilesystem:\n  read: " + list(p.fs.read) + "\n  exec: " + list(p.fs.exec) +
           "\n  write: " + list(p.fs.write) + "\n  deny: " + list(p.fs.deny) +
           "\nactions:\n  network: allow\nprocess:\n  max_pids: " + std::to_string(kMaxPids) + "\n";
  }

  static inline std::string root_, ws_, outside_, suid_, host_sock_, abstract_name_;
  static inline std::vector<int> listeners_;
  static inline pid_t outsider_ = -1;
};

enum class Path { in_process, daemon_root, daemon_nobody };

// Every path: one agentcaged for the suite, with the escape profile on its search path.
class Escape : public EscapeScene, public ::testing::WithParamInterface<Path> {
 protected:
  static void SetUpTestSuite() {
    EscapeScene::SetUpTestSuite();
    if (geteuid() != 0 || root_.empty()) return;
    fs::create_directories(root_ + "/profiles");
    write_text(root_ + "/profiles/escape.yaml", policy_yaml());
    testing::make_reachable(AGENTCAGE_BIN);
    testing::make_reachable(kSys);
    sock_ = root_ + "/agentcage.sock";
    std::vector<std::string> argv{"env", "AGENTCAGE_PROFILE_PATH=" + root_ + "/profiles", AGENTCAGED_BIN,
                                  "--socket", sock_, "--audit-db", root_ + "/audit.db", "--chain-key",
                                  root_ + "/chain.key"};
    for (auto& a : testing::daemon_state_args(root_)) argv.push_back(a);
    daemon_ = testing::start(argv, root_ + "/daemon.log");
    testing::wait_until([] { return ::access(sock_.c_str(), F_OK) == 0; }, std::chrono::seconds(10));
  }
  static void TearDownTestSuite() {
    if (daemon_ > 0) {
      ::kill(daemon_, SIGTERM);
      testing::wait_status(daemon_);
      testing::remove_daemon_pins(root_);
      daemon_ = -1;
    }
    EscapeScene::TearDownTestSuite();
  }
  void SetUp() override {
    EscapeScene::SetUp();
    if (IsSkipped() || GetParam() == Path::in_process) return;
    ASSERT_TRUE(testing::pid_alive(daemon_)) << testing::read_all(root_ + "/daemon.log");
  }
  int run(std::vector<std::string> argv) const {
    if (GetParam() == Path::in_process) return run_in(policy(), std::move(argv));
    // The client resolves the profile too (lint warnings, the environment it keeps out).
    std::vector<std::string> cmd{"/usr/bin/env", "AGENTCAGE_PROFILE_PATH=" + root_ + "/profiles", AGENTCAGE_BIN, "run",
                                 "--socket", sock_, "--profile", "escape", "--workspace", ws_, "--"};
    cmd.insert(cmd.end(), argv.begin(), argv.end());
    auto r = testing::run(GetParam() == Path::daemon_nobody ? testing::as_nobody(cmd) : cmd);
    // agentcage's own failures (not the command's) say so on stderr: shown with the status.
    if (r.err.find("agentcage: error:") != std::string::npos) ADD_FAILURE() << r.err;
    return r.status;
  }
  std::string agent_uid() const { return GetParam() == Path::daemon_nobody ? "65534" : "0"; }
  static inline std::string sock_;
  static inline pid_t daemon_ = -1;
};

// Cases whose policy is not the scene's profile (a seccomp kill action, a uid switch,
// Landlock alone, ...), or that read the sandbox's pids from outside: in-process.
class EscapeInProcess : public EscapeScene {
 protected:
  static int run(std::vector<std::string> argv) { return run_in(policy(), std::move(argv)); }
};

std::string proc(pid_t pid, const char* what) { return "/proc/" + std::to_string(pid) + "/" + what; }

// --- controls: the sandbox must not break ordinary work ---
TEST_P(Escape, ControlReadWriteInsideWorkspace) { EXPECT_EQ(run({kFs, "control-rw", ws_}), 0); }

TEST_P(Escape, ControlOrdinaryTools) {
  std::string script = "set -e; cd " + ws_ + "; ls -la . >/dev/null; cat README | grep -q hello; " +
                       "echo data > out.txt; sort out.txt | wc -l | grep -q 1; sh -c 'true' ; " +
                       "mkdir -p sub/dir && mv out.txt sub/dir/ && rm -r sub; cat /etc/hostname >/dev/null";
  EXPECT_EQ(run({"/bin/sh", "-c", script}), 0);
}

TEST_P(Escape, ControlOrdinaryIoctls) { EXPECT_EQ(run({kSys, "control-ioctl"}), 0); }

// --- filesystem ---
TEST_P(Escape, DirectSecretRead) { EXPECT_EQ(run({kFs, "read", outside_ + "/secret.txt"}), kBlocked); }
TEST_P(Escape, DeniedFileInsideWorkspace) { EXPECT_EQ(run({kFs, "read", ws_ + "/.env"}), kBlocked); }
TEST_P(Escape, DeniedDirInsideWorkspace) { EXPECT_EQ(run({kFs, "read", ws_ + "/secrets/key"}), kBlocked); }
TEST_P(Escape, DeniedSystemFileInsideReadTree) { EXPECT_EQ(run({kFs, "read", "/etc/shadow"}), kBlocked); }
TEST_P(Escape, MaskChmodThenRead) { EXPECT_EQ(run({kFs, "chmod-then-read", ws_ + "/.env"}), kBlocked); }
TEST_P(Escape, MaskUnmount) { EXPECT_EQ(run({kFs, "umount", ws_ + "/.env"}), kBlocked); }
TEST_P(Escape, MaskRenameAway) { EXPECT_EQ(run({kFs, "rename", ws_ + "/secrets", ws_ + "/s2"}), kBlocked); }
TEST_P(Escape, ViaSymlink) { EXPECT_EQ(run({kFs, "symlink", outside_ + "/secret.txt", ws_ + "/link1"}), kBlocked); }
TEST_P(Escape, ViaSymlinkToMask) { EXPECT_EQ(run({kFs, "symlink", ws_ + "/.env", ws_ + "/link2"}), kBlocked); }
TEST_P(Escape, ViaHardLink) { EXPECT_EQ(run({kFs, "hardlink", outside_ + "/secret.txt", ws_ + "/hl1"}), kBlocked); }
TEST_P(Escape, ViaHardLinkOfMask) { EXPECT_EQ(run({kFs, "hardlink", ws_ + "/.env", ws_ + "/hl2"}), kBlocked); }
TEST_P(Escape, ViaDotDot) { EXPECT_EQ(run({kFs, "read", ws_ + "/../outside/secret.txt"}), kBlocked); }
TEST_P(Escape, ViaProcSelfRoot) {
  EXPECT_EQ(run({kFs, "read", "/proc/self/root" + outside_ + "/secret.txt"}), kBlocked);
  EXPECT_EQ(run({kFs, "read", "/proc/self/root" + ws_ + "/.env"}), kBlocked);
}
TEST_P(Escape, ViaOutsideProcessRootAndCwd) {
  // The outside process lives in the host mount namespace, where no mask exists: only
  // Landlock's ptrace-style check on /proc/<pid>/{root,cwd} stands between.
  EXPECT_EQ(run({kFs, "read", proc(outsider_, "root") + ws_ + "/.env"}), kBlocked);
  EXPECT_EQ(run({kFs, "read", proc(outsider_, "cwd") + "/secret.txt"}), kBlocked);
}
// A raw block device is how a root agent would get around every path check: read the
// disk and parse the file system itself. This host refuses even root on its own disk
// (/dev/vda: EPERM), so the test makes a disk root can read: a loop device over a file
// holding a secret, readable outside the sandbox, out of reach inside it.
TEST_P(Escape, RawDiskRead) {
  std::string img = outside_ + "/disk.img";
  {
    std::ofstream f(img, std::ios::binary);
    std::string block(4096, '\0');
    std::memcpy(block.data(), "AGENTCAGE-DISK-SECRET", 21);
    for (int i = 0; i < 256; ++i) f.write(block.data(), static_cast<std::streamsize>(block.size()));
  }
  auto attach = testing::run({"losetup", "--find", "--show", "--read-only", img});
  ASSERT_EQ(attach.status, 0) << "losetup: " << attach.err;
  std::string dev = attach.out.substr(0, attach.out.find('\n'));
  // Control: root outside the sandbox reads the secret off the device.
  {
    std::ifstream raw(dev, std::ios::binary);
    std::string head(21, '\0');
    raw.read(head.data(), 21);
    EXPECT_EQ(head, "AGENTCAGE-DISK-SECRET") << dev << " is not readable outside the sandbox: the test proves nothing";
  }
  // /dev is in the read list: the device must still be out of reach.
  EXPECT_EQ(run({kFs, "read", dev}), kBlocked);
  testing::run({"losetup", "--detach", dev});
}

TEST_P(Escape, DeviceNodeInWorkspaceIsInert) {
  // A device node planted in the workspace (here a second /dev/null, char 1:3) must not
  // work: every tree of the view is mounted nodev.
  std::string node = ws_ + "/devnull";
  ::unlink(node.c_str());
  ASSERT_EQ(::mknod(node.c_str(), S_IFCHR | 0666, makedev(1, 3)), 0) << strerror(errno);
  int fd = ::open(node.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << "outside the sandbox the node works";
  ::close(fd);
  EXPECT_EQ(run({kFs, "append", node}), kBlocked);
  ::unlink(node.c_str());
}

TEST_P(Escape, OtherTerminals) {
  // Another session's terminal (host devpts) is not in the sandbox's private devpts.
  int m = ::posix_openpt(O_RDWR | O_NOCTTY);
  ASSERT_GE(m, 0);
  ASSERT_EQ(::grantpt(m), 0);
  ASSERT_EQ(::unlockpt(m), 0);
  std::string slave = ::ptsname(m);
  EXPECT_EQ(run({kFs, "append", slave}), kBlocked);
  ::close(m);
}

TEST_P(Escape, OpenByHandleAt) { EXPECT_EQ(run({kFs, "open-by-handle", outside_ + "/secret.txt"}), kBlocked); }
TEST_P(Escape, WriteOutsideWorkspace) {
  EXPECT_EQ(run({kFs, "write", outside_ + "/new"}), kBlocked);
  EXPECT_EQ(run({kFs, "append", outside_ + "/victim"}), kBlocked);
  EXPECT_FALSE(fs::exists(outside_ + "/new"));
}
TEST_P(Escape, RenameOutsideWorkspace) {
  EXPECT_EQ(run({kFs, "rename", outside_ + "/victim", outside_ + "/victim2"}), kBlocked);
  EXPECT_EQ(run({kFs, "rename", outside_ + "/victim", ws_ + "/stolen"}), kBlocked);
  EXPECT_EQ(run({kFs, "unlink", outside_ + "/victim"}), kBlocked);
  EXPECT_TRUE(fs::exists(outside_ + "/victim"));
}
TEST_F(EscapeInProcess, LandlockAloneBlocksWritesAndRenames) {
  // Without the read-only view, Landlock is the layer that must hold.
  auto p = policy();
  p.fs.private_view = false;
  EXPECT_EQ(run_in(p, {kFs, "write", outside_ + "/new"}), kBlocked);
  EXPECT_EQ(run_in(p, {kFs, "append", outside_ + "/victim"}), kBlocked);
  EXPECT_EQ(run_in(p, {kFs, "rename", outside_ + "/victim", outside_ + "/victim2"}), kBlocked);
  EXPECT_EQ(run_in(p, {kFs, "unlink", outside_ + "/victim"}), kBlocked);
  EXPECT_EQ(run_in(p, {kSys, "cgroup-move", *core::cgroup2_mount() + "/cgroup.procs"}), kBlocked);
  EXPECT_EQ(run_in(p, {kFs, "control-rw", ws_}), 0);
  EXPECT_FALSE(fs::exists(outside_ + "/new"));
}
TEST_P(Escape, ChmodOutsideWorkspace) {
  EXPECT_EQ(run({kFs, "chmod", outside_ + "/victim"}), kBlocked);
  EXPECT_EQ(run({kFs, "chown", outside_ + "/victim"}), kBlocked);
  EXPECT_EQ(run({kFs, "chmod", "/etc/hostname"}), kBlocked);
  struct stat st{};
  ASSERT_EQ(::stat((outside_ + "/victim").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
}
TEST_P(Escape, Mount) {
  EXPECT_EQ(run({kFs, "mount", ws_}), kBlocked);
  EXPECT_EQ(run({kFs, "bind", outside_, ws_}), kBlocked);
}

// --- syscalls and other processes ---
TEST_P(Escape, IoUring) { EXPECT_EQ(run({kSys, "io_uring"}), kBlocked); }
TEST_P(Escape, PtraceOutside) {
  EXPECT_EQ(run({kSys, "ptrace", std::to_string(outsider_)}), kBlocked);
  EXPECT_EQ(run({kSys, "ptrace-seize", std::to_string(outsider_)}), kBlocked);
}
TEST_F(EscapeInProcess, PtraceOutsideEvenWhenSeccompAllowsIt) {
  // Defence in depth: with ptrace re-allowed in seccomp, Landlock still refuses access to
  // processes outside the sandbox's domain.
  auto p = policy();
  p.seccomp.allow = {"ptrace", "process_vm_readv"};
  EXPECT_EQ(run_in(p, {kSys, "ptrace", std::to_string(outsider_)}), kBlocked);
  EXPECT_EQ(run_in(p, {kSys, "vm_readv", std::to_string(outsider_)}), kBlocked);
}
TEST_P(Escape, ProcessVmReadv) { EXPECT_EQ(run({kSys, "vm_readv", std::to_string(outsider_)}), kBlocked); }
TEST_P(Escape, RetuneOutsideProcess) {
  std::string pid = std::to_string(outsider_);
  EXPECT_EQ(run({kSys, "prlimit", pid}), kBlocked);
  EXPECT_EQ(run({kSys, "renice-other", pid}), kBlocked);
  EXPECT_EQ(run({kSys, "renice-user"}), kBlocked);
  EXPECT_EQ(run({kSys, "affinity", pid}), kBlocked);
  EXPECT_EQ(::getpriority(PRIO_PROCESS, static_cast<id_t>(outsider_)), 0);
}
TEST_P(Escape, ControlSelfLimits) { EXPECT_EQ(run({kSys, "control-self-limits"}), 0); }
TEST_P(Escape, HostUnixSocket) {
  // Sanity: the listener is reachable from outside the sandbox.
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, host_sock_.c_str(), sizeof sa.sun_path - 1);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ::close(fd);
  EXPECT_EQ(run({kSys, "unix-connect", host_sock_}), kBlocked);
  EXPECT_EQ(run({kSys, "abstract-connect", abstract_name_}), kBlocked);
}
TEST_F(EscapeInProcess, SharedTmpSockets) {
  // /tmp listed as writable: the agent gets a private /tmp, so sockets of host services
  // there (root's tmux server, X11, ssh-agent) cannot be reached; the workspace, which lives
  // under the host's /tmp in this test, is still bound in.
  std::string sock = "/tmp/agentcage-escape-tmux-" + std::to_string(::getpid());
  ::unlink(sock.c_str());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, sock.c_str(), sizeof sa.sun_path - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  auto p = policy();
  p.fs.write.push_back("/tmp");
  EXPECT_EQ(run_in(p, {kSys, "unix-connect", sock}), kBlocked);
  EXPECT_EQ(run_in(p, {"/bin/sh", "-c", "echo x > /tmp/scratch && grep -q x /tmp/scratch"}), 0);
  EXPECT_EQ(run_in(p, {kFs, "control-rw", ws_}), 0);
  EXPECT_FALSE(fs::exists("/tmp/scratch"));
  ::close(fd);
  ::unlink(sock.c_str());
}
TEST_P(Escape, OutsideProcessesAreInvisible) {
  EXPECT_EQ(run({kSys, "proc-peek", std::to_string(outsider_)}), kBlocked);
}
TEST_P(Escape, KillOutside) {
  EXPECT_EQ(run({kSys, "kill", std::to_string(outsider_)}), kBlocked);
  EXPECT_TRUE(testing::pid_alive(outsider_));
}
TEST_P(Escape, UserNamespace) {
  EXPECT_EQ(run({kSys, "unshare-user"}), kBlocked);
  EXPECT_EQ(run({kSys, "clone-user"}), kBlocked);
  EXPECT_EQ(run({kSys, "clone3-user"}), kBlocked);
  EXPECT_EQ(run({kSys, "unshare-mount"}), kBlocked);
}
TEST_P(Escape, Bpf) { EXPECT_EQ(run({kSys, "bpf"}), kBlocked); }
TEST_P(Escape, Keyctl) {
  EXPECT_EQ(run({kSys, "keyctl"}), kBlocked);
  EXPECT_EQ(run({kSys, "add_key"}), kBlocked);
}
TEST_P(Escape, PerfEventOpen) { EXPECT_EQ(run({kSys, "perf"}), kBlocked); }
TEST_P(Escape, Tiocsti) {
  EXPECT_EQ(run({kSys, "tiocsti"}), kBlocked);
  EXPECT_EQ(run({kSys, "tiocsti-highbits"}), kBlocked);
}
// How `argv` ends when run natively, without any confinement: the exit code, or 128+signal.
static int run_native(const std::vector<std::string>& argv) {
  pid_t pid = ::fork();
  if (pid == 0) {
    std::vector<char*> a;
    for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
    a.push_back(nullptr);
    int devnull = ::open("/dev/null", O_WRONLY);
    if (devnull >= 0) ::dup2(devnull, 2);
    ::execv(a[0], a.data());
    ::_exit(127);
  }
  int st = 0;
  if (pid < 0 || ::waitpid(pid, &st, 0) != pid) return -1;
  return WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
}

TEST_F(EscapeInProcess, ForeignAbisAreKilled) {
  // The i386 entry point must reach the kernel natively for the test to mean anything:
  // kernels built without IA32 emulation (or booted ia32_emulation=0) fault `int $0x80`
  // with SIGSEGV before any seccomp filter runs. Then there is no foreign ABI to close.
  int native = run_native({kSys, "int80"});
  if (native != kEscaped)
    GTEST_SKIP() << "int $0x80 does not reach the kernel natively here (status " << native
                 << "): no IA32 emulation, so there is no i386 ABI to block";
  EXPECT_EQ(run({kSys, "int80"}), kSigsys);
  int x32 = run({kSys, "x32"});
  EXPECT_TRUE(x32 == kSigsys || x32 == kBlocked) << x32;
}
TEST_F(EscapeInProcess, SeccompKillAction) {
  auto p = policy();
  p.seccomp.action = core::SeccompAction::kill;
  EXPECT_EQ(run_in(p, {kSys, "bpf"}), kSigsys);
}
TEST_P(Escape, MoveToAnotherCgroup) {
  auto root2 = core::cgroup2_mount();
  ASSERT_TRUE(root2.has_value());
  EXPECT_EQ(run({kSys, "cgroup-move", *root2 + "/cgroup.procs"}), kBlocked);
  auto mi = core::read_file("/proc/self/mountinfo");
  ASSERT_TRUE(mi.has_value());
  if (auto pids = core::find_cgroup1_mount(*mi, "pids")) {
    EXPECT_EQ(run({kSys, "cgroup-move", *pids + "/cgroup.procs"}), kBlocked);
  }
}
// The agent keeps its caller's uid (root's, nobody's) and gains nothing.
TEST_P(Escape, NoCapabilitiesAsRoot) { EXPECT_EQ(run({kSys, "caps", agent_uid()}), kBlocked); }
TEST_P(Escape, SetuidBinaryAsRoot) { EXPECT_EQ(run({kSys, "setuid-exec", suid_, agent_uid()}), kBlocked); }
TEST_F(EscapeInProcess, SetuidBinaryAfterUidSwitch) {
  auto p = policy();
  p.uid = 65534;
  p.gid = 65534;
  EXPECT_EQ(run_in(p, {kSys, "setuid-exec", suid_, "65534"}), kBlocked);
  EXPECT_EQ(run_in(p, {kSys, "setuid-root"}), kBlocked);
}
TEST_P(Escape, ForkBombCapped) {
  EXPECT_EQ(run({kSys, "forkbomb", std::to_string(kMaxPids)}), kBlocked);
}
TEST_F(EscapeInProcess, DaemonDoesNotOutliveTheRun) {
  std::string pidfile = ws_ + "/daemon.pid";
  ::unlink(pidfile.c_str());
  ASSERT_EQ(run({kSys, "daemon", pidfile}), 0);
  std::ifstream f(pidfile);
  pid_t pid = 0;
  f >> pid;
  ASSERT_GT(pid, 0) << "the daemon never wrote its pid";
  EXPECT_FALSE(testing::pid_alive(pid)) << "daemonised child " << pid << " outlived the sandbox";
  if (testing::pid_alive(pid)) ::kill(pid, SIGKILL);
}

INSTANTIATE_TEST_SUITE_P(Paths, Escape, ::testing::Values(Path::in_process, Path::daemon_root, Path::daemon_nobody),
                         [](const ::testing::TestParamInfo<Path>& i) {
                           return i.param == Path::in_process    ? std::string("InProcess")
                                  : i.param == Path::daemon_root ? std::string("DaemonAsRoot")
                                                                 : std::string("DaemonAsNobody");
                         });

}  // namespace
}  // namespace agentcage
