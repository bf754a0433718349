#include "socket_options.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#ifndef TCP_NOTSENT_LOWAT
#define TCP_NOTSENT_LOWAT 25  // Linux >= 3.12; older libc headers lack the name
#endif

namespace pc {

int set_tcp_notsent_lowat(int fd, int bytes) {
  if (bytes <= 0) return EINVAL;
  return setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &bytes, sizeof bytes) == 0 ? 0 : errno;
}

int get_tcp_notsent_lowat(int fd, int* bytes) {
  socklen_t len = sizeof *bytes;
  return getsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, bytes, &len) == 0 ? 0 : errno;
}

}  // namespace pc
