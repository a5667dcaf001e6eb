// See fdinstall.h. The sequence for one install (x86-64):
//
//  worker                                   receiving thread (tid)
//  ------                                   ----------------------
//  checks /proc/tid: not traced, no         blocked in its ioctl (FUSE wait)
//    seccomp filter, in ioctl(2)
//  PTRACE_SEIZE + PTRACE_INTERRUPT          (FUSE_INTERRUPT to the server: ignored)
//  loop thread answers the ioctl (0)        returns from the ioctl; stops before
//                                             user space (PTRACE_EVENT_STOP)
//  check it returns from ioctl(2) entered by
//    a `syscall` instruction; save registers
//    and signal mask, block every signal
//  inject socketpair(SEQPACKET|CLOEXEC)     -> a, b (the lowest free numbers)
//  take b (pidfd_getfd)
//  inject fcntl(a, F_DUPFD_CLOEXEC, N),     a moves above the numbers the fds
//    close_range(a, b)                        will take: they land where
//                                             get_unused_fd_flags put them
//  sendmsg(SCM_RIGHTS) on our copy of b,
//    253 fds per datagram
//  inject recvmsg(a, MSG_CMSG_CLOEXEC)      fds installed, lowest free first,
//    per datagram, close(a)                   O_CLOEXEC, in message order
//  loop thread: JS writes the fd numbers
//    into the pool message and the command,
//    and returns the ioctl's result
//  (result < 0: inject close of the fds)
//  restore registers (rax = result) and
//    the signal mask, detach                continues in user space
//
// Injected syscalls run at the thread's own `syscall` instruction (rip - 2 at
// the stop), two ptrace stops each (PTRACE_SYSCALL entry and exit), with
// scratch memory below the thread's red zone (or an injected mmap when the
// stack has no room there). Every signal is blocked while we work
// (PTRACE_SETSIGMASK), so none is delivered or lost in between; SIGSTOP, which
// cannot be blocked, is sent again after the detach.
#include "fdinstall.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "procmem.h"

struct FdInstaller::Job {
  uint64_t sid = 0;
  uint64_t unique = 0;
  pid_t tid = 0;
  std::vector<int> fds;  // our own duplicates, closed when the job ends
  Napi::FunctionReference done;  // loop thread only
  // Set by the worker before it asks the loop thread:
  bool answered = false;      // we answered the ioctl: the thread stops on its way back
  int error = 0;              // < 0: nothing was installed (then `why` says why)
  std::string why;
  std::vector<int> numbers;   // per fd: the receiver's number, or -errno
};

