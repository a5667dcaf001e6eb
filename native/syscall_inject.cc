// See syscall_inject.h.
#include "syscall_inject.h"

#if defined(__x86_64__)

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

namespace inject {

int WaitStop(Tracee& t) {
  for (;;) {
    int status = 0;
    pid_t r = waitpid(t.tid, &status, __WALL);
    if (r < 0) {
      if (errno == EINTR) continue;
      t.dead = t.reaped = true;  // ECHILD: not ours any more (reaped, gone)
      return -ESRCH;
    }
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
      t.dead = t.reaped = true;
      return -ESRCH;
    }
    if (WIFSTOPPED(status)) {
      t.stops++;
      return status;
    }
  }
}

namespace {

bool IsSyscallStop(int status) { return WSTOPSIG(status) == (SIGTRAP | 0x80); }
bool IsEventStop(int status) { return (status >> 16) == PTRACE_EVENT_STOP; }

}  // namespace

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
long Inject(Tracee& t, long nr, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
            uint64_t a5) {
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

// The stop's registers say the thread is returning from its ioctl, and the
// instruction before rip is a 64-bit `syscall` (0f 05), which we reuse.
bool AtSyscallReturn(Tracee& t, long nr) {
  if (static_cast<long>(t.saved.orig_rax) != nr) return false;
  errno = 0;
  long word = ptrace(PTRACE_PEEKTEXT, t.tid, reinterpret_cast<void*>(t.saved.rip - 2), nullptr);
  if (errno) return false;
  if ((word & 0xffff) != 0x050f) return false;
  t.syscallInsn = t.saved.rip - 2;
  return true;
}

// Async-signal-safe: stops t, sets its ioctl's result, restores, detaches.
void PutBack(Tracee* t, long result) {
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
  r.rax = static_cast<uint64_t>(result);
  r.orig_rax = static_cast<uint64_t>(-1);  // at a syscall entry stop: no syscall
  ptrace(PTRACE_SETREGS, t->tid, nullptr, &r);
  if (t->maskSaved) ptrace(PTRACE_SETSIGMASK, t->tid, sizeof(uint64_t), &t->mask);
  ptrace(PTRACE_DETACH, t->tid, nullptr, nullptr);
}

}  // namespace inject

#endif  // __x86_64__
