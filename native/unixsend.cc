#include "unixsend.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

long SendDontWait(int fd, const uint8_t* data, size_t len) {
  ssize_t n;
  do {
    n = send(fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return n < 0 ? -errno : n;
}

int DatagramSend(const std::string& path, const uint8_t* data, size_t len) {
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  // An abstract name has no NUL at its end: its length is the address length.
  if (path.empty() || path.size() >= sizeof addr.sun_path) return -EINVAL;
  memcpy(addr.sun_path, path.data(), path.size());
  if (path[0] == '@') addr.sun_path[0] = '\0';
  socklen_t addrLen = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + path.size() +
                                             (path[0] == '@' ? 0 : 1));
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  ssize_t n;
  do {
    n = sendto(fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL, reinterpret_cast<struct sockaddr*>(&addr), addrLen);
  } while (n < 0 && errno == EINTR);
  int e = n < 0 ? errno : 0;
  close(fd);
  return -e;
}
