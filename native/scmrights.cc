// See scmrights.h.
#include "scmrights.h"

#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace scmrights {

long Send(int sock, const void* data, size_t len, const int* fds, size_t n) {
  iovec iov{const_cast<void*>(data), len};
  alignas(cmsghdr) char control[kSpace];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (n > 0) {
    memset(control, 0, sizeof control);
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * n);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * n);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
  }
  ssize_t r;
  do {
    r = sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (r < 0 && errno == EINTR);
  return r < 0 ? -errno : r;
}

long Recv(int sock, void* data, size_t len, std::vector<int>* fds) {
  iovec iov{data, len};
  alignas(cmsghdr) char control[kSpace];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t r;
  do {
    r = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return -errno;
  Collect(msg, fds);
  return r;
}

void Collect(const msghdr& msg, std::vector<int>* fds) {
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(const_cast<msghdr*>(&msg), c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len < CMSG_LEN(0)) continue;
    // no further than the buffer, whatever the length says
    size_t room = msg.msg_controllen - static_cast<size_t>(CMSG_DATA(c) - static_cast<unsigned char*>(msg.msg_control));
    size_t n = std::min<size_t>(c->cmsg_len - CMSG_LEN(0), room) / sizeof(int);
    for (size_t i = 0; i < n; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      fds->push_back(fd);
    }
  }
}

}  // namespace scmrights