namespace {

constexpr int kScmMaxFd = 253;  // SCM_MAX_FD: fds per SCM_RIGHTS message
constexpr size_t kCmsgSpace = CMSG_SPACE(sizeof(int) * kScmMaxFd);
// Scratch layout in the receiver: int sv[2] | 1 data byte | iovec | msghdr | cmsg buffer
constexpr uint64_t kOffSv = 0, kOffByte = 8, kOffIov = 16, kOffMsg = 32, kOffCmsg = 96;
constexpr uint64_t kScratchSize = kOffCmsg + kCmsgSpace;
constexpr uint64_t kRedZone = 128;
constexpr long kSysIoctl = 16;  // x86-64

bool Tracing() {
  static const bool on = getenv("KDBUSFS_FDINSTALL_TRACE") != nullptr;
  return on;
}

uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

std::string ReadSmall(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  std::string out;
  char buf[4096];
  ssize_t r;
  while ((r = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(r));
  close(fd);
  return out;
}

// The value of "Key:\t..." in /proc/<tid>/status, or "" if absent.
std::string StatusField(const std::string& status, const char* key) {
  std::string k = std::string("\n") + key + ":";
  size_t at = status.find(k);
  if (at == std::string::npos) return {};
  at += k.size();
  size_t end = status.find('\n', at);
  std::string v = status.substr(at, end == std::string::npos ? std::string::npos : end - at);
  size_t b = v.find_first_not_of(" \t");
  return b == std::string::npos ? std::string() : v.substr(b);
}

#if defined(__x86_64__)

struct Tracee {
  pid_t tid = 0;
  pid_t tgid = 0;
  bool dead = false;
  bool reaped = false;  // its exit was collected (or it is not ours to collect)
  bool regsSaved = false;
  bool maskSaved = false;
  user_regs_struct saved{};
  uint64_t mask = 0;
  uint64_t syscallInsn = 0;  // address of the `syscall` instruction
  uint64_t scratch = 0;
  bool scratchMapped = false;
  std::vector<int> signals;  // unblockable signals taken while we worked: sent again
  int stops = 0;
  int syscalls = 0;
};

// Waits for tid's next ptrace stop. Returns the waitpid status, or -1 if it died.
int WaitStop(Tracee& t) {
  for (;;) {
    int status = 0;
    pid_t r = waitpid(t.tid, &status, __WALL);
    if (r < 0) {
      if (errno == EINTR) continue;
      t.dead = t.reaped = true;  // ECHILD: not ours any more (reaped, gone)
      return -1;
    }
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
      t.dead = t.reaped = true;
      return -1;
    }
    if (WIFSTOPPED(status)) {
      t.stops++;
      return status;
    }
  }
}

bool IsSyscallStop(int status) { return WSTOPSIG(status) == (SIGTRAP | 0x80); }
bool IsEventStop(int status) { return (status >> 16) == PTRACE_EVENT_STOP; }

// A thread that dies while we trace it stays a zombie until its tracer
// collects its exit: its parent could never reap it. After a ptrace call
// failed (the thread was killed), wait for that exit, bounded; a thread that
// turns out to be alive and stopped is let go.
void Reap(Tracee& t) {
  for (int i = 0; i < 2000 && !t.reaped; i++) {
    int status = 0;
    pid_t r = waitpid(t.tid, &status, __WALL | WNOHANG);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || (r == t.tid && (WIFEXITED(status) || WIFSIGNALED(status)))) {
      t.reaped = true;
      return;
    }
    if (r == t.tid && WIFSTOPPED(status)) {
      if (ptrace(PTRACE_DETACH, t.tid, nullptr, nullptr) == 0) {
        t.reaped = true;
        return;
      }
      continue;
    }
    usleep(1000);
  }
}

// Resumes with PTRACE_SYSCALL until the next syscall stop. 0, or -ESRCH if it died.
int ToSyscallStop(Tracee& t) {
  for (;;) {
    if (ptrace(PTRACE_SYSCALL, t.tid, nullptr, nullptr) < 0) {
      // Not stopped any more: it is dying. Reap what is left.
      if (!t.dead) WaitStop(t);
      t.dead = true;
      return -ESRCH;
    }
    int status = WaitStop(t);
    if (status < 0) return -ESRCH;
    if (IsSyscallStop(status)) return 0;
    // A group stop (SEIZE reports it as PTRACE_EVENT_STOP): resume, the
    // detach re-establishes it. A signal-delivery stop: only unblockable
    // signals get here; it is suppressed now and sent again after the detach.
    if (!IsEventStop(status)) {
      int sig = WSTOPSIG(status);
      if (sig != SIGTRAP) t.signals.push_back(sig);
    }
  }
}

// Runs one system call in the stopped thread. Returns its result (-errno on
// failure), or -ESRCH (t.dead set) if the thread died.
long Inject(Tracee& t, long nr, uint64_t a0 = 0, uint64_t a1 = 0, uint64_t a2 = 0,
            uint64_t a3 = 0, uint64_t a4 = 0, uint64_t a5 = 0) {
  if (t.dead) return -ESRCH;
  user_regs_struct r = t.saved;
  r.rip = t.syscallInsn;
  r.rax = static_cast<uint64_t>(nr);
  r.orig_rax = static_cast<uint64_t>(-1);  // no syscall restart on the way out of a stop
  r.rdi = a0;
  r.rsi = a1;
  r.rdx = a2;
  r.r10 = a3;
  r.r8 = a4;
  r.r9 = a5;
  if (ptrace(PTRACE_SETREGS, t.tid, nullptr, &r) < 0) {
    t.dead = true;
    return -ESRCH;
  }
  t.syscalls++;
  // Entry stop, then exit stop (an exit stop first would be a leftover: skip it).
  for (int i = 0; i < 3; i++) {
    if (ToSyscallStop(t) < 0) return -ESRCH;
    __ptrace_syscall_info info{};
    long n = ptrace(PTRACE_GET_SYSCALL_INFO, t.tid, sizeof info, &info);
    if (n < 0) return -ESRCH;
    if (info.op == PTRACE_SYSCALL_INFO_ENTRY) break;
  }
  if (ToSyscallStop(t) < 0) return -ESRCH;
  user_regs_struct out;
  if (ptrace(PTRACE_GETREGS, t.tid, nullptr, &out) < 0) {
    t.dead = true;
    return -ESRCH;
  }
  return static_cast<long>(out.rax);
}

