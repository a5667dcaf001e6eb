// See fdchannel.h.
#include "fdchannel.h"

#if defined(__x86_64__)

#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "fdcloser.h"
#include "fdtransfer.h"
#include "procfile.h"
#include "procmem.h"
#include "scmrights.h"

namespace fdchannel {

using inject::Inject;
using inject::Tracee;

namespace {

// Processes with a channel: 3 fds of ours each.
constexpr size_t kMaxChannels = 512;
// Scratch layout: msghdr | control buffer (int sv[2] while the channel is made).
constexpr uint64_t kOffMsg = 0, kOffCmsg = 64;
constexpr uint64_t kScratchPage = 4096;
static_assert(kOffCmsg + scmrights::kSpace <= kScratchPage, "the scratch fits its page");

// Our side only: the receiver's is gone, or no longer known to be ours.
void Forget(Channel& ch) {
  for (int* fd : {&ch.ours, &ch.copy}) {
    if (*fd >= 0) close(*fd);  // sockets and a pidfd: a close that cannot block
    *fd = -1;
  }
  ch.number = -1;
  ch.scratch = 0;
}

// Both sides, after a use that showed the channel still ours.
void Close(Tracee& t, Channel& ch) {
  Inject(t, SYS_close, static_cast<uint64_t>(ch.number));
  Inject(t, SYS_munmap, ch.scratch, kScratchPage);
  Forget(ch);
}

// Whatever a failed recvmsg left queued: taken here, and dropped through
// the closer (a close of a FUSE file waits for its FLUSH, which its server
// may never answer).
void Drain(Channel& ch, FdCloser* closer) {
  std::vector<int> taken;
  char byte;
  while (scmrights::Recv(ch.copy, &byte, 1, &taken) >= 0) {}
  if (!taken.empty()) closer->CloseLater(std::move(taken));
}

// Where the channel's socket goes: above `above` and, when the fd table is
// large enough already, at its last slot (FDSize - 1: out of the way of the
// numbers the process takes next, and no larger table). -1 if that does not
// fit under RLIMIT_NOFILE.
long Placement(Tracee& t, int above) {
  std::string status = procfile::Read("/proc/" + std::to_string(t.tid) + "/status");
  long want = std::max<long>(above, atol(procfile::StatusField(status, "FDSize").c_str()) - 1);
  long limit = fdtransfer::SoftNofile(t.tid);
  if (limit > 0) want = std::min(want, limit - 1);
  return want < above ? -1 : want;
}

// Makes the channel in the stopped thread's process, its socket above the
// `count` numbers the next fds take (Placement). False (nothing left
// behind) if it does not fit or a call fails.
bool Open(Tracee& t, Channel& ch, size_t count) {
  long want = Placement(t, fdtransfer::LowestFree(t.tid, count + 1).back());
  if (want < 0) return false;

  long m = Inject(t, SYS_mmap, 0, kScratchPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                  static_cast<uint64_t>(-1), 0);
  if (m < 0 && m > -4096) return false;
  uint64_t scratch = static_cast<uint64_t>(m);
  long r = Inject(t, SYS_socketpair, AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, scratch + kOffCmsg);
  int sv[2] = {-1, -1};
  if (r < 0 || procmem::Read(t.tid, scratch + kOffCmsg, sv, sizeof sv) < 0 || sv[0] < 0 || sv[1] < 0) {
    Inject(t, SYS_munmap, scratch, kScratchPage);
    return false;
  }
  ch.ours = procmem::TakeFd(t.tid, sv[1]);
  ch.copy = procmem::TakeFd(t.tid, sv[0]);
  long moved = ch.ours >= 0 && ch.copy >= 0
                   ? Inject(t, SYS_fcntl, static_cast<uint64_t>(sv[0]), F_DUPFD_CLOEXEC, static_cast<uint64_t>(want))
                   : -1;
  if (sv[1] == sv[0] + 1 || sv[0] == sv[1] + 1)
    Inject(t, SYS_close_range, static_cast<uint64_t>(std::min(sv[0], sv[1])),
           static_cast<uint64_t>(std::max(sv[0], sv[1])), 0);
  else
    for (int fd : sv) Inject(t, SYS_close, static_cast<uint64_t>(fd));
  if (moved < 0 || shutdown(ch.ours, SHUT_RD) < 0) {
    if (moved >= 0) Inject(t, SYS_close, static_cast<uint64_t>(moved));
    Inject(t, SYS_munmap, scratch, kScratchPage);
    Forget(ch);
    return false;
  }
  ch.number = static_cast<int>(moved);
  ch.scratch = scratch;
  return true;
}

}  // namespace

Channels::~Channels() {
  for (auto& [tgid, ch] : map_) {
    Forget(ch);
    close(ch.pidfd);
  }
  if (epoll_ >= 0) close(epoll_);
}

Channel* Channels::For(pid_t tgid) {
  auto it = map_.find(tgid);
  if (it != map_.end()) return &it->second;
  if (map_.size() >= kMaxChannels) return nullptr;
  // Every entry is watched from the start: Sweep drops it when the process goes.
  if (epoll_ < 0) epoll_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_ < 0) return nullptr;
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, tgid, 0));
  if (pidfd < 0) return nullptr;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = (static_cast<uint64_t>(tgid) << 32) | static_cast<uint32_t>(pidfd);
  if (epoll_ctl(epoll_, EPOLL_CTL_ADD, pidfd, &ev) < 0) {
    close(pidfd);
    return nullptr;
  }
  Channel& ch = map_[tgid];
  ch.pidfd = pidfd;
  return &ch;
}

