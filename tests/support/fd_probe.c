// SPDX-License-Identifier: Apache-2.0
/*
 * fd_probe: what a sandboxed command inherited, for the privileged descriptor tests.
 * Runs as the sandbox's command itself (no shell in between, which could open or close
 * descriptors of its own) and prints one line per open descriptor above 2:
 *
 *   fd N file|dir|socket|pipe|other
 *
 * then, for each FD named as an argument, "read N: " and the first bytes read from it.
 * Exits 0, or 1 when a check itself failed (the line says which).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *kind(mode_t m)
{
	if (S_ISREG(m))
		return "file";
	if (S_ISDIR(m))
		return "dir";
	if (S_ISSOCK(m))
		return "socket";
	if (S_ISFIFO(m))
		return "pipe";
	return "other";
}

int main(int argc, char **argv)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
		printf("getrlimit: %s\n", strerror(errno));
		return 1;
	}
	/* Every descriptor a process can hold is below its soft limit (capped: a test has few). */
	int top = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 65536 ? 65536 : (int)rl.rlim_cur;
	for (int fd = 3; fd < top; ++fd) {
		struct stat st;
		if (fstat(fd, &st) == 0)
			printf("fd %d %s\n", fd, kind(st.st_mode));
		else if (errno != EBADF) {
			printf("fstat(%d): %s\n", fd, strerror(errno));
			return 1;
		}
	}
	for (int i = 1; i < argc; ++i) {
		int fd = atoi(argv[i]);
		char buf[256];
		ssize_t n = read(fd, buf, sizeof buf - 1);
		if (n < 0) {
			printf("read %d: %s\n", fd, strerror(errno));
			return 1;
		}
		buf[n] = '\0';
		printf("read %d: %s\n", fd, buf);
	}
	return 0;
}
