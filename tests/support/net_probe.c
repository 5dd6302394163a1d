// SPDX-License-Identifier: Apache-2.0
/*
 * net_probe: one network action per run, for the privileged network tests. Runs inside
 * the sandbox; reports on stdout and exits 0 on success or with the errno on failure,
 * so tests see exactly what the kernel answered (EPERM from the cgroup programs).
 *
 *   net_probe connect tcp|udp ADDR PORT   ADDR: IPv4, IPv6 or ::ffff:a.b.c.d
 *   net_probe sendto ADDR PORT [N]        N (default 1) UDP datagrams, one unconnected socket
 *   net_probe fastopen ADDR PORT          TCP Fast Open: sendto(MSG_FASTOPEN) connects
 *   net_probe bind tcp|udp ADDR PORT
 *   net_probe selfaccept ADDR             listen on ADDR:0, connect to it, accept;
 *                                         prints "listen PORT client PORT"
 *   net_probe unix PATH|@NAME             stream connect to a unix socket
 *   net_probe unixsend PATH|@NAME         one datagram to a unix socket (unconnected)
 *   net_probe raw ADDR                    raw ICMP socket, one echo request to ADDR
 *   net_probe socket DOMAIN TYPE PROTO    socket(2) by number; DOMAIN is passed as a full
 *                                         64-bit register (0x1000000028 tests that only
 *                                         the low 32 bits, as the kernel reads, decide)
 *   net_probe socketpair DOMAIN           socketpair(DOMAIN, SOCK_STREAM, 0)
 *   net_probe dns udp|udpconn|tcp ADDR NAME [aaaa]
 *                                         one A query for NAME to ADDR port 53 (udp:
 *                                         unconnected sendto/recvfrom; udpconn: connect,
 *                                         send, recv, getpeername); prints
 *                                         "dns rcode R answers N [first A] from PEER"
 */
#define _GNU_SOURCE /* accept4 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

static int fail(const char *what)
{
	int e = errno;
	printf("%s error %s\n", what, e == EPERM ? "EPERM" : strerror(e));
	fflush(stdout);
	return e ? e : 1;
}

static socklen_t inet_addr_of(const char *text, int port, struct sockaddr_storage *ss)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, text, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons(port);
		return sizeof(*in4);
	}
	if (inet_pton(AF_INET6, text, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		return sizeof(*in6);
	}
	fprintf(stderr, "net_probe: bad address %s\n", text);
	exit(100);
}

static void print_addr(const struct sockaddr_storage *ss)
{
	char text[INET6_ADDRSTRLEN] = "?";
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
		printf("[%s]:%d", text, ntohs(in6->sin6_port));
	} else {
		const struct sockaddr_in *in4 = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &in4->sin_addr, text, sizeof(text));
		printf("%s:%d", text, ntohs(in4->sin_port));
	}
}

/* One A query: header, QNAME as labels, QTYPE A, QCLASS IN. Returns its length. */
static size_t dns_query(const char *name, unsigned char *q, int qtype)
{
	size_t n = 12;
	memset(q, 0, 12);
	q[0] = 0x4a;
	q[1] = 0x17;
	q[2] = 0x01; /* RD */
	q[5] = 1;    /* QDCOUNT */
	while (*name) {
		const char *dot = strchr(name, '.');
		size_t l = dot ? (size_t)(dot - name) : strlen(name);
		q[n++] = (unsigned char)l;
		memcpy(q + n, name, l);
		n += l;
		name += l + (dot ? 1 : 0);
	}
	q[n++] = 0;
	q[n++] = 0;
	q[n++] = (unsigned char)qtype;
	q[n++] = 0;
	q[n++] = 1;
	return n;
}

/* rcode, answer count and the first A record of a reply (answers right after the question). */
static void dns_print(const unsigned char *r, ssize_t n, size_t qlen)
{
	if (n < 12) {
		printf("dns short reply\n");
		return;
	}
	printf("dns rcode %d answers %d", r[3] & 0xf, r[6] << 8 | r[7]);
	size_t off = qlen;
	if ((r[6] << 8 | r[7]) > 0 && (size_t)n >= off + 16 && r[off + 3] == 1 && r[off + 11] == 4)
		printf(" %d.%d.%d.%d", r[off + 12], r[off + 13], r[off + 14], r[off + 15]);
}

