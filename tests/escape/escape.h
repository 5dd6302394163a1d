/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the escape programs. Each program runs one attack (argv[1]) inside the
 * sandbox and reports by exit status, which the runner (escape_test.cc) checks:
 *   0        a control case worked (only for "control-*" commands)
 *   10       the attack was blocked (the errno is printed)
 *   20       the attack SUCCEEDED: the sandbox is broken
 *   2        bad usage / the test itself could not set up
 * A seccomp kill shows up to the runner as death by SIGSYS (status 128+31). */
#pragma once

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_BLOCKED 10
#define EXIT_ESCAPED 20
#define EXIT_USAGE 2

static inline void blocked(const char* what, int err) {
  fprintf(stderr, "blocked: %s: %s\n", what, strerror(err));
  exit(EXIT_BLOCKED);
}

static inline void escaped(const char* what) {
  fprintf(stderr, "ESCAPED: %s\n", what);
  exit(EXIT_ESCAPED);
}

static inline void usage(const char* msg) {
  fprintf(stderr, "usage error: %s\n", msg);
  exit(EXIT_USAGE);
}

/* The result of a syscall that must fail: -1 -> blocked(errno), else escaped. */
static inline void expect_fail(long rc, const char* what) {
  if (rc < 0) blocked(what, errno);
  escaped(what);
}
