// SPDX-License-Identifier: Apache-2.0
// TCP connect latency and throughput, for name_check_bench.sh. Each connection starts
// with a TLS ClientHello naming SNI (what agentcage's name check reads), then:
//   gen_conn server IP PORT                 accept; answer 1 byte after the first read,
//                                           then read to EOF (discarding), close
//   gen_conn latency IP PORT N SNI          N x (connect, hello, 1-byte answer, close)
//   gen_conn throughput IP PORT MIB SNI     one connection, hello, then MIB MiB sent
// The clients print "seconds N" (their own wall time): start-up is not counted.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static size_t hello(unsigned char *b, const char *sni) {
  size_t n = strlen(sni), at = 0;
  unsigned char body[512];
  size_t h = 0;
  body[h++] = 3;
  body[h++] = 3;
  memset(body + h, 0xab, 32);
  h += 32;
  body[h++] = 0;  // no session id
  body[h++] = 0;
  body[h++] = 2;
  body[h++] = 0x13;
  body[h++] = 0x01;
  body[h++] = 1;
  body[h++] = 0;
  size_t ext = 9 + n;  // one server_name extension
  body[h++] = (unsigned char)(ext >> 8);
  body[h++] = (unsigned char)ext;
  body[h++] = 0;
  body[h++] = 0;
  body[h++] = (unsigned char)((n + 5) >> 8);
  body[h++] = (unsigned char)(n + 5);
  body[h++] = (unsigned char)((n + 3) >> 8);
  body[h++] = (unsigned char)(n + 3);
  body[h++] = 0;
  body[h++] = (unsigned char)(n >> 8);
  body[h++] = (unsigned char)n;
  memcpy(body + h, sni, n);
  h += n;
  b[at++] = 0x16;
  b[at++] = 3;
  b[at++] = 1;
  b[at++] = (unsigned char)((h + 4) >> 8);
  b[at++] = (unsigned char)(h + 4);
  b[at++] = 1;
  b[at++] = 0;
  b[at++] = (unsigned char)(h >> 8);
  b[at++] = (unsigned char)h;
  memcpy(b + at, body, h);
  return at + h;
}

static struct sockaddr_in addr_of(const char *ip, const char *port) {
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)atoi(port));
  if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
    fprintf(stderr, "gen_conn: bad address %s\n", ip);
    exit(2);
  }
  return a;
}

static int open_conn(struct sockaddr_in *a, const char *sni) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (struct sockaddr *)a, sizeof *a) != 0) {
    perror("gen_conn: connect");
    exit(1);
  }
  unsigned char b[600];
  size_t n = hello(b, sni);
  if (write(fd, b, n) != (ssize_t)n) {
    perror("gen_conn: write");
    exit(1);
  }
  char k;
  if (read(fd, &k, 1) != 1) {
    fprintf(stderr, "gen_conn: no answer (refused by the name check?)\n");
    exit(1);
  }
  return fd;
}

static void *serve(void *arg) {
  int c = (int)(long)arg;
  char local[1 << 16];
  if (read(c, local, sizeof local) > 0 && write(c, "k", 1) == 1)
    while (read(c, local, sizeof local) > 0) {
    }
  close(c);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc >= 4 && !strcmp(argv[1], "server")) {
    struct sockaddr_in a = addr_of(argv[2], argv[3]);
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 512) != 0) {
      perror("gen_conn: bind");
      return 1;
    }
    printf("ready\n");
    fflush(stdout);
    for (;;) {
      int c = accept(l, NULL, NULL);
      if (c < 0) continue;
      pthread_t t;
      pthread_create(&t, NULL, serve, (void *)(long)c);
      pthread_detach(t);
    }
  }
  if (argc == 6 && !strcmp(argv[1], "latency")) {
    struct sockaddr_in a = addr_of(argv[2], argv[3]);
    int n = atoi(argv[4]);
    double t0 = now();
    for (int i = 0; i < n; i++) close(open_conn(&a, argv[5]));
    printf("seconds %.6f\n", now() - t0);
    return 0;
  }
  if (argc == 6 && !strcmp(argv[1], "throughput")) {
    struct sockaddr_in a = addr_of(argv[2], argv[3]);
    long mib = atol(argv[4]);
    static char chunk[1 << 20];
    memset(chunk, 'x', sizeof chunk);
    double t0 = now();
    int fd = open_conn(&a, argv[5]);
    for (long i = 0; i < mib; i++) {
      size_t off = 0;
      while (off < sizeof chunk) {
        ssize_t w = write(fd, chunk + off, sizeof chunk - off);
        if (w <= 0) {
          perror("gen_conn: write");
          return 1;
        }
        off += (size_t)w;
      }
    }
    shutdown(fd, SHUT_WR);
    char k;
    while (read(fd, &k, 1) > 0) {
    }
    printf("seconds %.6f\n", now() - t0);
    return 0;
  }
  fprintf(stderr, "usage: gen_conn server IP PORT | latency IP PORT N SNI | throughput IP PORT MIB SNI\n");
  return 2;
}
