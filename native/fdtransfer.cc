// See fdtransfer.h.
#include "fdtransfer.h"

#if defined(__x86_64__)

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "procfile.h"
#include "procmem.h"
#include "scmrights.h"

namespace fdtransfer {

using inject::Inject;
using inject::Tracee;

namespace {

// Scratch layout in the receiver: int sv[2] | 1 data byte | iovec | msghdr | cmsg buffer
constexpr uint64_t kOffSv = 0, kOffByte = 8, kOffIov = 16, kOffMsg = 32, kOffCmsg = 96;
constexpr uint64_t kScratchPage = 4096;
static_assert(kOffCmsg + scmrights::kSpace <= kScratchPage, "the scratch fits its page");

}  // namespace

std::vector<int> LowestFree(pid_t tid, size_t count) {
  std::vector<int> used;
  std::string dir = "/proc/" + std::to_string(tid) + "/fd";
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
      used.push_back(atoi(e->d_name));
    }
    closedir(d);
  }
  std::sort(used.begin(), used.end());
  std::vector<int> out;
  size_t i = 0;
  for (int n = 0; out.size() < count; n++) {
    while (i < used.size() && used[i] < n) i++;
    if (i < used.size() && used[i] == n) continue;
    out.push_back(n);
  }
  return out;
}

long SoftNofile(pid_t tid) {
  std::string limits = procfile::Read("/proc/" + std::to_string(tid) + "/limits");
  size_t at = limits.find("Max open files");
  if (at == std::string::npos) return -1;
  return strtol(limits.c_str() + at + strlen("Max open files"), nullptr, 10);
}

int SendFds(int sock, const std::vector<int>& fds) {
  for (size_t at = 0; at < fds.size(); at += scmrights::kMaxFd) {
    char byte = 0;
    long r = scmrights::Send(sock, &byte, 1, fds.data() + at, std::min<size_t>(scmrights::kMaxFd, fds.size() - at));
    if (r < 0) return static_cast<int>(r);
  }
  return 0;
}

