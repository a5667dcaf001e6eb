// The event loop thread's calls that may wait for a FUSE request this very
// process has to answer: process_vm_readv / process_vm_writev of a client's
// memory (a page of a page-cache pool is read through FUSE) and a
// NOTIFY_STORE into a page a client is faulting in (the page lock is held
// until its READ is answered). They are counted, so that a watcher thread
// (StallRescue) can tell when one of them does not come back. Counting costs
// two atomic increments per call; a watcher sleeps while the loop is idle.
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace loopcall {

// Makes the calling thread the one whose calls are counted (the thread that
// serves the FUSE sessions: Node's main thread).
void MarkLoopThread();
// That thread's id, 0 before MarkLoopThread. A FUSE request with this pid was
// caused by the loop thread itself.
pid_t LoopTid();

// Around one such call. No-op on any other thread and inside another Scope.
class Scope {
 public:
  Scope();
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  bool counted_;
};

// Odd while a call is in progress; changes at every call's start and end.
uint32_t Count();
// Sleeps until Count() is no longer seen: the next call's start wakes it.
void WaitForCall(uint32_t seen);
// Changes Count() by 2 (no call starts or ends) and wakes every WaitForCall.
void Poke();

}  // namespace loopcall
