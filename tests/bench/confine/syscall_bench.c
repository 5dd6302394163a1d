/* SPDX-License-Identifier: Apache-2.0 */
/* A syscall-heavy workload for measuring the enforcement stack's per-syscall cost
 * (seccomp filter evaluation, Landlock path checks on open). Prints wall and CPU ms.
 *   syscall_bench [iterations] [open|noopen]
 * "open" (default): getppid + open + fstat + read + close + stat per iteration, the
 * worst case for Landlock, which walks the path on every open.
 * "noopen": getppid + fstat + read(pread) + stat + write to /dev/null per iteration. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char** argv) {
  long n = argc > 1 ? atol(argv[1]) : 200000;
  int opens = !(argc > 2 && !strcmp(argv[2], "noopen"));
  int keep = open("/etc/hostname", O_RDONLY | O_CLOEXEC);
  int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  char buf[64];
  for (long i = 0; i < n; ++i) {
    syscall(SYS_getppid);
    if (!opens) {
      struct stat st;
      fstat(keep, &st);
      if (pread(keep, buf, sizeof buf, 0) < 0 || write(null, buf, 1) < 0) return 1;
      stat("/usr/bin", &st);
      continue;
    }
    int fd = open("/etc/hostname", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      struct stat st;
      fstat(fd, &st);
      if (read(fd, buf, sizeof buf) < 0) return 1;
      close(fd);
    }
    struct stat st2;
    stat("/usr/bin", &st2);
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  /* CPU time (user + system) is printed last: on a shared machine it is far less noisy
   * than wall time, and the enforcement cost is CPU spent in the kernel. */
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
  printf("wall_ms %.1f cpu_ms %.1f\n", (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6, cpu);
  return 0;
}