// The lowest numbers free in tid's fd table: the first `count` of them.
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

// The soft RLIMIT_NOFILE of tid's process, or -1.
long SoftNofile(pid_t tid) {
  std::string limits = ReadSmall("/proc/" + std::to_string(tid) + "/limits");
  size_t at = limits.find("Max open files");
  if (at == std::string::npos) return -1;
  return strtol(limits.c_str() + at + strlen("Max open files"), nullptr, 10);
}

// Checks made before anything is done to the thread. 0 or -errno (*why set).
int Precheck(pid_t tid, Tracee* t, std::string* why) {
  std::string base = "/proc/" + std::to_string(tid);
  std::string status = ReadSmall(base + "/status");
  if (status.empty()) {
    *why = "the thread is gone";
    return -ESRCH;
  }
  t->tgid = static_cast<pid_t>(atoi(StatusField(status, "Tgid").c_str()));
  std::string tracer = StatusField(status, "TracerPid");
  if (!tracer.empty() && tracer != "0") {
    *why = "the thread is traced (by pid " + tracer + "): fds cannot be installed";
    return -EPERM;
  }
  std::string seccomp = StatusField(status, "Seccomp");
  if (!seccomp.empty() && seccomp != "0") {
    // A filter may kill the process on a syscall we would inject.
    *why = "the thread runs under seccomp (mode " + seccomp + "): fds cannot be installed safely";
    return -EPERM;
  }
  // "nr arg1..arg6 sp pc" once it sleeps in its ioctl ("running" until then:
  // the server may read the request before the thread goes to sleep). A
  // 32-bit caller shows another number here; the instruction itself is
  // checked at the stop.
  for (int i = 0; i < 200; i++) {
    std::string sc = ReadSmall(base + "/syscall");
    long nr = -1;
    if (sscanf(sc.c_str(), "%ld", &nr) == 1) {
      if (nr == kSysIoctl) break;
      *why = "the thread is not in a 64-bit ioctl (" + sc.substr(0, sc.find('\n')) + ")";
      return -EOPNOTSUPP;
    }
    usleep(50);
  }
  return 0;
}

// The stop's registers say the thread is returning from its ioctl, and the
// instruction before rip is a 64-bit `syscall` (0f 05), which we reuse.
bool AtIoctlReturn(Tracee& t) {
  if (static_cast<long>(t.saved.orig_rax) != kSysIoctl) return false;
  errno = 0;
  long word = ptrace(PTRACE_PEEKTEXT, t.tid, reinterpret_cast<void*>(t.saved.rip - 2), nullptr);
  if (errno) return false;
  if ((word & 0xffff) != 0x050f) return false;
  t.syscallInsn = t.saved.rip - 2;
  return true;
}

// Sends fds over sock, kScmMaxFd per datagram. 0 or -errno.
int SendFds(int sock, const std::vector<int>& fds) {
  for (size_t at = 0; at < fds.size(); at += kScmMaxFd) {
    size_t n = std::min<size_t>(kScmMaxFd, fds.size() - at);
    char byte = 0;
    iovec iov{&byte, 1};
    alignas(cmsghdr) char control[kCmsgSpace];
    memset(control, 0, sizeof control);
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * n);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * n);
    memcpy(CMSG_DATA(c), fds.data() + at, sizeof(int) * n);
    if (sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) return -errno;
  }
  return 0;
}

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
  msg.msg_controllen = kCmsgSpace;
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
  alignas(cmsghdr) char control[kCmsgSpace];
  if (procmem::Read(t.tid, s + kOffMsg, &back, sizeof back) < 0 ||
      procmem::Read(t.tid, s + kOffCmsg, control, sizeof control) < 0) {
    std::fill(out->begin() + first, out->end(), -EFAULT);
    return;
  }
  size_t len = std::min<size_t>(back.msg_controllen, sizeof control);
  // Walk the control messages of our local copy.
  msghdr local{};
  local.msg_control = control;
  local.msg_controllen = len;
  size_t got = 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&local); c; c = CMSG_NXTHDR(&local, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < n && got < count; i++, got++) {
      int fd;
      memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      (*out)[first + got] = fd;
    }
  }
  // The rest did not fit in the receiver's fd table (MSG_CTRUNC): -EMFILE.
}

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

