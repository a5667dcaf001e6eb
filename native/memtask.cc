#include "memtask.h"

#include <fcntl.h>
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

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "loopcall.h"
#include "procfile.h"

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

// The loop thread spins a little before it sleeps (a copy of ordinary
// memory often ends by then). The task does not: on a machine where both run
// on one CPU, a spinning task would hold the loop thread off.
constexpr int kLoopSpin = 50;
// A killed task in a killable fault is gone within microseconds. One whose
// FUSE server has read the READ and does not answer is not: the kernel waits
// that out uninterruptibly (request_wait_answer), and so it stays until that
// server answers or goes. It is not waited for: a later copy reaps it once
// it is gone (looking at most once per kReapEveryMs).
constexpr int kReapMs = 10;
constexpr int kReapEveryMs = 1000;
// Remote iovecs per process_vm_readv/writev (UIO_MAXIOV).
constexpr size_t kIovMax = 1024;
// struct kdbus_msg: where its items start; KDBUS_ITEM_PAYLOAD_VEC.
constexpr uint64_t kMsgItems = 64;
constexpr uint64_t kItemPayloadVec = 1;
constexpr size_t kStack = 64 * 1024;
// ReadIntoPool's chunk: read into the bounce buffer, then written out.
constexpr size_t kBounce = 256 * 1024;
// Killed, unreaped tasks charged to one uid, and to all, beyond which copies
// are refused at once (see memtask.h).
constexpr size_t kUidCap = 4;
constexpr size_t kTotalCap = 64;
// A uid no process of which is known (its thread gone before it was looked up).
constexpr uid_t kNoUid = static_cast<uid_t>(-1);
// A task still runnable at the deadline (waiting for a CPU on a loaded
// machine, or copying) is given more time, up to this in all.
constexpr int kRunnableMaxMs = 2000;

enum class Job { kCopy, kMessage, kIntoPool };

struct Task {
  pid_t pid = 0;  // our child, unreaped: the number stays its own
  pid_t parent = 0;  // the server's pid: the task checks it is still there
  int cpu = -1;  // the CPU the task is bound to: the loop thread's at its last job
  uid_t uid = kNoUid;  // once killed: the real uid of the caller whose copy it was
  void* stack = nullptr;
  std::atomic<uint32_t> word{kIdle};
  std::atomic<uint32_t> taskSleeps{0};
  std::atomic<uint32_t> loopSleeps{0};
  size_t page = 4096;
  // The job, written by the loop thread before kPosted, result before kDone.
  long syscallNo = 0;
  pid_t tid = 0;
  uint8_t* local = nullptr;
  uint64_t addr = 0;
  size_t len = 0;
  long result = 0;  // bytes copied, or -errno
  // What the job is: a copy (Read, Write), a message (ReadMessage: the
  // staging room after the first len bytes, and what the task found and
  // staged, vecs[0, nvecs) final once progress says so: the loop thread reads
  // them after a give-up too), or a copy into a pool (ReadIntoPool).
  Job job = Job::kCopy;
  int fd = -1;  // ReadIntoPool: the pool's file, written at fileOff, or through poolMap
  uint8_t* poolMap = nullptr;
  uint64_t fileOff = 0;
  // ReadIntoPool's way through: the task's own, so that what a killed task
  // still copies once its fault ends lands where nobody reads.
  uint8_t* bounce = nullptr;
  size_t cap = 0;
  StagedVec vecs[kMaxStagedVecs];
  std::atomic<int> progress{-1};  // -1: head not read; n >= 0: head read, n vectors final
  // One remote iovec per page: a fault that never ends then holds no page
  // pinned for a copy, so a task killed in it copies nothing once it wakes
  // (the kernel copies a batch of pinned pages after pinning them).
  iovec remote[kIovMax];
};

