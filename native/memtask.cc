#include "memtask.h"

#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <vector>

#include "loopcall.h"

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

namespace memtask {

namespace {

// The task runs beside the loop thread with the loop thread's TLS (clone
// copies the thread pointer): it must not touch errno or anything else
// thread-local, so it makes its system calls itself.
inline long RawSyscall(long n, long a = 0, long b = 0, long c = 0, long d = 0, long e = 0, long f = 0) {
#if defined(__x86_64__)
  long ret;
  register long r10 asm("r10") = d;
  register long r8 asm("r8") = e;
  register long r9 asm("r9") = f;
  asm volatile("syscall"
               : "=a"(ret)
               : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
               : "rcx", "r11", "memory");
  return ret;
#elif defined(__aarch64__)
  register long x8 asm("x8") = n;
  register long x0 asm("x0") = a;
  register long x1 asm("x1") = b;
  register long x2 asm("x2") = c;
  register long x3 asm("x3") = d;
  register long x4 asm("x4") = e;
  register long x5 asm("x5") = f;
  asm volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5) : "memory");
  return x0;
#else
#error "memtask: raw system calls for this architecture"
#endif
}

inline void CpuRelax() {
#if defined(__x86_64__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// The futex word: the loop thread posts a job, the task marks it done, the
// loop thread takes the result and makes it idle again.
enum : uint32_t { kIdle = 0, kPosted = 1, kDone = 2 };

// Both sides spin a little before they sleep: one request usually makes a
// few copies microseconds apart, and a wake-up costs two system calls.
constexpr int kLoopSpin = 500;
constexpr int kTaskSpin = 4000;
// A killed task is gone within microseconds (its fault is killable); one that
// is not gone by then is left to be reaped later.
constexpr int kReapMs = 1000;
constexpr size_t kStack = 64 * 1024;

struct Task {
  pid_t pid = 0;
  int pidfd = -1;
  pid_t parent = 0;  // the server's pid: the task checks it is still there
  void* stack = nullptr;
  std::atomic<uint32_t> word{kIdle};
  std::atomic<uint32_t> taskSleeps{0};
  std::atomic<uint32_t> loopSleeps{0};
  // The job, written by the loop thread before kPosted, result before kDone.
  long syscallNo = 0;
  pid_t tid = 0;
  iovec local{};
  iovec remote{};
  long result = 0;
};

Task* g_task = nullptr;        // the task that takes the next copy, if started
std::vector<Task*> g_dying;    // killed, not yet reaped
std::atomic<pid_t> g_livePid{0};
std::atomic<pid_t> g_killedPid{0};  // the last one killed (its FUSE READs may still come)

int TaskMain(void* arg) {
  Task* t = static_cast<Task*>(arg);
  // Dies with the server; if the server is gone already, goes at once.
  RawSyscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL);
  if (RawSyscall(SYS_getppid) != t->parent) return 0;
  RawSyscall(SYS_prctl, PR_SET_NAME, reinterpret_cast<long>("kdbusfs-mem"));
  uint32_t* word = reinterpret_cast<uint32_t*>(&t->word);
  for (;;) {
    for (int i = 0;; i++) {
      uint32_t w = t->word.load();
      if (w == kPosted) break;
      if (i < kTaskSpin) {
        CpuRelax();
        continue;
      }
      t->taskSleeps.store(1);
      if (t->word.load() == w) RawSyscall(SYS_futex, reinterpret_cast<long>(word), FUTEX_WAIT_PRIVATE, w, 0);
      t->taskSleeps.store(0);
    }
    t->result = RawSyscall(t->syscallNo, t->tid, reinterpret_cast<long>(&t->local), 1,
                           reinterpret_cast<long>(&t->remote), 1, 0);
    t->word.store(kDone);
    if (t->loopSleeps.load()) RawSyscall(SYS_futex, reinterpret_cast<long>(word), FUTEX_WAKE_PRIVATE, 1);
  }
}

void Free(Task* t) {
  if (t->pidfd >= 0) close(t->pidfd);
  munmap(t->stack, kStack);
  delete t;
}

// Reaps t if it is gone within ms. True if it was (and t is freed).
bool Reap(Task* t, int ms) {
  pollfd p{t->pidfd, POLLIN, 0};
  int r;
  do r = poll(&p, 1, ms);
  while (r < 0 && errno == EINTR);
  if (r <= 0) return false;
  int status;
  while (waitpid(t->pid, &status, __WCLONE) < 0 && errno == EINTR) {
  }
  Free(t);
  return true;
}

void ReapDying() {
  for (size_t i = 0; i < g_dying.size();) {
    if (Reap(g_dying[i], 0)) {
      g_dying[i] = g_dying.back();
      g_dying.pop_back();
    } else {
      i++;
    }
  }
}