// The fds into the stopped thread. Fills job->numbers, or sets job->error.
void InstallInto(Tracee& t, const std::vector<int>& fds, std::vector<int>* numbers,
                 int* error, std::string* why) {
  // Scratch below the red zone; the stack may have no page there yet (GUP
  // does not grow stacks): then a page of its own.
  t.scratch = (t.saved.rsp - kRedZone - kScratchSize) & ~uint64_t{63};
  static const char zeros[kScratchSize] = {};
  if (procmem::Write(t.tid, t.scratch, zeros, kScratchSize) < 0) {
    long m = Inject(t, SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                    static_cast<uint64_t>(-1), 0);
    if (m < 0 && m > -4096) {
      *error = static_cast<int>(m);
      *why = "no scratch memory in the receiver (mmap: " + std::string(strerror(static_cast<int>(-m))) + ")";
      return;
    }
    t.scratch = static_cast<uint64_t>(m);
    t.scratchMapped = true;
  }

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
  for (size_t at = 0; at < fds.size() && !t.dead; at += kScmMaxFd)
    RecvFds(t, sock, std::min<size_t>(kScmMaxFd, fds.size() - at), numbers);
  Inject(t, SYS_close, static_cast<uint64_t>(sock));
  if (t.scratchMapped) Inject(t, SYS_munmap, t.scratch, 4096);
}

#endif  // __x86_64__

// ---- a server killed under its tracer ----
//
// The tracer task shares the server's memory and fd table, not its thread
// group: it outlives a server that is killed. The parent-death signal (the
// server's threads are gone) makes it drop the server's files at once,
// /dev/fuse among them: the kernel aborts the FUSE connection (every
// request in flight fails with ECONNABORTED) and the watchdog detaches the
// mount. The tracer's own flow then sees it (ServerGone) and puts back the
// thread it holds: its installed fds closed, its ioctl failing with
// ECONNABORTED (answered, it would return 0 with nothing written), its
// registers and signal mask its own. Should that flow be stuck on a lock a
// dead server thread held, an alarm puts the thread back from a signal
// handler (without closing what was installed) and ends the tracer.

#if defined(__x86_64__)
// Async-signal-safe: stops t, sets its ioctl's result, restores, detaches.
void PutBack(void* held) {
  auto* t = static_cast<Tracee*>(held);
  if (!t || t->dead) return;
  ptrace(PTRACE_INTERRUPT, t->tid, nullptr, nullptr);  // running an injected call: a stop comes
  user_regs_struct now;
  for (int i = 0; ptrace(PTRACE_GETREGS, t->tid, nullptr, &now) < 0; i++) {
    int status = 0;
    pid_t w = i < 100 ? waitpid(t->tid, &status, __WALL) : -1;
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 || WIFEXITED(status) || WIFSIGNALED(status)) return;
  }
  // Not saved yet: nothing was injected, these are the thread's own.
  user_regs_struct r = t->regsSaved ? t->saved : now;
  r.rax = static_cast<uint64_t>(-ECONNABORTED);
  r.orig_rax = static_cast<uint64_t>(-1);  // at a syscall entry stop: no syscall
  ptrace(PTRACE_SETREGS, t->tid, nullptr, &r);
  if (t->maskSaved) ptrace(PTRACE_SETSIGMASK, t->tid, sizeof(uint64_t), &t->mask);
  ptrace(PTRACE_DETACH, t->tid, nullptr, nullptr);
}
#else
void PutBack(void*) {}
#endif  // __x86_64__

}  // namespace

struct TracerSlot {
  volatile pid_t tracer = 0;  // 0: free
  void* volatile held = nullptr;  // the Tracee it holds
  volatile sig_atomic_t filesClosed = 0;
};

