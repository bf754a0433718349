// Socket options Node's net module does not expose. Plain C++, no N-API: each returns 0 or
// the errno of the refusal (the binding in addon.cc turns that into a Refusal).
#pragma once

namespace pc {

// setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, bytes): the kernel then takes new data on
// this socket only while fewer than `bytes` written bytes are still unsent, so what waits
// in the socket stays bounded (the rest waits in the writer, which can still reorder it).
int set_tcp_notsent_lowat(int fd, int bytes);

// getsockopt of the same option (to check it took).
int get_tcp_notsent_lowat(int fd, int* bytes);

}  // namespace pc