// Copies len bytes between the thread's addr and local (t->syscallNo says
// which way), one remote iovec per page. Bytes copied, or -errno.
long CopyRange(Task* t, uint64_t addr, uint8_t* local, size_t len) {
  size_t done = 0;
  while (done < len) {
    size_t n = 0, chunk = 0;
    while (n < kIovMax && done + chunk < len) {
      uint64_t at = addr + done + chunk;
      size_t take = t->page - (at & (t->page - 1));
      if (take > len - done - chunk) take = len - done - chunk;
      t->remote[n].iov_base = reinterpret_cast<void*>(static_cast<uintptr_t>(at));
      t->remote[n].iov_len = take;
      chunk += take;
      n++;
    }
    iovec liov{local + done, chunk};
    long r = RawSyscall(t->syscallNo, t->tid, reinterpret_cast<long>(&liov), 1, reinterpret_cast<long>(t->remote),
                        static_cast<long>(n), 0);
    if (r < 0) return done ? static_cast<long>(done) : r;
    done += static_cast<size_t>(r);
    if (static_cast<size_t>(r) < chunk) break;
  }
  return static_cast<long>(done);
}

uint64_t U64At(const uint8_t* p) {
  uint64_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

// A message job: the head, then the vectors its items name while they fit.
// The bytes are the client's: every size is checked against what was read.
long RunMessage(Task* t) {
  long r = CopyRange(t, t->addr, t->local, t->len);
  if (r < 0) return r;
  if (static_cast<size_t>(r) < t->len) return -EFAULT;
  t->progress.store(0);
  uint64_t size = U64At(t->local);
  if (size < kMsgItems || size > t->len) return r;  // items not all read: nothing staged
  size_t at = (t->len + 7) & ~size_t{7};
  int n = 0;
  for (uint64_t off = kMsgItems; off + 16 <= size && n < kMaxStagedVecs;) {
    uint64_t isize = U64At(t->local + off), type = U64At(t->local + off + 8);
    if (isize < 16 || isize > size - off) break;
    if (type == kItemPayloadVec) {  // every one counts: the caller numbers them as they come
      StagedVec& v = t->vecs[n];
      bool whole = isize >= 32;
      v.len = whole ? U64At(t->local + off + 16) : 0;
      uint64_t vaddr = whole ? U64At(t->local + off + 24) : 0;
      v.at = kUnstaged;
      if (vaddr != 0 && v.len > 0 && at <= t->cap && v.len <= t->cap - at) {
        v.at = kFailed;  // what a give-up finds
        t->progress.store(n + 1);
        long c = CopyRange(t, vaddr, t->local + at, v.len);
        v.at = c == static_cast<long>(v.len) ? static_cast<int64_t>(at) : kFailed;
        at = (at + v.len + 7) & ~size_t{7};
      }
      t->progress.store(++n);
    }
    off += (isize + 7) & ~uint64_t{7};
  }
  return static_cast<long>(at);
}

// A copy into a pool, a chunk at a time through the bounce buffer: each
// chunk read in one piece (the kernel pins its pages in batches), then
// written with pwrite or copied into the pool's mapping. Only whole chunks
// read are written out. Bytes copied, or -errno.
long CopyIntoPool(Task* t) {
  size_t done = 0;
  while (done < t->len) {
    size_t n = std::min(kBounce, t->len - done);
    iovec liov{t->bounce, n};
    t->remote[0].iov_base = reinterpret_cast<void*>(static_cast<uintptr_t>(t->addr + done));
    t->remote[0].iov_len = n;
    long r = RawSyscall(SYS_process_vm_readv, t->tid, reinterpret_cast<long>(&liov), 1,
                        reinterpret_cast<long>(t->remote), 1, 0);
    if (r <= 0) return done ? static_cast<long>(done) : (r < 0 ? r : -EFAULT);
    if (t->poolMap) memcpy(t->poolMap + t->fileOff + done, t->bounce, static_cast<size_t>(r));
    for (long w = t->poolMap ? r : 0; w < r;) {
      long x = RawSyscall(SYS_pwrite64, t->fd, reinterpret_cast<long>(t->bounce + w), r - w,
                          static_cast<long>(t->fileOff + done + w));
      if (x <= 0) return x < 0 ? x : -EIO;
      w += x;
    }
    done += static_cast<size_t>(r);
    if (static_cast<size_t>(r) < n) break;
  }
  return static_cast<long>(done);
}

// The job of t, in its task.
long RunJob(Task* t) {
  switch (t->job) {
    case Job::kMessage: return RunMessage(t);
    case Job::kIntoPool: return CopyIntoPool(t);
    case Job::kCopy: break;
  }
  return CopyRange(t, t->addr, t->local, t->len);
}

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
    for (;;) {
      uint32_t w = t->word.load();
      if (w == kPosted) break;
      t->taskSleeps.store(1);
      if (t->word.load() == w) RawSyscall(SYS_futex, reinterpret_cast<long>(word), FUTEX_WAIT_PRIVATE, w, 0);
      t->taskSleeps.store(0);
    }
    t->result = RunJob(t);
    t->word.store(kDone);
    if (t->loopSleeps.load()) RawSyscall(SYS_futex, reinterpret_cast<long>(word), FUTEX_WAKE_PRIVATE, 1);
  }
}

