// SPDX-License-Identifier: Apache-2.0
/*
 * Event-rate generator: open+close of PATH paced at RATE opens per second for SECONDS
 * (each open is one kernel record). Paces against CLOCK_MONOTONIC in 1 ms slices, so a
 * slow slice is caught up in the next. Prints the rate actually achieved.
 *   gen_rate RATE SECONDS PATH
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: gen_rate RATE SECONDS PATH\n");
		return 2;
	}
	double rate = atof(argv[1]), secs = atof(argv[2]);
	long total = (long)(rate * secs), done = 0;
	double t0 = now();
	while (done < total) {
		double t = now() - t0;
		long due = (long)(t * rate) + (long)(rate / 1000) + 1; /* up to 1 ms ahead */
		if (due > total)
			due = total;
		if (done >= due) {
			struct timespec sl = {0, 100000};
			nanosleep(&sl, NULL);
			continue;
		}
		for (; done < due; done++)
			close(open(argv[3], O_RDONLY));
	}
	double el = now() - t0;
	printf("%ld %.3f %.0f\n", total, el, total / el);
	return 0;
}