namespace {

TracerSlot gSlots[8];

TracerSlot* SlotOf(pid_t tracer) {
  for (TracerSlot& s : gSlots)
    if (s.tracer == tracer) return &s;
  return nullptr;
}

// SIGUSR1, the parent-death signal.
void OnServerDeath(int) {
  int e = errno;
  if (TracerSlot* s = SlotOf(getpid())) s->filesClosed = 1;
  syscall(SYS_close_range, 3U, ~0U, 0U);  // stderr stays, for the trace line
  alarm(1);
  errno = e;
}

// SIGALRM: the tracer did not finish within a second of the server's death.
void OnStuck(int) {
  if (TracerSlot* s = SlotOf(getpid())) PutBack(s->held);
  _exit(0);
}

// Never destroyed: AtExit runs after static destructors registered later.
std::vector<FdInstaller*>& Installers() {
  static auto* v = new std::vector<FdInstaller*>;
  return *v;
}
std::mutex& InstallersMu() {
  static auto* m = new std::mutex;
  return *m;
}

void BlockSignals() {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
}

}  // namespace

FdInstaller::FdInstaller(Napi::Env env, AnswerFn answer) : env_(env), answer_(std::move(answer)) {
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  async_ = new uv_async_t;
  uv_async_init(loop, async_, OnAsync);
  async_->data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(async_));
  asyncContext_ = std::make_unique<Napi::AsyncContext>(env, "kdbusfs:fdinstall");
  std::lock_guard<std::mutex> g(InstallersMu());
  static bool registered = false;
  if (!registered) {
    registered = true;
    std::atexit(AtExit);
  }
  Installers().push_back(this);
}

FdInstaller::~FdInstaller() {
  {
    std::lock_guard<std::mutex> g(InstallersMu());
    auto& v = Installers();
    v.erase(std::remove(v.begin(), v.end(), this), v.end());
  }
  Shutdown();
  if (worker_.joinable()) worker_.join();
  if (closer_.joinable()) closer_.join();
  for (Job* j : jobs_) {
    for (int fd : j->fds) close(fd);
    delete j;
  }
  jobs_.clear();
  for (Job* j : finished_) delete j;
  finished_.clear();
  for (auto& v : closes_)
    for (int fd : v) close(fd);
  uv_close(reinterpret_cast<uv_handle_t*>(async_), [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
}

void FdInstaller::Shutdown() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stopping_ = true;
  }
  {
    std::lock_guard<std::mutex> g(closeMu_);
    closeStopping_ = true;
  }
  workCv_.notify_all();
  replyCv_.notify_all();
  closeCv_.notify_all();
}

// exit() without an environment teardown (process.exit): a thread we hold
// stopped must get its registers back before this process goes.
void FdInstaller::AtExit() {
  std::lock_guard<std::mutex> g(InstallersMu());
  for (FdInstaller* in : Installers()) {
    in->Shutdown();
    std::unique_lock<std::mutex> l(in->mu_);
    in->idleCv_.wait_for(l, std::chrono::seconds(2), [in] { return !in->busy_; });
  }
}

int FdInstaller::Start(uint64_t sid, uint64_t unique, pid_t tid, const std::vector<int>& fds,
                       Napi::Function done) {
  {
    std::lock_guard<std::mutex> g(mu_);
    if (stopping_) return -ESHUTDOWN;
  }
  std::unique_ptr<Job> j(new Job);
  j->sid = sid;
  j->unique = unique;
  j->tid = tid;
  for (int fd : fds) {
    int d = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (d < 0) {
      int e = errno;
      for (int x : j->fds) close(x);
      return -e;
    }
    j->fds.push_back(d);
  }
  j->done = Napi::Persistent(done);
  if (active_++ == 0) uv_ref(reinterpret_cast<uv_handle_t*>(async_));
  std::lock_guard<std::mutex> g(mu_);
  if (!worker_.joinable()) worker_ = std::thread(&FdInstaller::Worker, this);
  jobs_.push_back(j.release());
  workCv_.notify_one();
  return 0;
}

