// SPDX-License-Identifier: Apache-2.0
/*
 * Runs inside `agentcage trace` for tests/privileged/monitor_test.cc: performs every file
 * action, failed syscall and process event the monitor must record, with raw syscalls so
 * the test knows exactly which call produced which record.
 *
 *   monitor_helper scenario DIR   the full scenario below, in DIR (prepared by the test)
 *   monitor_helper flood N PATH   N x open+close of PATH, as fast as possible
 *   monitor_helper failflood N PATH OTHER
 *                                 N failed opens of PATH; OTHER0..OTHER9 once each among them
 *   monitor_helper distinct N PREFIX M
 *                                 N failed opens of PREFIX0..PREFIX<N-1>, then M x fork+exec true
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

static char buf[4096];

static const char *at(const char *dir, const char *name)
{
	snprintf(buf, sizeof buf, "%s/%s", dir, name);
	return buf;
}

/* Forks, runs fn in the child, waits. */
static void in_child(void (*fn)(const char *), const char *dir)
{
	pid_t p = fork();
	if (p == 0) {
		fn(dir);
		_exit(0);
	}
	int st;
	waitpid(p, &st, 0);
}

static void as_nobody(const char *dir)
{
	if (setgid(65534) || setuid(65534))
		_exit(90);
	/* secret is 0600 root: EACCES. chmod of a file we do not own: EPERM. */
	if (open(at(dir, "secret"), O_RDONLY) >= 0 || errno != EACCES)
		_exit(91);
	if (chmod(at(dir, "secret"), 0777) == 0 || errno != EPERM)
		_exit(92);
}

static void exec_script(const char *dir)
{
	char *const argv[] = {"script.sh", "arg1", NULL};
	execv(at(dir, "script.sh"), argv);
	_exit(93);
}

static void exec_missing(const char *dir)
{
	(void)dir;
	char *const argv[] = {"/nonexistent/agentcage-missing", "-x", NULL};
	execv(argv[0], argv);
	_exit(0); /* expected: the exec failed with ENOENT */
}

static void die_by_signal(const char *dir)
{
	(void)dir;
	kill(getpid(), SIGKILL);
}

static int scenario(const char *dir)
{
	char path[4096];

	/* 1. relative open through a dirfd, climbing out with "..". */
	int dfd = open(at(dir, "sub"), O_RDONLY | O_DIRECTORY);
	int fd = openat(dfd, "../target.txt", O_RDONLY);
	close(fd);
	/* 2. through a symlink. */
	close(open(at(dir, "link"), O_RDONLY));
	/* 3. through /proc/self/root. */
	snprintf(path, sizeof path, "/proc/self/root%s/target.txt", dir);
	close(open(path, O_RDONLY));
	/* 4. a failed open: the path as given, and the errno. */
	if (open(at(dir, "missing"), O_RDONLY) >= 0)
		return 1;
	/* 5. creat, 6. rename. */
	close(creat(at(dir, "new.txt"), 0640));
	snprintf(path, sizeof path, "%s/renamed.txt", dir);
	rename(at(dir, "new.txt"), path);
	/* 7. mkdir, rmdir. */
	mkdir(at(dir, "d"), 0700);
	rmdir(at(dir, "d"));
	/* 8. link, symlink. */
	snprintf(path, sizeof path, "%s/hard", dir);
	link(at(dir, "renamed.txt"), path);
	symlink("renamed.txt", at(dir, "sym"));
	/* 9. chmod, chown, truncate, setxattr, unlink. */
	chmod(at(dir, "renamed.txt"), 0600);
	chown(at(dir, "renamed.txt"), 1, 2);
	truncate(at(dir, "renamed.txt"), 0);
	setxattr(at(dir, "renamed.txt"), "user.agentcage", "v", 1, 0);
	unlink(at(dir, "hard"));
	/* 10. openat2 relative to the dirfd. */
	struct open_how how = {.flags = O_RDONLY};
	close(syscall(SYS_openat2, dfd, "../target.txt", &how, sizeof how));
	/* 10b. fd-based calls (resolved from the fd) and *at() calls relative to the dirfd. */
	int rw = open(at(dir, "renamed.txt"), O_RDWR);
	fchmod(rw, 0644);
	fchown(rw, 3, 4);
	ftruncate(rw, 0);
	fsetxattr(rw, "user.fd", "v", 1, 0);
	close(rw);
	mkdirat(dfd, "../d2", 0755);
	unlinkat(dfd, "../d2", AT_REMOVEDIR);
	fchmodat(dfd, "../renamed.txt", 0640, 0);
	snprintf(path, sizeof path, "%s/renamed2.txt", dir);
	syscall(SYS_renameat2, dfd, "../renamed.txt", AT_FDCWD, path, 0);
	close(dfd);
	/* 11. EACCES/EPERM as an unprivileged user. */
	in_child(as_nobody, dir);
	/* 12. exec of a script, a failed exec, exit by signal. */
	in_child(exec_script, dir);
	in_child(exec_missing, dir);
	in_child(die_by_signal, dir);
	return 0;
}

static int flood(long n, const char *path)
{
	for (long i = 0; i < n; i++)
		close(open(path, O_RDONLY));
	return 0;
}

static int failflood(long n, const char *path, const char *other)
{
	long step = n / 10 > 0 ? n / 10 : 1;
	char buf[4096];

	for (long i = 0; i < n; i++) {
		if (open(path, O_RDONLY) >= 0)
			return 3; /* must fail */
		if (i % step == step / 2 && i / step < 10) {
			snprintf(buf, sizeof buf, "%s%ld", other, i / step);
			if (open(buf, O_RDONLY) >= 0)
				return 3;
		}
	}
	return 0;
}

static int distinct(long n, const char *prefix, long m)
{
	char buf[4096];

	for (long i = 0; i < n; i++) {
		snprintf(buf, sizeof buf, "%s%ld", prefix, i);
		if (open(buf, O_RDONLY) >= 0)
			return 3;
	}
	for (long i = 0; i < m; i++) {
		pid_t p = fork();
		if (p == 0) {
			execl("/bin/true", "true", (char *)0);
			_exit(127);
		}
		int st;
		if (p < 0 || waitpid(p, &st, 0) != p || st != 0)
			return 4;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "scenario"))
		return scenario(argv[2]);
	if (argc == 4 && !strcmp(argv[1], "flood"))
		return flood(atol(argv[2]), argv[3]);
	if (argc == 5 && !strcmp(argv[1], "failflood"))
		return failflood(atol(argv[2]), argv[3], argv[4]);
	if (argc == 5 && !strcmp(argv[1], "distinct"))
		return distinct(atol(argv[2]), argv[3], atol(argv[4]));
	fprintf(stderr, "usage: monitor_helper scenario DIR | flood N PATH | failflood N PATH OTHER | distinct N PREFIX M\n");
	return 2;
}
