// Moving fds into a ptrace-stopped thread (x86-64): a socket pair made in
// the thread, our end taken with pidfd_getfd, the fds sent with SCM_RIGHTS
// and received by injected recvmsg calls, so that they land as
// get_unused_fd_flags(O_CLOEXEC) would put them. See fdinstall.cc for the
// whole sequence around it.
#pragma once

#if defined(__x86_64__)

#include <string>
#include <vector>

#include "syscall_inject.h"

namespace fdtransfer {

// The fds into the stopped thread, whose registers are saved: fills
// *numbers (per fd: its number in the thread, or -errno), or sets *error
// (-errno: nothing was installed) and *why.
void InstallInto(inject::Tracee& t, const std::vector<int>& fds, std::vector<int>* numbers,
                 int* error, std::string* why);

// Closes fds (installed numbers; negative ones skipped) in the thread.
void CloseIn(inject::Tracee& t, const std::vector<int>& numbers);

// Shared with fdchannel.cc:
// The lowest numbers free in tid's fd table: the first `count` of them.
std::vector<int> LowestFree(pid_t tid, size_t count);
// The soft RLIMIT_NOFILE of tid's process, or -1.
long SoftNofile(pid_t tid);
// Sends fds over sock, scmrights::kMaxFd per datagram. 0 or -errno.
int SendFds(int sock, const std::vector<int>& fds);

}  // namespace fdtransfer

#endif  // __x86_64__