void FdInstaller::CloseLater(std::vector<int> fds) {
  if (fds.empty()) return;
  std::lock_guard<std::mutex> g(closeMu_);
  if (closeStopping_) {
    for (int fd : fds) close(fd);
    return;
  }
  if (!closer_.joinable()) closer_ = std::thread(&FdInstaller::Closer, this);
  closes_.push_back(std::move(fds));
  closeCv_.notify_one();
}

void FdInstaller::Closer() {
  BlockSignals();
  std::unique_lock<std::mutex> l(closeMu_);
  for (;;) {
    closeCv_.wait(l, [this] { return closeStopping_ || !closes_.empty(); });
    if (closes_.empty()) return;  // stopping
    std::vector<int> v = std::move(closes_.front());
    closes_.pop_front();
    l.unlock();
    for (int fd : v) close(fd);
    l.lock();
  }
}

// The tracer must not be a thread of this process: a ptrace stop is
// reported to every thread of the tracer's thread group, and libuv reaps its
// child processes with waitpid(pid): a receiver that is our own child (a
// client the server spawned) would have its stop taken by libuv, and taken for
// an exit. So the worker thread starts a task of its own thread group that
// shares our memory, files and TLS (CLONE_VM | CLONE_FILES, no CLONE_THREAD),
// and stays parked in waitpid while that task runs the jobs: the two never
// run at once, so sharing the thread's TLS (errno, malloc's cache) is safe.
// Mutexes and condition variables work across it (private futexes are keyed
// by the shared mm).
void FdInstaller::Worker() {
  BlockSignals();
  constexpr size_t kStack = 512 * 1024;
  void* stack = mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  pid_t tracer = -1;
  if (stack != MAP_FAILED) {
    tracer = clone(&FdInstaller::TracerMain, static_cast<char*>(stack) + kStack,
                   CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SYSVSEM, this);
  }
  if (tracer < 0) {
    fprintf(stderr, "kdbusfs: fd install: no tracer task (%s): tracing from a thread\n", strerror(errno));
    Loop();
  } else {
    int status;
    while (waitpid(tracer, &status, __WCLONE) < 0 && errno == EINTR) {
    }
  }
  if (stack != MAP_FAILED) munmap(stack, kStack);
}

int FdInstaller::TracerMain(void* arg) {
  auto* self = static_cast<FdInstaller*>(arg);
  for (TracerSlot& slot : gSlots) {
    if (__sync_bool_compare_and_swap(&slot.tracer, 0, getpid())) {
      self->slot_ = &slot;
      break;
    }
  }
  // Its own handler table (no CLONE_SIGHAND); every other signal stays blocked.
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = OnServerDeath;
  sigaction(SIGUSR1, &sa, nullptr);
  sa.sa_handler = OnStuck;
  sigaction(SIGALRM, &sa, nullptr);
  sigset_t ours;
  sigemptyset(&ours);
  sigaddset(&ours, SIGUSR1);
  sigaddset(&ours, SIGALRM);
  pthread_sigmask(SIG_UNBLOCK, &ours, nullptr);
  prctl(PR_SET_PDEATHSIG, SIGUSR1);  // this process dies: see "a server killed under its tracer"
  prctl(PR_SET_NAME, "kdbusfs-fdinst", 0, 0, 0);
  self->Loop();
  if (self->slot_) self->slot_->tracer = 0;
  return 0;
}

bool FdInstaller::ServerGone() {
  if (serverGone_) return true;
  // Tracing from a thread of the server: it dies with it.
  if (!slot_) return false;
  if (!slot_->filesClosed && getppid() == serverPid_) return false;
  serverGone_ = true;
  return true;
}

bool FdInstaller::Post() {
  // The parent-death signal may close the async's eventfd, whose EBADF
  // libuv answers with abort(): held off between the check and the write.
  sigset_t death, old;
  sigemptyset(&death);
  sigaddset(&death, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &death, &old);
  bool gone = ServerGone();
  if (!gone) uv_async_send(async_);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return !gone;
}