static int sock_type(const char *proto) { return strcmp(proto, "udp") == 0 ? SOCK_DGRAM : SOCK_STREAM; }

int main(int argc, char **argv)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd;

	if (argc < 3) {
		fprintf(stderr, "usage: see the comment at the top of net_probe.c\n");
		return 100;
	}
	const char *op = argv[1];
	if (strcmp(op, "connect") == 0 && argc == 5) {
		len = inet_addr_of(argv[3], atoi(argv[4]), &ss);
		fd = socket(ss.ss_family, sock_type(argv[2]), 0);
		if (fd < 0)
			return fail("socket");
		if (connect(fd, (struct sockaddr *)&ss, len) != 0)
			return fail("connect");
	} else if (strcmp(op, "sendto") == 0 && (argc == 4 || argc == 5)) {
		int n = argc == 5 ? atoi(argv[4]) : 1;
		len = inet_addr_of(argv[2], atoi(argv[3]), &ss);
		fd = socket(ss.ss_family, SOCK_DGRAM, 0);
		if (fd < 0)
			return fail("socket");
		for (int i = 0; i < n; i++)
			if (sendto(fd, "x", 1, 0, (struct sockaddr *)&ss, len) != 1)
				return fail("sendto");
	} else if (strcmp(op, "fastopen") == 0 && argc == 4) {
		len = inet_addr_of(argv[2], atoi(argv[3]), &ss);
		fd = socket(ss.ss_family, SOCK_STREAM, 0);
		if (fd < 0)
			return fail("socket");
		if (sendto(fd, "x", 1, MSG_FASTOPEN, (struct sockaddr *)&ss, len) < 0)
			return fail("fastopen");
	} else if (strcmp(op, "bind") == 0 && argc == 5) {
		len = inet_addr_of(argv[3], atoi(argv[4]), &ss);
		fd = socket(ss.ss_family, sock_type(argv[2]), 0);
		if (fd < 0)
			return fail("socket");
		if (bind(fd, (struct sockaddr *)&ss, len) != 0)
			return fail("bind");
	} else if (strcmp(op, "selfaccept") == 0 && argc == 3) {
		struct sockaddr_storage got;
		socklen_t glen = sizeof(got);
		len = inet_addr_of(argv[2], 0, &ss);
		int l = socket(ss.ss_family, SOCK_STREAM, 0);
		if (l < 0 || bind(l, (struct sockaddr *)&ss, len) != 0 || listen(l, 1) != 0)
			return fail("listen");
		if (getsockname(l, (struct sockaddr *)&got, &glen) != 0)
			return fail("getsockname");
		int lport = ntohs(((struct sockaddr_in *)&got)->sin_port); /* same offset in sin6 */
		int c = socket(ss.ss_family, SOCK_STREAM, 0);
		if (c < 0 || connect(c, (struct sockaddr *)&got, glen) != 0)
			return fail("connect");
		glen = sizeof(got);
		if (getsockname(c, (struct sockaddr *)&got, &glen) != 0)
			return fail("getsockname");
		int cport = ntohs(((struct sockaddr_in *)&got)->sin_port);
		if (accept4(l, NULL, NULL, SOCK_CLOEXEC) < 0)
			return fail("accept");
		printf("listen %d client %d\n", lport, cport);
	} else if ((strcmp(op, "unix") == 0 || strcmp(op, "unixsend") == 0) && argc == 3) {
		struct sockaddr_un un = {.sun_family = AF_UNIX};
		size_t n = strlen(argv[2]);
		if (n >= sizeof(un.sun_path))
			return 100;
		memcpy(un.sun_path, argv[2], n);
		if (argv[2][0] == '@')
			un.sun_path[0] = '\0'; /* abstract: length-delimited, no terminator */
		socklen_t ulen = offsetof(struct sockaddr_un, sun_path) + n;
		if (strcmp(op, "unixsend") == 0) {
			fd = socket(AF_UNIX, SOCK_DGRAM, 0);
			if (fd < 0)
				return fail("socket");
			if (sendto(fd, "x", 1, 0, (struct sockaddr *)&un, ulen) != 1)
				return fail("sendto");
		} else {
			fd = socket(AF_UNIX, SOCK_STREAM, 0);
			if (fd < 0)
				return fail("socket");
			if (connect(fd, (struct sockaddr *)&un, ulen) != 0)
				return fail("connect");
		}
	} else if (strcmp(op, "socket") == 0 && argc == 5) {
		fd = (int)syscall(SYS_socket, strtoull(argv[2], 0, 0), strtoull(argv[3], 0, 0), strtoull(argv[4], 0, 0));
		if (fd < 0)
			return fail("socket");
	} else if (strcmp(op, "socketpair") == 0 && argc == 3) {
		int sv[2];
		if (socketpair((int)strtol(argv[2], 0, 0), SOCK_STREAM, 0, sv) != 0)
			return fail("socketpair");
		printf("socketpair ok\n");
		return 0;
	} else if (strcmp(op, "raw") == 0 && argc == 3) {
		static const unsigned char echo[8] = {8, 0, 0xf7, 0xff, 0, 0, 0, 0}; /* type 8, checksum */
		len = inet_addr_of(argv[2], 0, &ss);
		fd = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
		if (fd < 0)
			return fail("socket");
		if (sendto(fd, echo, sizeof(echo), 0, (struct sockaddr *)&ss, len) < 0)
			return fail("sendto");
	} else if (strcmp(op, "dns") == 0 && (argc == 5 || argc == 6)) {
		unsigned char q[512], r[4096];
		struct sockaddr_storage from;
		socklen_t fl = sizeof(from);
		size_t qlen = dns_query(argv[4], q, argc == 6 && strcmp(argv[5], "aaaa") == 0 ? 28 : 1);
		ssize_t n;
		int tcp = strcmp(argv[2], "tcp") == 0, conn = tcp || strcmp(argv[2], "udpconn") == 0;
		struct timeval tv = {5, 0};

		len = inet_addr_of(argv[3], 53, &ss);
		fd = socket(ss.ss_family, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
		if (fd < 0)
			return fail("socket");
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		if (conn && connect(fd, (struct sockaddr *)&ss, len) != 0)
			return fail("connect");
		if (tcp) {
			unsigned char l[2] = {(unsigned char)(qlen >> 8), (unsigned char)qlen};
			if (send(fd, l, 2, 0) != 2 || send(fd, q, qlen, 0) != (ssize_t)qlen)
				return fail("send");
			if (recv(fd, l, 2, MSG_WAITALL) != 2)
				return fail("recv");
			n = recv(fd, r, (size_t)(l[0] << 8 | l[1]) < sizeof(r) ? (size_t)(l[0] << 8 | l[1]) : sizeof(r),
				 MSG_WAITALL);
		} else if (conn) {
			if (send(fd, q, qlen, 0) != (ssize_t)qlen)
				return fail("send");
			n = recv(fd, r, sizeof(r), 0);
		} else {
			if (sendto(fd, q, qlen, 0, (struct sockaddr *)&ss, len) != (ssize_t)qlen)
				return fail("sendto");
			n = recvfrom(fd, r, sizeof(r), 0, (struct sockaddr *)&from, &fl);
		}
		if (n < 0)
			return fail("recv");
		if (conn && getpeername(fd, (struct sockaddr *)&from, &fl) != 0)
			return fail("getpeername");
		dns_print(r, n, qlen);
		printf(" from ");
		print_addr(&from);
		printf("\n");
		return 0;
	} else {
		fprintf(stderr, "net_probe: bad arguments\n");
		return 100;
	}
	printf("%s ok\n", op);
	return 0;
}