namespace {

// Receives one datagram of up to `count` fds in the thread; appends a number
// (or -errno) per fd to out.
void RecvFds(Tracee& t, long sock, size_t count, std::vector<int>* out) {
  size_t first = out->size();
  out->resize(first + count, -EMFILE);
  uint64_t s = t.scratch;
  iovec iov{reinterpret_cast<void*>(s + kOffByte), 1};
  msghdr msg{};
  msg.msg_iov = reinterpret_cast<iovec*>(s + kOffIov);
  msg.msg_iovlen = 1;
  msg.msg_control = reinterpret_cast<void*>(s + kOffCmsg);
  msg.msg_controllen = scmrights::kSpace;
  if (procmem::Write(t.tid, s + kOffIov, &iov, sizeof iov) < 0 ||
      procmem::Write(t.tid, s + kOffMsg, &msg, sizeof msg) < 0) {
    std::fill(out->begin() + first, out->end(), -EFAULT);
    return;
  }
  long r = Inject(t, SYS_recvmsg, static_cast<uint64_t>(sock), s + kOffMsg,
                  MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  if (r < 0) {
    std::fill(out->begin() + first, out->end(), static_cast<int>(r));
    return;
  }
  msghdr back;
  alignas(cmsghdr) char control[scmrights::kSpace];
  if (procmem::Read(t.tid, s + kOffMsg, &back, sizeof back) < 0 ||
      procmem::Read(t.tid, s + kOffCmsg, control, sizeof control) < 0) {
    std::fill(out->begin() + first, out->end(), -EFAULT);
    return;
  }
  size_t len = std::min<size_t>(back.msg_controllen, sizeof control);
  // The control messages of our local copy.
  msghdr local{};
  local.msg_control = control;
  local.msg_controllen = len;
  std::vector<int> got;
  scmrights::Collect(local, &got);
  std::copy_n(got.begin(), std::min(got.size(), count), out->begin() + first);
  // The rest did not fit in the receiver's fd table (MSG_CTRUNC): -EMFILE.
}

}  // namespace

// Closes fds (installed numbers) in the thread, runs of consecutive numbers at once.
void CloseIn(Tracee& t, const std::vector<int>& numbers) {
  std::vector<int> v;
  for (int n : numbers)
    if (n >= 0) v.push_back(n);
  std::sort(v.begin(), v.end());
  for (size_t i = 0; i < v.size() && !t.dead;) {
    size_t j = i;
    while (j + 1 < v.size() && v[j + 1] == v[j] + 1) j++;
    if (j > i)
      Inject(t, SYS_close_range, static_cast<uint64_t>(v[i]), static_cast<uint64_t>(v[j]), 0);
    else
      Inject(t, SYS_close, static_cast<uint64_t>(v[i]));
    i = j + 1;
  }
}

namespace {

// InstallInto's work once t.scratch is there.
void InstallWithScratch(Tracee& t, const std::vector<int>& fds, std::vector<int>* numbers,
                        int* error, std::string* why) {
  // The numbers the fds will take (as get_unused_fd_flags would give them),
  // and the first one above them, for our socket.
  std::vector<int> free = LowestFree(t.tid, fds.size() + 1);
  int above = free.back();

  long r = Inject(t, SYS_socketpair, AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, t.scratch + kOffSv);
  if (r < 0) {
    if (r == -EMFILE || r == -ENFILE) {
      // The receiver's fd table is full: every fd fails, as in kdbus.
      numbers->assign(fds.size(), static_cast<int>(r));
    } else {
      *error = static_cast<int>(r);
      *why = "socketpair in the receiver failed: " + std::string(strerror(static_cast<int>(-r)));
    }
    return;
  }
  int sv[2] = {-1, -1};
  if (procmem::Read(t.tid, t.scratch + kOffSv, sv, sizeof sv) < 0) {
    *error = -EFAULT;
    *why = "reading the socket pair back failed";
    return;
  }
  // Our end, b, is taken; a moves above the numbers the fds will take.
  int ours = procmem::TakeFd(t.tid, sv[1]);
  long sock = sv[0];
  long moved = -1;
  if (ours >= 0 && sock < above) {
    moved = Inject(t, SYS_fcntl, static_cast<uint64_t>(sock), F_DUPFD_CLOEXEC, static_cast<uint64_t>(above));
    if (moved < 0) {
      // Past RLIMIT_NOFILE: the highest number allowed then, so that the fds
      // still start at the lowest free one (one fewer fits than in kdbus).
      long limit = SoftNofile(t.tid);
      if (limit > std::max(sv[0], sv[1]) + 1)
        moved = Inject(t, SYS_fcntl, static_cast<uint64_t>(sock), F_DUPFD_CLOEXEC, static_cast<uint64_t>(limit - 1));
    }
  }
  // Close b, and a if it moved (else the fds land one number higher): the
  // two are neighbours as a rule, one close_range then.
  if (moved >= 0 && (sv[1] == sv[0] + 1 || sv[0] == sv[1] + 1)) {
    Inject(t, SYS_close_range, static_cast<uint64_t>(std::min(sv[0], sv[1])),
           static_cast<uint64_t>(std::max(sv[0], sv[1])), 0);
  } else {
    Inject(t, SYS_close, static_cast<uint64_t>(sv[1]));
    if (moved >= 0) Inject(t, SYS_close, static_cast<uint64_t>(sock));
  }
  if (moved >= 0) sock = moved;
  if (ours < 0) {
    Inject(t, SYS_close, static_cast<uint64_t>(sock));
    *error = ours;
    *why = "taking the receiver's socket failed: " + std::string(strerror(-ours));
    return;
  }
  int e = SendFds(ours, fds);
  close(ours);
  if (e < 0) {
    Inject(t, SYS_close, static_cast<uint64_t>(sock));
    *error = e;
    *why = "sendmsg(SCM_RIGHTS) failed: " + std::string(strerror(-e));
    return;
  }
  for (size_t at = 0; at < fds.size() && !t.dead; at += scmrights::kMaxFd)
    RecvFds(t, sock, std::min<size_t>(scmrights::kMaxFd, fds.size() - at), numbers);
  Inject(t, SYS_close, static_cast<uint64_t>(sock));
}

}  // namespace

void InstallInto(Tracee& t, const std::vector<int>& fds, std::vector<int>* numbers,
                 int* error, std::string* why) {
  // Scratch in a fresh anonymous page of the receiver's, never below its
  // stack pointer: the receiver sets that, and could point it into a mapping
  // whose pages never come in (a FUSE mount that does not answer), which
  // would hold this tracer, and every user's RECV with fds, in the fault.
  long m = Inject(t, SYS_mmap, 0, kScratchPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                  static_cast<uint64_t>(-1), 0);
  if (m < 0 && m > -4096) {
    *error = static_cast<int>(m);
    *why = "no scratch memory in the receiver (mmap: " + std::string(strerror(static_cast<int>(-m))) + ")";
    return;
  }
  t.scratch = static_cast<uint64_t>(m);
  InstallWithScratch(t, fds, numbers, error, why);
  if (!t.dead) Inject(t, SYS_munmap, t.scratch, kScratchPage);
}

}  // namespace fdtransfer

#endif  // __x86_64__
