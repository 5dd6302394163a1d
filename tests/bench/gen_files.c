// SPDX-License-Identifier: Apache-2.0
/*
 * Benchmark (a): N x openat + read + close + stat of one file, single thread.
 *   gen_files N PATH
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: gen_files N PATH\n");
		return 2;
	}
	long n = atol(argv[1]);
	char buf[64];
	struct stat st;
	for (long i = 0; i < n; i++) {
		int fd = openat(AT_FDCWD, argv[2], O_RDONLY);
		if (fd < 0 || read(fd, buf, sizeof buf) < 0 || close(fd) || stat(argv[2], &st)) {
			perror(argv[2]);
			return 1;
		}
	}
	return 0;
}
