/*
 * Baseline for transport.roundtrip: two processes on 127.0.0.1, blocking TCP with
 * TCP_NODELAY; the client sends a 21-byte request, the server answers with a 4110-byte
 * page frame; prints one round-trip time in microseconds per line. With `spin`, both ends
 * poll their socket without sleeping (non-blocking reads in a loop), as dedicated native
 * threads of a migration could while a request is outstanding: no wake-up on either side.
 * usage: tcp_pingpong <round trips> [spin]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { REQ = 21, REPLY = 4110 };

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int spin;

static int read_full(int fd, char* buf, int n) {
  int got = 0;
  while (got < n) {
    ssize_t r = recv(fd, buf + got, (size_t)(n - got), spin ? MSG_DONTWAIT : 0);
    if (r < 0 && spin && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (r <= 0) return -1;
    got += (int)r;
  }
  return 0;
}

static int write_full(int fd, const char* buf, int n) {
  int put = 0;
  while (put < n) {
    ssize_t w = write(fd, buf + put, (size_t)(n - put));
    if (w <= 0) return -1;
    put += (int)w;
  }
  return 0;
}

int main(int argc, char** argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 2000;
  spin = argc > 2 && strcmp(argv[2], "spin") == 0;
  int one = 1;
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(ls, (struct sockaddr*)&a, sizeof a) || listen(ls, 1) || getsockname(ls, (struct sockaddr*)&a, &len)) return perror("listen"), 1;
  pid_t child = fork();
  if (child == 0) {
    int c = accept(ls, 0, 0);
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    static char buf[REPLY];
    while (read_full(c, buf, REQ) == 0 && write_full(c, buf, REPLY) == 0) {}
    _exit(0);
  }
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(s, (struct sockaddr*)&a, sizeof a)) return perror("connect"), 1;
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  static char buf[REPLY];
  for (int i = 0; i < rounds; i++) {
    double t = now_us();
    if (write_full(s, buf, REQ) || read_full(s, buf, REPLY)) return perror("round trip"), 1;
    printf("%.2f\n", now_us() - t);
  }
  close(s);
  waitpid(child, 0, 0);
  return 0;
}
