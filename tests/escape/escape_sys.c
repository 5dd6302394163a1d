/* SPDX-License-Identifier: Apache-2.0 */
/* Kernel-interface escapes: syscalls a confined agent must not reach, other processes it
 * must not touch, privileges it must not regain. Usage: escape_sys <attack> [args...] */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stddef.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "escape.h"

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif

struct clone_args_min {
  unsigned long long flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

/* Effective capabilities of this process, from /proc/self/status. */
static unsigned long long cap_eff(void) {
  FILE* f = fopen("/proc/self/status", "r");
  if (!f) return ~0ull;
  char line[256];
  unsigned long long v = ~0ull;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "CapEff: %llx", &v) == 1) break;
  fclose(f);
  return v;
}

int main(int argc, char** argv) {
  if (argc < 2) usage("escape_sys <attack> [args]");
  const char* a = argv[1];
  pid_t target = argc > 2 ? (pid_t)atoi(argv[2]) : 0;

  if (!strcmp(a, "io_uring")) {
    unsigned char params[120] = {0};
    expect_fail(syscall(__NR_io_uring_setup, 8, params), "io_uring_setup");
  }
  if (!strcmp(a, "ptrace")) expect_fail(ptrace(PTRACE_ATTACH, target, 0, 0), "ptrace(PTRACE_ATTACH)");
  if (!strcmp(a, "ptrace-seize")) expect_fail(ptrace(PTRACE_SEIZE, target, 0, 0), "ptrace(PTRACE_SEIZE)");
  if (!strcmp(a, "vm_readv")) {
    char local[16], remote_addr[16];
    struct iovec l = {local, sizeof local}, r = {remote_addr, sizeof remote_addr};
    /* Any address: a permission check failure comes before the copy. */
    expect_fail(process_vm_readv(target, &l, 1, &r, 1, 0), "process_vm_readv");
  }
  if (!strcmp(a, "kill")) expect_fail(kill(target, SIGKILL), "kill(SIGKILL)");
  if (!strcmp(a, "prlimit")) { /* cap another process's open files at 0 */
    struct rlimit rl = {0, 0};
    expect_fail(prlimit(target, RLIMIT_NOFILE, &rl, NULL), "prlimit(other pid)");
  }
  if (!strcmp(a, "renice-user")) expect_fail(setpriority(PRIO_USER, 0, 19), "setpriority(PRIO_USER, self uid)");
  if (!strcmp(a, "renice-other")) expect_fail(setpriority(PRIO_PROCESS, (id_t)target, 19), "setpriority(other pid)");
  if (!strcmp(a, "affinity")) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    expect_fail(sched_setaffinity(target, sizeof set, &set), "sched_setaffinity(other pid)");
  }
  if (!strcmp(a, "control-self-limits")) { /* the same calls on ourselves work */
    struct rlimit rl;
    if (prlimit(0, RLIMIT_NOFILE, NULL, &rl) != 0 || setrlimit(RLIMIT_NOFILE, &rl) != 0) { perror("rlimit"); return 1; }
    if (setpriority(PRIO_PROCESS, 0, 5) != 0) { perror("setpriority"); return 1; }
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0 || sched_setaffinity(0, sizeof set, &set) != 0) { perror("affinity"); return 1; }
    return 0;
  }
  if (!strcmp(a, "unshare-user")) expect_fail(unshare(CLONE_NEWUSER), "unshare(CLONE_NEWUSER)");
  if (!strcmp(a, "clone-user")) {
    long r = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (r == 0) _exit(0);
    if (r > 0) waitpid((pid_t)r, NULL, 0);
    expect_fail(r, "clone(CLONE_NEWUSER)");
  }
  if (!strcmp(a, "clone3-user")) {
    struct clone_args_min ca = {0};
    ca.flags = CLONE_NEWUSER;
    ca.exit_signal = SIGCHLD;
    long r = syscall(SYS_clone3, &ca, sizeof ca);
    if (r == 0) _exit(0);
    if (r > 0) waitpid((pid_t)r, NULL, 0);
    expect_fail(r, "clone3(CLONE_NEWUSER)");
  }
  if (!strcmp(a, "unshare-mount")) expect_fail(unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)");
  if (!strcmp(a, "bpf")) {
    unsigned char attr[128] = {0};
    unsigned int* u = (unsigned int*)attr;
    u[0] = 2; /* BPF_MAP_TYPE_ARRAY */
    u[1] = 4;
    u[2] = 4;
    u[3] = 1;
    expect_fail(syscall(SYS_bpf, 0 /* BPF_MAP_CREATE */, attr, sizeof attr), "bpf(BPF_MAP_CREATE)");
  }
  if (!strcmp(a, "keyctl")) expect_fail(syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3 /* session */, 1), "keyctl");
  if (!strcmp(a, "add_key")) expect_fail(syscall(SYS_add_key, "user", "agentcage", "x", 1, -3), "add_key");
  if (!strcmp(a, "perf")) {
    struct perf_event_attr pa = {0};
    pa.type = PERF_TYPE_SOFTWARE;
    pa.size = sizeof pa;
    pa.config = PERF_COUNT_SW_CPU_CLOCK;
    expect_fail(syscall(SYS_perf_event_open, &pa, 0, -1, -1, 0), "perf_event_open");
  }
  if (!strcmp(a, "tiocsti")) { /* push a command into a terminal's input queue */
    int fd = open("/dev/ptmx", O_RDWR | O_NOCTTY);
    if (fd < 0) fd = 0;
    char c = 'x';
    long r = ioctl(fd, TIOCSTI, &c);
    if (r < 0 && errno == EPERM) blocked("ioctl(TIOCSTI)", errno);
    if (r < 0) { /* ENOTTY/EIO: the kernel, not the policy, refused: no proof */
      fprintf(stderr, "ioctl(TIOCSTI) not refused by policy: %s\n", strerror(errno));
      return EXIT_ESCAPED;
    }
    escaped("ioctl(TIOCSTI)");
  }
  if (!strcmp(a, "tiocsti-highbits")) { /* cmd | 1<<32: the kernel truncates cmd to 32 bits */
    int fd = open("/dev/ptmx", O_RDWR | O_NOCTTY);
    char c = 'x';
    long r = syscall(SYS_ioctl, fd, (unsigned long)TIOCSTI | (1ul << 32), &c);
    if (r < 0 && errno == EPERM) blocked("ioctl(TIOCSTI | 1<<32)", errno);
    fprintf(stderr, "ioctl(TIOCSTI|1<<32) = %ld (%s)\n", r, strerror(errno));
    return EXIT_ESCAPED;
  }
  if (!strcmp(a, "control-ioctl")) { /* ordinary ioctls still work */
    int fd = open("/dev/ptmx", O_RDWR | O_NOCTTY);
    struct termios t;
    if (fd < 0 || ioctl(fd, TCGETS, &t) != 0) { perror("TCGETS on /dev/ptmx"); return 1; }
    return 0;
  }
  if (!strcmp(a, "int80")) { /* the i386 ABI from a 64-bit process: getpid via int 0x80 */
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
    fprintf(stderr, "int 0x80 getpid returned %ld\n", r);
    return EXIT_ESCAPED;
  }
  if (!strcmp(a, "x32")) { /* the x32 ABI: syscall nr | 0x40000000 */
    long r = syscall(39 | 0x40000000L); /* x32 getpid */
    if (r < 0) blocked("x32 getpid", errno);
    escaped("x32 getpid");
  }
  if (!strcmp(a, "cgroup-move")) { /* write our pid into another cgroup: argv[2] = cgroup.procs */
    if (argc < 3) usage("cgroup-move <cgroup.procs>");
    int fd = open(argv[2], O_WRONLY);
    if (fd < 0) blocked(argv[2], errno);
    if (write(fd, "0", 1) != 1) blocked("write cgroup.procs", errno);
    escaped(argv[2]);
  }
  if (!strcmp(a, "caps")) { /* after exec: no capability at all */
    unsigned long long c = cap_eff();
    fprintf(stderr, "uid=%d euid=%d CapEff=%llx\n", getuid(), geteuid(), c);
    if (c != 0) escaped("capabilities kept");
    if (argc > 2 && geteuid() != (uid_t)atoi(argv[2])) escaped("euid changed by setuid exec");
    exit(EXIT_BLOCKED);
  }
  if (!strcmp(a, "setuid-exec")) { /* exec a setuid-root binary: argv[2] = path, argv[3] = expected euid */
    if (argc < 4) usage("setuid-exec <suid binary> <euid>");
    execl(argv[2], argv[2], "caps", argv[3], (char*)NULL);
    blocked("execve(setuid binary)", errno);
  }
  if (!strcmp(a, "setuid-root")) { /* regain uid 0 after a uid switch */
    expect_fail(setuid(0), "setuid(0)");
  }
  if (!strcmp(a, "forkbomb")) { /* argv[2]: the limit; the bomb must hit EAGAIN at or below it */
    int limit = argc > 2 ? atoi(argv[2]) : 0;
    int n = 1; /* ourselves */
    for (;;) {
      pid_t p = fork();
      if (p == 0) {
        pause();
        _exit(0);
      }
      if (p < 0) {
        int e = errno;
        fprintf(stderr, "fork failed after %d processes: %s\n", n, strerror(e));
        /* The children are left to the sandbox teardown (cgroup kill). */
        if (e == EAGAIN && n <= limit) exit(EXIT_BLOCKED);
        exit(EXIT_ESCAPED);
      }
      if (++n > limit + 50) {
        fprintf(stderr, "%d processes, limit %d\n", n, limit);
        exit(EXIT_ESCAPED);
      }
    }
  }
  if (!strcmp(a, "daemon")) { /* double fork + setsid; argv[2]: where the daemon writes its pid */
    if (argc < 3) usage("daemon <pidfile>");
    pid_t p = fork();
    if (p == 0) {
      setsid();
      if (fork() != 0) _exit(0);
      signal(SIGHUP, SIG_IGN);
      FILE* f = fopen(argv[2], "w");
      if (f) {
        fprintf(f, "%d\n", getpid());
        fclose(f);
      }
      for (int i = 0; i < 600; ++i) sleep(1);
      _exit(0);
    }
    waitpid(p, NULL, 0);
    /* Give the grandchild time to write its pid file before we (the agent) exit. */
    for (int i = 0; i < 200 && access(argv[2], F_OK) != 0; ++i) usleep(10000);
    usleep(20000);
    return 0;
  }
  if (!strcmp(a, "unix-connect") || !strcmp(a, "abstract-connect")) {
    /* A host daemon's socket (docker.sock, containerd, dbus): connect() needs no Landlock
     * right, and DAC lets root in. argv[2]: path, or name for the abstract namespace. */
    if (argc < 3) usage("unix-connect <path> | abstract-connect <name>");
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {0};
    sa.sun_family = AF_UNIX;
    socklen_t len;
    if (a[0] == 'a') {
      strncpy(sa.sun_path + 1, argv[2], sizeof sa.sun_path - 2);
      len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(argv[2]));
    } else {
      strncpy(sa.sun_path, argv[2], sizeof sa.sun_path - 1);
      len = sizeof sa;
    }
    expect_fail(connect(fd, (struct sockaddr*)&sa, len), "connect(unix)");
  }
  if (!strcmp(a, "proc-peek")) { /* see an outside process in /proc */
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)target);
    int fd = open(path, O_RDONLY);
    if (fd < 0) blocked(path, errno);
    char buf[64];
    if (read(fd, buf, sizeof buf) <= 0) blocked("read cmdline", errno);
    escaped(path);
  }
  usage(a);
  return EXIT_USAGE;
}