void FdInstaller::Loop() {
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    // a killed server never says stop: look for that every 50 ms
    while (!workCv_.wait_for(l, std::chrono::milliseconds(50), [this] { return stopping_ || !jobs_.empty(); })) {
      if (ServerGone()) return;
    }
    if (stopping_) return;  // queued jobs are dropped by the destructor
    Job* j = jobs_.front();
    jobs_.pop_front();
    busy_ = true;
    l.unlock();
    Run(j);
    if (ServerGone()) return;  // its files are closed, nobody is left to tell
    for (int fd : j->fds) close(fd);
    j->fds.clear();
    l.lock();
    busy_ = false;
    idleCv_.notify_all();
    // Freed on the loop thread, which owns its JS callback.
    finished_.push_back(j);
    if (!Post()) return;
  }
}

int FdInstaller::AskLoop(Job* job, Ask ask, int aborted) {
  // The server was killed: the ioctl was not answered, or, answered, it
  // fails as every request in flight did (the message was never written).
  const int gone = ask == Ask::kAnswer ? 0 : -ECONNABORTED;
  if (ServerGone()) return gone;
  std::unique_lock<std::mutex> l(mu_);
  if (stopping_) return aborted;
  replied_ = false;
  requests_.push_back({job, ask});
  if (!Post()) return gone;
  while (!replyCv_.wait_for(l, std::chrono::milliseconds(50), [this] { return replied_ || stopping_; })) {
    if (ServerGone()) return gone;
  }
  if (!replied_) return aborted;
  replied_ = false;
  return reply_;
}

void FdInstaller::Run(Job* job) {
  uint64_t t0 = NowNs();
#if !defined(__x86_64__)
  job->error = -EOPNOTSUPP;
  job->why = "installing fds is implemented for x86-64 only";
  AskLoop(job, Ask::kDone, -ESHUTDOWN);
  return;
#else
  Tracee t;
  t.tid = job->tid;
  int e = Precheck(job->tid, &t, &job->why);
  if (e == 0 && ptrace(PTRACE_SEIZE, t.tid, nullptr, reinterpret_cast<void*>(PTRACE_O_TRACESYSGOOD)) < 0) {
    e = -errno;
    job->why = std::string("PTRACE_SEIZE: ") + strerror(errno);
  }
  if (e) {
    // Nothing was done to the thread; its ioctl is still parked.
    job->error = e;
    AskLoop(job, Ask::kDone, -ESHUTDOWN);
    return;
  }
  // Seized: if the server dies now, OnStuck may have to put it back.
  struct Holding {
    TracerSlot* slot;
    Holding(TracerSlot* s, Tracee* held) : slot(s) {
      if (slot) slot->held = held;
    }
    ~Holding() {
      if (slot) slot->held = nullptr;
    }
  } holding(slot_, &t);
  if (ptrace(PTRACE_INTERRUPT, t.tid, nullptr, nullptr) < 0) {
    // Seized but gone: nothing left to do but reap.
    job->error = -ESRCH;
    job->why = "the thread is gone";
    WaitStop(t);
    AskLoop(job, Ask::kDone, -ESHUTDOWN);
    return;
  }
  // Answer the ioctl: the thread leaves the FUSE wait and stops (the
  // interrupt is pending) before it reaches user space.
  job->answered = AskLoop(job, Ask::kAnswer, 0) == 1;
  if (WaitStop(t) < 0) {
    job->error = -ESRCH;
    job->why = "the thread died";
    AskLoop(job, Ask::kDone, -ESHUTDOWN);
    return;
  }
  if (ptrace(PTRACE_GETREGS, t.tid, nullptr, &t.saved) < 0) t.dead = true;
  t.regsSaved = !t.dead;
  if (!job->answered) {
    job->error = -ECONNABORTED;
    job->why = "its ioctl could not be answered (session gone)";
  } else if (t.dead) {
    job->error = -ESRCH;
    job->why = "the thread died";
  } else if (!AtIoctlReturn(t) || static_cast<long>(t.saved.rax) != 0) {
    job->error = -EIO;
    job->why = "the thread did not stop on its way back from its ioctl by `syscall` (orig_rax " +
               std::to_string(static_cast<long>(t.saved.orig_rax)) + ", rax " +
               std::to_string(static_cast<long>(t.saved.rax)) + ")";
  } else if (ptrace(PTRACE_GETSIGMASK, t.tid, sizeof(uint64_t), &t.mask) < 0) {
    job->error = -ESRCH;
    job->why = "the thread died";
    t.dead = true;
  } else {
    t.maskSaved = true;
    uint64_t all = ~uint64_t{0};
    if (ptrace(PTRACE_SETSIGMASK, t.tid, sizeof(uint64_t), &all) < 0) t.dead = true;
    InstallInto(t, job->fds, &job->numbers, &job->error, &job->why);
    if (t.dead) {
      job->error = -ESRCH;
      job->why = "the thread died";
    }
  }
  if (job->error) job->numbers.clear();
  uint64_t t1 = NowNs();
  int result = AskLoop(job, Ask::kDone, -ESHUTDOWN);
  if (!t.dead && job->answered && result < 0) CloseIn(t, job->numbers);
  if (!t.dead) {
    if (t.regsSaved && job->answered) {
      user_regs_struct r = t.saved;
      r.rax = static_cast<uint64_t>(static_cast<long>(result));
      ptrace(PTRACE_SETREGS, t.tid, nullptr, &r);
    }
    if (t.maskSaved) ptrace(PTRACE_SETSIGMASK, t.tid, sizeof(uint64_t), &t.mask);
    if (ptrace(PTRACE_DETACH, t.tid, nullptr, nullptr) < 0) WaitStop(t);
    for (int sig : t.signals) syscall(SYS_tgkill, t.tgid, t.tid, sig);
  }
  if (t.dead) Reap(t);
  if (Tracing()) {
    fprintf(stderr,
            "kdbusfs: fd install tid %d: %zu fds, result %d: %.0f us to install (%d stops, %d syscalls), "
            "%.0f us in all\n",
            static_cast<int>(t.tid), job->fds.size(), job->error ? job->error : result, (t1 - t0) / 1e3,
            t.stops, t.syscalls, (NowNs() - t0) / 1e3);
  }
#endif
}

