// SPDX-License-Identifier: Apache-2.0
/*
 * Flood generator (issue 11 item 7): THREADS threads fail open(FLOOD) as fast as they can
 * for SECONDS while the main thread makes K violations that must not be lost among them:
 * K different denied opens (VICTIM0..VICTIM<K-1>), K denied connects (127.0.0.1, port
 * 20000+k) and K fork+exec of /bin/true, one of each per millisecond. Prints the
 * attempts it made, so the record can be checked against them exactly.
 *   gen_flood SECONDS THREADS FLOOD VICTIM K
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *flood_path;
static atomic_long attempts;
static atomic_int stop;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *flood(void *arg)
{
	long n = 0;
	(void)arg;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		if (open(flood_path, O_RDONLY) >= 0)
			_exit(3); /* the flood path must be denied */
		n++;
	}
	atomic_fetch_add(&attempts, n);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: gen_flood SECONDS THREADS FLOOD VICTIM K\n");
		return 2;
	}
	double secs = atof(argv[1]);
	int threads = atoi(argv[2]), k = atoi(argv[5]);
	flood_path = argv[3];
	pthread_t t[64];
	if (threads < 1 || threads > 64)
		return 2;
	for (int i = 0; i < threads; i++)
		pthread_create(&t[i], 0, flood, 0);
	double t0 = now();
	usleep(200000); /* the flood is running before the first victim */
	int denied_opens = 0, denied_connects = 0, execs = 0;
	char buf[4096];
	for (int i = 0; i < k; i++) {
		snprintf(buf, sizeof buf, "%s%d", argv[4], i);
		denied_opens += open(buf, O_RDONLY) < 0;
		int s = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(20000 + i)};
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		denied_connects += s >= 0 && connect(s, (struct sockaddr *)&sa, sizeof sa) != 0;
		if (s >= 0)
			close(s);
		pid_t p = fork();
		if (p == 0) {
			execl("/bin/true", "true", (char *)0);
			_exit(127);
		}
		int st;
		execs += p > 0 && waitpid(p, &st, 0) == p && st == 0;
		usleep(1000);
	}
	while (now() - t0 < secs)
		usleep(10000);
	atomic_store(&stop, 1);
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], 0);
	double el = now() - t0;
	long a = atomic_load(&attempts);
	printf("flood_attempts %ld flood_rate %.0f denied_opens %d denied_connects %d execs %d\n", a, a / el,
	       denied_opens, denied_connects, execs);
	return 0;
}
