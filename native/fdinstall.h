// Installing file descriptors in another process (KDBUS_ITEM_FDS and
// KDBUS_ITEM_PAYLOAD_MEMFD at RECV), which has no system call: the thread
// whose RECV (or synchronous SEND) ioctl is parked is seized with ptrace,
// its ioctl is answered, and while it is stopped on its way back to user
// space it is made to run socketpair / fcntl / recvmsg(SCM_RIGHTS) / close
// at its own syscall instruction. See lib/fuse/native.ts (fdInstall) for the
// contract and fdinstall.cc for the sequence; the ptrace primitives are in
// syscall_inject.h, the socket-pair transfer in fdtransfer.h. This file is
// the jobs: the tracer task that runs them and their handoff to the loop.
//
// All ptrace requests come from one tracer task (ptrace requests must come
// from the thread that attached, and the work must not run on the FUSE loop
// thread): a task sharing our memory but not our thread group, see Worker().
// The loop thread takes part twice per install, through a uv_async: to
// answer the parked ioctl once the thread is seized, and to run the JS
// callback once the fds are in place.
#pragma once

#include <napi.h>
#include <uv.h>

#include "fdchannel.h"
#include "fdcloser.h"

#include <sys/types.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

// Where a tracer task registers the thread it holds, for its signal
// handlers (fdinstall.cc: a server killed under its tracer).
struct TracerSlot;

class FdInstaller {
 public:
  // Answers parked ioctl `unique` of session `sid` with result, on the loop
  // thread. Returns false if that request is not parked (or the session is gone).
  using AnswerFn = std::function<bool(uint64_t sid, uint64_t unique, int result)>;

  // closer: where the worker drops its copies (a close may never return)
  FdInstaller(Napi::Env env, FdCloser* closer, AnswerFn answer);
  ~FdInstaller();
  FdInstaller(const FdInstaller&) = delete;
  FdInstaller& operator=(const FdInstaller&) = delete;

  // Starts an install into thread tid, whose ioctl `unique` of session sid is
  // parked. The fds are duplicated here (the caller may close its own at
  // once). done is called exactly once, later, on the loop thread. Returns 0,
  // or -errno (nothing started, done will not be called).
  int Start(uint64_t sid, uint64_t unique, pid_t tid, const std::vector<int>& fds,
            Napi::Function done);

 private:
  struct Job;
  enum class Ask { kAnswer, kDone };
  struct Request {
    Job* job;
    Ask ask;
  };

  void Worker();
  static int TracerMain(void* arg);
  void Loop();
  void Run(Job* job);
  // Posts a request to the loop thread and waits for its reply. Returns
  // `aborted` when the installer is shutting down; when the server process
  // is gone, 0 (not answered) or -ECONNABORTED (the ioctl's result).
  int AskLoop(Job* job, Ask ask, int aborted);
  // uv_async_send to the loop thread, unless the server is gone. False then.
  bool Post();
  // In the tracer task: whether the server process died under it (killed).
  bool ServerGone();
  static void OnAsync(uv_async_t* h);
  void Drain();
  void Shutdown();
  static void AtExit();

  Napi::Env env_;
  FdCloser* closer_;
  AnswerFn answer_;
  uv_async_t* async_ = nullptr;
  std::unique_ptr<Napi::AsyncContext> asyncContext_;
  int active_ = 0;  // jobs whose done has not run yet (loop thread only)

  std::mutex mu_;
  std::condition_variable workCv_;
  std::condition_variable replyCv_;
  std::condition_variable idleCv_;
  std::deque<Job*> jobs_;
  std::deque<Request> requests_;
  std::deque<Job*> finished_;  // run to the end by the worker: freed on the loop thread
  bool replied_ = false;
  int reply_ = 0;
  bool busy_ = false;
  bool stopping_ = false;
  const pid_t serverPid_ = getpid();
  TracerSlot* slot_ = nullptr;  // the tracer task's (none when tracing from a thread)
  bool serverGone_ = false;     // the tracer task's own
#if defined(__x86_64__)
  fdchannel::Channels channels_;  // the tracer task's own
#endif
  std::thread worker_;
};
