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
// scratch memory in a page of the thread's process that an injected mmap
// makes for it (never below its stack pointer, which the thread controls).
// Every signal is blocked while we work
// (PTRACE_SETSIGMASK), so none is delivered or lost in between; SIGSTOP, which
// cannot be blocked, is sent again after the detach.
#include "fdinstall.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
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

#include "fdchannel.h"
#include "fdtransfer.h"
#include "procfile.h"
#include "syscall_inject.h"

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

// Checks made before anything is done to the thread. 0 or -errno (*why set).
int Precheck(pid_t tid, pid_t* tgid, std::string* why) {
  std::string base = "/proc/" + std::to_string(tid);
  std::string status = procfile::Read(base + "/status");
  if (status.empty()) {
    *why = "the thread is gone";
    return -ESRCH;
  }
  *tgid = static_cast<pid_t>(atoi(procfile::StatusField(status, "Tgid").c_str()));
  std::string tracer = procfile::StatusField(status, "TracerPid");
  if (!tracer.empty() && tracer != "0") {
    *why = "the thread is traced (by pid " + tracer + "): fds cannot be installed";
    return -EPERM;
  }
  std::string seccomp = procfile::StatusField(status, "Seccomp");
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
    std::string sc = procfile::Read(base + "/syscall");
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
#if defined(__x86_64__)
  if (TracerSlot* s = SlotOf(getpid())) inject::PutBack(static_cast<inject::Tracee*>(s->held), -ECONNABORTED);
#endif
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

FdInstaller::FdInstaller(Napi::Env env, FdCloser* closer, AnswerFn answer)
    : env_(env), closer_(closer), answer_(std::move(answer)) {
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
  for (Job* j : jobs_) {
    for (int fd : j->fds) close(fd);
    delete j;
  }
  jobs_.clear();
  for (Job* j : finished_) delete j;
  finished_.clear();
  uv_close(reinterpret_cast<uv_handle_t*>(async_), [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
}

void FdInstaller::Shutdown() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stopping_ = true;
  }
  workCv_.notify_all();
  replyCv_.notify_all();
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
      closer_->CloseLater(std::move(j->fds));
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
  // The whole thread group: threads started from this task (the fd closer's
  // supervisor and workers, when the task was the first to close through
  // it) are of its group, and would outlive it, the server's fd table and
  // memory with them (its stdio pipes kept open: a parent waiting for their
  // end waited for good).
  syscall(SYS_exit_group, 0);
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
#if defined(__x86_64__)
      channels_.Sweep();
#endif
    }
    if (stopping_) return;  // queued jobs are dropped by the destructor
    Job* j = jobs_.front();
    jobs_.pop_front();
    busy_ = true;
    l.unlock();
    Run(j);
    if (ServerGone()) return;  // its files are closed, nobody is left to tell
    closer_->CloseLater(std::move(j->fds));  // a client's file could park the tracer in close
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
  channels_.Sweep();  // a reused pid must not find a gone process's channel
  inject::Tracee t;
  t.tid = job->tid;
  int e = Precheck(job->tid, &t.tgid, &job->why);
  uint64_t tPre = NowNs();
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
    Holding(TracerSlot* s, inject::Tracee* held) : slot(s) {
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
    inject::WaitStop(t);
    AskLoop(job, Ask::kDone, -ESHUTDOWN);
    return;
  }
  // Answer the ioctl: the thread leaves the FUSE wait and stops (the
  // interrupt is pending) before it reaches user space.
  job->answered = AskLoop(job, Ask::kAnswer, 0) == 1;
  uint64_t tAns = NowNs();
  if (inject::WaitStop(t) < 0) {
    job->error = -ESRCH;
    job->why = "the thread died";
    AskLoop(job, Ask::kDone, -ESHUTDOWN);
    return;
  }
  uint64_t tStop = NowNs();
  if (ptrace(PTRACE_GETREGS, t.tid, nullptr, &t.saved) < 0) t.dead = true;
  t.regsSaved = !t.dead;
  if (!job->answered) {
    job->error = -ECONNABORTED;
    job->why = "its ioctl could not be answered (session gone)";
  } else if (t.dead) {
    job->error = -ESRCH;
    job->why = "the thread died";
  } else if (!inject::AtSyscallReturn(t, kSysIoctl) || static_cast<long>(t.saved.rax) != 0) {
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
    // Through the process's channel (one injected recvmsg), else the one-shot way.
    if (!fdchannel::Install(t, channels_, closer_, job->fds, &job->numbers) && !t.dead)
      fdtransfer::InstallInto(t, job->fds, &job->numbers, &job->error, &job->why);
    if (t.dead) {
      job->error = -ESRCH;
      job->why = "the thread died";
    }
  }
  if (job->error) job->numbers.clear();
  uint64_t t1 = NowNs();
  int result = AskLoop(job, Ask::kDone, -ESHUTDOWN);
  if (!t.dead && job->answered && result < 0) fdtransfer::CloseIn(t, job->numbers);
  if (!t.dead) {
    if (t.regsSaved && job->answered) {
      user_regs_struct r = t.saved;
      r.rax = static_cast<uint64_t>(static_cast<long>(result));
      ptrace(PTRACE_SETREGS, t.tid, nullptr, &r);
    }
    if (t.maskSaved) ptrace(PTRACE_SETSIGMASK, t.tid, sizeof(uint64_t), &t.mask);
    if (ptrace(PTRACE_DETACH, t.tid, nullptr, nullptr) < 0) inject::WaitStop(t);
    for (int sig : t.signals) syscall(SYS_tgkill, t.tgid, t.tid, sig);
  }
  if (t.dead) inject::Reap(t);
  if (Tracing()) {
    fprintf(stderr,
            "kdbusfs: fd install tid %d: %zu fds, result %d: %.0f us to install (%d stops, %d syscalls), "
            "%.0f us in all [pre %.0f ans %.0f stop %.0f]\n",
            static_cast<int>(t.tid), job->fds.size(), job->error ? job->error : result, (t1 - t0) / 1e3,
            t.stops, t.syscalls, (NowNs() - t0) / 1e3, (tPre - t0) / 1e3, (tAns - tPre) / 1e3, (tStop - tAns) / 1e3);
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