void Free(Task* t) {
  if (t->bounce) munmap(t->bounce, kBounce);
  munmap(t->stack, kStack);
  delete t;
}

// Waits up to ms for a killed t to be gone (it then no longer runs: what it
// left in its Task is final).
void WaitGone(Task* t, int ms) {
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, t->pid, 0));
  if (pidfd < 0) return;
  pollfd p{pidfd, POLLIN, 0};
  int r;
  do r = poll(&p, 1, ms);
  while (r < 0 && errno == EINTR);
  close(pidfd);
}

// Reaps a killed t if it is gone. True if it was (and t is freed).
bool Reap(Task* t) {
  int status;
  pid_t r;
  do r = waitpid(t->pid, &status, __WCLONE | WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r == 0) return false;
  Free(t);
  return true;
}

// The real uid of thread tid (an unprivileged process cannot take on another
// user's, and a set-user-ID program its user runs stays charged to that user),
// or kNoUid. /proc/TID/status takes no lock the client can hold.
uid_t UidOf(pid_t tid) {
  std::string uid = procfile::StatusField(procfile::Read("/proc/" + std::to_string(tid) + "/status"), "Uid");
  if (uid.empty()) return kNoUid;
  return static_cast<uid_t>(strtoul(uid.c_str(), nullptr, 10));
}

size_t DyingOf(uid_t uid) {
  size_t n = 0;
  for (const Task* t : g_dying) n += t->uid == uid;
  return n;
}

// True if tid's copies are refused at once: its uid has kUidCap killed tasks
// not yet gone, or all uids together kTotalCap and this one has any. Only
// then is tid's uid looked up: the common case costs nothing.
bool Refused(pid_t tid) {
  if (g_dying.size() < kUidCap) return false;
  bool anyAtCap = g_dying.size() >= kTotalCap;
  if (!anyAtCap) {
    for (const Task* t : g_dying) {
      if (DyingOf(t->uid) >= kUidCap) {
        anyAtCap = true;
        break;
      }
    }
  }
  if (!anyAtCap) return false;
  uid_t uid = UidOf(tid);
  if (uid == kNoUid) return false;  // gone: its copy fails with ESRCH anyway
  size_t mine = DyingOf(uid);
  return mine >= kUidCap || (mine > 0 && g_dying.size() >= kTotalCap);
}

void ReapDying() {
  for (size_t i = 0; i < g_dying.size();) {
    if (Reap(g_dying[i])) {
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
  t->page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  t->stack = mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  void* bounce = mmap(nullptr, kBounce, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (t->stack == MAP_FAILED || bounce == MAP_FAILED) {
    if (t->stack != MAP_FAILED) munmap(t->stack, kStack);
    if (bounce != MAP_FAILED) munmap(bounce, kBounce);
    delete t;
    return nullptr;
  }
  t->bounce = static_cast<uint8_t*>(bounce);
  // Signals stay the server's: the task starts with all of them blocked (its
  // handler table is a copy), and SIGKILL is the only one it ever gets.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  // No exit signal: the server gets no SIGCHLD, and reaps it with __WCLONE.
  pid_t pid = clone(TaskMain, static_cast<char*>(t->stack) + kStack,
                    CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SYSVSEM, t);
  int err = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) {
    fprintf(stderr, "kdbusfs: memory task: clone: %s\n", strerror(err));
    Free(t);
    return nullptr;
  }
  t->pid = pid;
  g_livePid.store(pid);
  return t;
}

// True if the task is runnable ('R' in /proc/PID/stat): not stuck in a sleep.
bool Runnable(const Task* t) {
  std::string stat = procfile::Read("/proc/" + std::to_string(t->pid) + "/stat");
  size_t paren = stat.rfind(')');  // "pid (comm) S ..."
  return paren != std::string::npos && stat.compare(paren, 3, ") R") == 0;
}

// Waits for t's job until the deadline: kTimeoutMs, extended while the task
// is runnable (a loaded machine's run queue is no stall). True if it is done.
bool Wait(Task* t) {
  for (int i = 0; i < kLoopSpin; i++) {
    if (t->word.load() == kDone) return true;
    CpuRelax();
  }
  using Clock = std::chrono::steady_clock;
  Clock::time_point start = Clock::now(), deadline = start + std::chrono::milliseconds(kTimeoutMs);
  uint32_t* word = reinterpret_cast<uint32_t*>(&t->word);
  t->loopSleeps.store(1);
  while (t->word.load() != kDone) {
    auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      if (deadline - start >= std::chrono::milliseconds(kRunnableMaxMs) || !Runnable(t)) break;
      deadline += std::chrono::milliseconds(kTimeoutMs);
      continue;
    }
    timespec ts{static_cast<time_t>(left / 1000000000), static_cast<long>(left % 1000000000)};
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, kPosted, &ts, nullptr, 0);
  }
  t->loopSleeps.store(0);
  return t->word.load() == kDone;
}

