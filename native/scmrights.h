// Fds over unix sockets (SCM_RIGHTS), never waiting: the proxy's peers
// (unixpeer.cc) and the fd installs into a traced process (fdtransfer.cc,
// fdchannel.cc) send and take them the same way.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <vector>

namespace scmrights {

constexpr int kMaxFd = 253;  // SCM_MAX_FD: fds per SCM_RIGHTS message
// A control buffer that holds kMaxFd of them.
constexpr size_t kSpace = CMSG_SPACE(sizeof(int) * kMaxFd);

// sendmsg(MSG_DONTWAIT | MSG_NOSIGNAL) of len bytes with n (<= kMaxFd) fds
// on the first byte: bytes sent or -errno (-EAGAIN: the reader is behind).
long Send(int sock, const void* data, size_t len, const int* fds, size_t n);

// recvmsg(MSG_DONTWAIT | MSG_CMSG_CLOEXEC) of up to len bytes: bytes read
// (0: the peer closed) or -errno (-EAGAIN: nothing yet); the fds that came
// are appended to *fds (those a short control buffer cut off are gone).
long Recv(int sock, void* data, size_t len, std::vector<int>* fds);

// Appends the fds of msg's SCM_RIGHTS messages to *fds, read no further
// than its control buffer (msg may be a copy read back from a traced
// process, lengths and all).
void Collect(const msghdr& msg, std::vector<int>* fds);

}  // namespace scmrights