void FdInstaller::OnAsync(uv_async_t* h) { static_cast<FdInstaller*>(h->data)->Drain(); }

void FdInstaller::Drain() {
  std::deque<Request> reqs;
  {
    std::lock_guard<std::mutex> g(mu_);
    reqs.swap(requests_);
  }
  for (const Request& r : reqs) {
    Job* job = r.job;
    int reply = 0;
    if (r.ask == Ask::kAnswer) {
      reply = answer_(job->sid, job->unique, 0) ? 1 : 0;
    } else {
      Napi::Env env = env_;
      Napi::HandleScope hs(env);
      reply = -EIO;
      {
        Napi::CallbackScope cs(env, *asyncContext_);
        Napi::Value arg;
        if (job->error) {
          arg = Napi::Number::New(env, job->error);
        } else {
          Napi::Array a = Napi::Array::New(env, job->numbers.size());
          for (uint32_t i = 0; i < job->numbers.size(); i++) a.Set(i, Napi::Number::New(env, job->numbers[i]));
          arg = a;
        }
        Napi::Value why = job->why.empty() ? env.Undefined() : Napi::String::New(env, job->why);
        Napi::Value rv = job->done.Value().Call({arg, why});
        if (env.IsExceptionPending()) {
          Napi::Error ex = env.GetAndClearPendingException();
          fprintf(stderr, "kdbusfs: fd install callback threw: %s\n", ex.Message().c_str());
        } else if (rv.IsNumber()) {
          double d = rv.As<Napi::Number>().DoubleValue();
          if (std::isfinite(d) && d == std::floor(d) && d >= -4095 && d <= 2147483647.0)
            reply = static_cast<int>(d);
          else
            fprintf(stderr, "kdbusfs: fd install callback returned %g, not an ioctl result\n", d);
        } else {
          fprintf(stderr, "kdbusfs: fd install callback returned no number\n");
        }
      }
      // Nothing was done to the thread: its ioctl is answered here.
      if (!job->answered) answer_(job->sid, job->unique, reply);
      job->done.Reset();
      if (--active_ == 0) uv_unref(reinterpret_cast<uv_handle_t*>(async_));
    }
    {
      std::lock_guard<std::mutex> g(mu_);
      reply_ = reply;
      replied_ = true;
    }
    replyCv_.notify_all();
  }
  std::deque<Job*> finished;
  {
    std::lock_guard<std::mutex> g(mu_);
    finished.swap(finished_);
  }
  for (Job* j : finished) delete j;
}