// One log line a second at most, each with the count of those left out.
struct RateLimit {
  std::chrono::steady_clock::time_point last;
  unsigned unlogged = 0;
  // True if a line may be written now; *skipped: how many were left out before it.
  bool Take(unsigned* skipped) {
    auto now = std::chrono::steady_clock::now();
    if (last.time_since_epoch().count() != 0 && now - last < std::chrono::seconds(1)) {
      unlogged++;
      return false;
    }
    *skipped = unlogged;
    last = now;
    unlogged = 0;
    return true;
  }
};

void LogGiveUp(bool write, pid_t tid, uint64_t addr, size_t len) {
  static RateLimit limit;
  unsigned skipped;
  if (!limit.Take(&skipped)) return;
  fprintf(stderr,
          "kdbusfs: a %s %zu bytes at 0x%llx of thread %d took over %d ms (memory its owner's mapping "
          "does not bring in, e.g. a file of a FUSE mount that does not answer): the copy is given up, "
          "the request fails with EFAULT (%u more since the last such line; %zu killed tasks wait for "
          "their fault to end)\n",
          write ? "write of" : "read of", len, static_cast<unsigned long long>(addr), static_cast<int>(tid),
          kTimeoutMs, skipped, g_dying.size());
}

// The same for copies refused at once.
void LogRefusal(pid_t tid) {
  static RateLimit limit;
  unsigned skipped;
  if (!limit.Take(&skipped)) return;
  uid_t uid = UidOf(tid);
  fprintf(stderr,
          "kdbusfs: a copy of thread %d's memory is refused at once with EFAULT: uid %ld has %zu killed "
          "memory tasks still stuck in its memory (cap %zu; %zu of all uids, cap %zu) (%u more since the "
          "last such line)\n",
          static_cast<int>(tid), uid == kNoUid ? -1L : static_cast<long>(uid), DyingOf(uid), kUidCap,
          g_dying.size(), kTotalCap, skipped);
}

// Binds the task to the loop thread's CPU. The loop thread waits for every
// job, so the two never run at once: on one CPU a hand-off is two context
// switches, across CPUs it is two wakeups of an idle CPU (~40-50 us each on a
// virtual machine, where the idle vCPU has left the host's CPU).
void FollowLoopCpu(Task* t) {
  int cpu = sched_getcpu();
  if (cpu < 0 || cpu == t->cpu) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(t->pid, sizeof set, &set);  // refused (a cpuset): tried once per move, runs anywhere
  t->cpu = cpu;
}

// Runs the job written into g_task (Start()ed by the caller) for tid's
// memory: true once it is done; false if it was given up (the task killed,
// *gaveUp then holds the task, still ours to read until Bury()).
bool Run(pid_t tid, Task** gaveUp) {
  Task* t = g_task;
  FollowLoopCpu(t);
  t->tid = tid;
  t->progress.store(-1);
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
    t->word.store(kIdle);
    return true;
  }
  // Stuck. SIGKILL ends a killable fault at once; one that is not (see
  // kReapMs) ends in the kill once it does end: either way the task copies
  // nothing more (see Task::remote), and the destination is the caller's
  // again.
  g_task = nullptr;
  g_livePid.store(0);
  g_killedPid.store(t->pid);
  kill(t->pid, SIGKILL);
  WaitGone(t, kReapMs);
  *gaveUp = t;
  return false;
}

