// Running system calls in another, ptrace-stopped thread (x86-64): the
// primitives of fd installation (fdtransfer.cc). A Tracee is a thread this
// task has seized; Inject runs one syscall at the thread's own `syscall`
// instruction, with the registers saved at the stop as the template, and
// counts the stops it took. Nothing here decides what to run.
#pragma once

#if defined(__x86_64__)

#include <sys/types.h>
#include <sys/user.h>

#include <cstdint>
#include <vector>

namespace inject {

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
  std::vector<int> signals;  // unblockable signals taken while we worked: sent again
  int stops = 0;
  int syscalls = 0;
};

// Waits for t's next ptrace stop. Returns the waitpid status, or -ESRCH if it died.
int WaitStop(Tracee& t);

// After a ptrace call failed (the thread was killed): collect its exit,
// bounded, so that it does not stay a zombie; a thread found alive and
// stopped is let go.
void Reap(Tracee& t);

// Runs one system call in the stopped thread. Returns its result (-errno on
// failure), or -ESRCH (t.dead set) if the thread died.
long Inject(Tracee& t, long nr, uint64_t a0 = 0, uint64_t a1 = 0, uint64_t a2 = 0,
            uint64_t a3 = 0, uint64_t a4 = 0, uint64_t a5 = 0);

// The saved registers say the thread is returning from system call nr, and
// the instruction before rip is a 64-bit `syscall` (0f 05): it becomes
// t.syscallInsn, where Inject runs its calls.
bool AtSyscallReturn(Tracee& t, long nr);

// Async-signal-safe: stops t, makes its interrupted system call return
// `result`, restores its registers and signal mask, detaches.
void PutBack(Tracee* t, long result);

}  // namespace inject

#endif  // __x86_64__