void Channels::Sweep() {
  if (epoll_ < 0) return;
  epoll_event evs[64];
  int n;
  while ((n = epoll_wait(epoll_, evs, 64, 0)) > 0) {
    for (int i = 0; i < n; i++) {
      pid_t tgid = static_cast<pid_t>(evs[i].data.u64 >> 32);
      int pidfd = static_cast<int>(evs[i].data.u64 & 0xffffffffu);
      auto it = map_.find(tgid);
      if (it == map_.end() || it->second.pidfd != pidfd) continue;
      Forget(it->second);
      close(it->second.pidfd);
      map_.erase(it);
    }
  }
  if (map_.empty()) {  // no fd of ours left for channels
    close(epoll_);
    epoll_ = -1;
  }
}

bool Install(Tracee& t, Channels& chans, FdCloser* closer, const std::vector<int>& fds, std::vector<int>* numbers) {
  Channel* found = chans.For(t.tgid);
  if (!found || found->refused || fds.empty() || fds.size() > static_cast<size_t>(scmrights::kMaxFd))
    return false;
  Channel& ch = *found;
  const size_t n = fds.size();
  // Still our socket at that number (the receiver may have closed it, or
  // exec'd: it is O_CLOEXEC)? Else what is there is the receiver's own.
  if (ch.number >= 0 && syscall(SYS_kcmp, t.tgid, getpid(), KCMP_FILE, ch.number, ch.copy) != 0) Forget(ch);
  if (ch.number < 0) {
    if (!Open(t, ch, n)) return t.dead;
  } else {
    // The fds take the n lowest free numbers, as if our socket were not
    // there: if its number is among them, it moves up first (nothing
    // installed is ever moved or closed in the receiver: a close there
    // may wait for a FLUSH that never comes). The size of /proc/TID/fd is
    // the number of open fds (Linux >= 6.2; 0 before): k open, the socket
    // one of them, leave at least number - (k - 1) free below it. Else the
    // table is read.
    struct stat st;
    std::string dir = "/proc/" + std::to_string(t.tid) + "/fd";
    bool roomy = stat(dir.c_str(), &st) == 0 && st.st_size > 0 &&
                 ch.number - (st.st_size - 1) >= static_cast<long>(n);
    std::vector<int> free = roomy ? std::vector<int>{} : fdtransfer::LowestFree(t.tid, n + 1);
    if (!roomy && ch.number < free[n - 1]) {
      long want = Placement(t, free[n]);
      long moved = want < 0 ? -1
                            : Inject(t, SYS_fcntl, static_cast<uint64_t>(ch.number), F_DUPFD_CLOEXEC,
                                     static_cast<uint64_t>(want));
      if (t.dead) return true;
      if (moved < 0 || syscall(SYS_kcmp, t.tgid, getpid(), KCMP_FILE, moved, ch.copy) != 0) {
        if (moved >= 0) Inject(t, SYS_close, static_cast<uint64_t>(moved));
        Close(t, ch);
        return t.dead;
      }
      Inject(t, SYS_close, static_cast<uint64_t>(ch.number));
      ch.number = static_cast<int>(moved);
    }
  }

  msghdr m{};
  m.msg_control = reinterpret_cast<void*>(ch.scratch + kOffCmsg);
  m.msg_controllen = CMSG_SPACE(sizeof(int) * n);
  if (procmem::Write(t.tid, ch.scratch + kOffMsg, &m, sizeof m) < 0 || fdtransfer::SendFds(ch.ours, fds) < 0) {
    Drain(ch, closer);
    Close(t, ch);
    return t.dead;
  }
  long r = Inject(t, SYS_recvmsg, static_cast<uint64_t>(ch.number), ch.scratch + kOffMsg,
                  MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  if (t.dead) return true;
  // msghdr and control buffer in one read
  struct {
    msghdr m;
    char pad[kOffCmsg - sizeof(msghdr)];
    alignas(cmsghdr) char control[scmrights::kSpace];
  } readBack;
  static_assert(offsetof(decltype(readBack), control) == kOffCmsg, "the scratch layout");
  if (r < 0 || procmem::Read(t.tid, ch.scratch + kOffMsg, &readBack, kOffCmsg + CMSG_SPACE(sizeof(int) * n)) < 0) {
    // Nothing installed (r < 0), or unknown: the receiver's page is not
    // what we made (its own doing). The one-shot way then.
    Drain(ch, closer);
    Close(t, ch);
    return t.dead;
  }
  numbers->clear();
  msghdr local{};
  local.msg_control = readBack.control;
  local.msg_controllen = std::min<size_t>(readBack.m.msg_controllen, CMSG_SPACE(sizeof(int) * n));
  scmrights::Collect(local, numbers);
  if (numbers->size() > n) numbers->resize(n);
  if (numbers->size() < n) {
    // The rest did not fit in its fd table (MSG_CTRUNC): -EMFILE, as
    // fdtransfer's; a process that short of fds keeps no channel.
    numbers->resize(n, -EMFILE);
    Close(t, ch);
    ch.refused = true;
  }
  return true;
}

}  // namespace fdchannel

#endif  // __x86_64__