// The end of a given-up task: reaped if gone, else kept (and charged to
// tid's uid) for a later reap.
void Bury(Task* t, pid_t tid) {
  if (!Reap(t)) {
    t->uid = UidOf(tid);
    g_dying.push_back(t);
  }
}

// Refusals and the task's start, before a job is written. 0 or -errno.
int Prepare(pid_t tid) {
  if (!g_dying.empty()) {
    static std::chrono::steady_clock::time_point lastReap;
    auto now = std::chrono::steady_clock::now();
    if (now - lastReap >= std::chrono::milliseconds(kReapEveryMs)) {
      lastReap = now;
      ReapDying();
    }
    if (Refused(tid)) {
      LogRefusal(tid);
      return -EFAULT;
    }
  }
  if (!g_task && !(g_task = Start())) return -ENOMEM;
  return 0;
}

// The live task, given a job (after Prepare).
Task* Post(long syscallNo, Job job, void* local, uint64_t addr, size_t len) {
  Task* t = g_task;
  t->job = job;
  t->syscallNo = syscallNo;
  t->local = static_cast<uint8_t*>(local);
  t->addr = addr;
  t->len = len;
  return t;
}

// Runs a posted copy of len bytes: 0, its -errno, or -EFAULT for a short
// copy or one given up.
int RunCopy(Task* t, pid_t tid, uint64_t addr, size_t len) {
  bool write = t->syscallNo == SYS_process_vm_writev;  // t may be freed by Bury
  Task* stuck = nullptr;
  if (Run(tid, &stuck)) {
    long r = t->result;
    if (r < 0) return static_cast<int>(r);
    return static_cast<size_t>(r) == len ? 0 : -EFAULT;
  }
  Bury(stuck, tid);
  LogGiveUp(write, tid, addr, len);
  return -EFAULT;
}

int Copy(long syscallNo, pid_t tid, uint64_t addr, void* local, size_t len) {
  if (len == 0) return 0;
  if (int e = Prepare(tid)) return e;
  return RunCopy(Post(syscallNo, Job::kCopy, local, addr, len), tid, addr, len);
}

}  // namespace

int Read(pid_t tid, uint64_t addr, void* dst, size_t len) { return Copy(SYS_process_vm_readv, tid, addr, dst, len); }

int ReadIntoPool(pid_t tid, uint64_t addr, int fd, uint8_t* map, uint64_t off, size_t len) {
  if (len == 0) return 0;
  if (int e = Prepare(tid)) return e;
  Task* t = Post(SYS_process_vm_readv, Job::kIntoPool, nullptr, addr, len);
  t->fd = fd;
  t->poolMap = map;
  t->fileOff = off;
  return RunCopy(t, tid, addr, len);
}

int ReadMessage(pid_t tid, uint64_t addr, size_t first, uint8_t* dst, size_t cap, StagedVec* vecs, int* nvecs,
                size_t* used) {
  *nvecs = 0;
  *used = 0;
  if (first == 0 || first > cap) return -EINVAL;
  if (int e = Prepare(tid)) return e;
  Task* t = Post(SYS_process_vm_readv, Job::kMessage, dst, addr, first);
  t->cap = cap;
  Task* stuck = nullptr;
  bool done = Run(tid, &stuck);
  Task* from = done ? t : stuck;
  // a given-up task leaves its vectors so far, the last one (the stuck one) failed
  int n = from->progress.load();
  if (n >= 0) {
    for (int i = 0; i < n; i++) vecs[i] = from->vecs[i];
    *nvecs = n;
  }
  long r = done ? t->result : -EFAULT;
  if (!done) {
    Bury(stuck, tid);
    LogGiveUp(false, tid, addr, first);
  }
  if (n < 0) return r < 0 ? static_cast<int>(r) : -EFAULT;  // the head itself is unreadable
  size_t end = first;
  for (int i = 0; i < n; i++)
    if (vecs[i].at >= 0) end = static_cast<size_t>(vecs[i].at) + vecs[i].len;
  *used = end;
  return 0;
}

int Write(pid_t tid, uint64_t addr, const void* src, size_t len) {
  return Copy(SYS_process_vm_writev, tid, addr, const_cast<void*>(src), len);
}

bool IsTask(pid_t pid) { return pid != 0 && (pid == g_livePid.load() || pid == g_killedPid.load()); }

}  // namespace memtask