Task* Start() {
  Task* t = new Task;
  t->parent = getpid();
  t->stack = mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (t->stack == MAP_FAILED) {
    delete t;
    return nullptr;
  }
  // Signals stay the server's: the task starts with all of them blocked (its
  // handler table is a copy), and SIGKILL is the only one it ever gets.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  // No exit signal: the server gets no SIGCHLD, and reaps it with __WCLONE.
  pid_t pid = clone(TaskMain, static_cast<char*>(t->stack) + kStack,
                    CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SYSVSEM | CLONE_PIDFD, t, &t->pidfd);
  int err = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) {
    fprintf(stderr, "kdbusfs: memory task: clone: %s\n", strerror(err));
    t->pidfd = -1;
    Free(t);
    return nullptr;
  }
  t->pid = pid;
  g_livePid.store(pid);
  return t;
}

// Waits for t's job until the deadline. True if it is done.
bool Wait(Task* t) {
  for (int i = 0; i < kLoopSpin; i++) {
    if (t->word.load() == kDone) return true;
    CpuRelax();
  }
  using Clock = std::chrono::steady_clock;
  Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(kTimeoutMs);
  uint32_t* word = reinterpret_cast<uint32_t*>(&t->word);
  t->loopSleeps.store(1);
  while (t->word.load() != kDone) {
    auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - Clock::now()).count();
    if (left <= 0) break;
    timespec ts{static_cast<time_t>(left / 1000000000), static_cast<long>(left % 1000000000)};
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, kPosted, &ts, nullptr, 0);
  }
  t->loopSleeps.store(0);
  return t->word.load() == kDone;
}

// One line a second at most, with the count of copies given up since the last.
void LogGiveUp(bool write, pid_t tid, uint64_t addr, size_t len) {
  static std::chrono::steady_clock::time_point last;
  static unsigned unlogged = 0;
  auto now = std::chrono::steady_clock::now();
  if (last.time_since_epoch().count() != 0 && now - last < std::chrono::seconds(1)) {
    unlogged++;
    return;
  }
  fprintf(stderr,
          "kdbusfs: a %s %zu bytes at 0x%llx of thread %d took over %d ms (memory its owner's mapping "
          "does not bring in, e.g. a file of a FUSE mount that does not answer): the copy is given up, "
          "the request fails with EFAULT (%u more since the last such line)\n",
          write ? "write of" : "read of", len, static_cast<unsigned long long>(addr), static_cast<int>(tid),
          kTimeoutMs, unlogged);
  last = now;
  unlogged = 0;
}

int Copy(long syscallNo, pid_t tid, uint64_t addr, void* local, size_t len) {
  if (len == 0) return 0;
  if (!g_dying.empty()) ReapDying();
  if (!g_task && !(g_task = Start())) return -ENOMEM;
  Task* t = g_task;
  t->syscallNo = syscallNo;
  t->tid = tid;
  t->local = iovec{local, len};
  t->remote = iovec{reinterpret_cast<void*>(static_cast<uintptr_t>(addr)), len};
  t->word.store(kPosted);
  if (t->taskSleeps.load()) syscall(SYS_futex, reinterpret_cast<uint32_t*>(&t->word), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
  bool done;
  {
    // The range may be a page of a page-cache pool of this very mount: the
    // task's fault asks us for a READ, which StallRescue answers while we wait.
    loopcall::Scope stall;
    done = Wait(t);
  }
  if (done) {
    long r = t->result;
    t->word.store(kIdle);
    if (r < 0) return static_cast<int>(r);
    return static_cast<size_t>(r) == len ? 0 : -EFAULT;
  }
  // Stuck: only a fatal signal ends the fault. Gone, it writes no more into
  // the destination, which the caller may reuse as soon as we return.
  g_task = nullptr;
  g_livePid.store(0);
  g_killedPid.store(t->pid);
  syscall(SYS_pidfd_send_signal, t->pidfd, SIGKILL, nullptr, 0);
  LogGiveUp(syscallNo == SYS_process_vm_writev, tid, addr, len);
  if (!Reap(t, kReapMs)) {
    fprintf(stderr, "kdbusfs: memory task %d still there %d ms after SIGKILL; reaped later\n",
            static_cast<int>(t->pid), kReapMs);
    g_dying.push_back(t);
  }
  return -EFAULT;
}

}  // namespace

int Read(pid_t tid, uint64_t addr, void* dst, size_t len) { return Copy(SYS_process_vm_readv, tid, addr, dst, len); }

int Write(pid_t tid, uint64_t addr, const void* src, size_t len) {
  return Copy(SYS_process_vm_writev, tid, addr, const_cast<void*>(src), len);
}

bool IsTask(pid_t pid) { return pid != 0 && (pid == g_livePid.load() || pid == g_killedPid.load()); }

}  // namespace memtask
