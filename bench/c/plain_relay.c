/*
 * The least a TCP relay can be, as a reference for `tap.forward.added`: one connection,
 * a thread per direction, blocking read() of what is there (up to 1 MiB) and send() of it,
 * TCP_NODELAY, nothing recorded. What it adds to a read is what any user-space relay pays
 * on this machine (a second loopback hop, a thread woken, two copies); the tap's figure
 * less this one is what the tap itself costs.
 *
 * Usage: plain_relay TO_PORT. Listens on 127.0.0.1, an ephemeral port, prints
 * {"port":N} and a newline, relays one connection to 127.0.0.1:TO_PORT, exits when both
 * directions have ended.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ONE_READ (1024 * 1024)

struct direction {
  int from, to;
};

static void die(const char* what) {
  perror(what);
  exit(1);
}

static void* forward(void* arg) {
  struct direction* d = arg;
  char* buf = malloc(ONE_READ);
  if (buf == NULL) die("malloc");
  for (;;) {
    ssize_t n = read(d->from, buf, ONE_READ);
    if (n <= 0) break;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = send(d->to, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
      if (w < 0) goto done;
      off += w;
    }
  }
done:
  shutdown(d->to, SHUT_WR);
  free(buf);
  return NULL;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: plain_relay TO_PORT\n");
    return 2;
  }
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof addr;
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  if (listener < 0 || bind(listener, (struct sockaddr*)&addr, sizeof addr) != 0 || listen(listener, 1) != 0) die("listen");
  if (getsockname(listener, (struct sockaddr*)&addr, &len) != 0) die("getsockname");
  printf("{\"port\":%d}\n", ntohs(addr.sin_port));
  fflush(stdout);

  int client = accept(listener, NULL, NULL);
  if (client < 0) die("accept");
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int upstream = socket(AF_INET, SOCK_STREAM, 0);
  if (upstream < 0 || connect(upstream, (struct sockaddr*)&to, sizeof to) != 0) die("connect");
  int one = 1;
  setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(upstream, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

  struct direction down = {client, upstream}, up = {upstream, client};
  pthread_t threads[2];
  if (pthread_create(&threads[0], NULL, forward, &down) != 0 || pthread_create(&threads[1], NULL, forward, &up) != 0) die("pthread_create");
  pthread_join(threads[0], NULL);
  pthread_join(threads[1], NULL);
  return 0;
}
