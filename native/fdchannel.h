// A receiving process's fd channel, kept from one install to the next
// (x86-64). fdtransfer.h makes a socket pair in the receiver for every
// install (seven injected calls); a channel is made the same way once per
// receiving process and then kept: a SOCK_SEQPACKET socket of the receiver's
// own, O_CLOEXEC, at a number above the ones its fds take, and an anonymous
// scratch page for recvmsg's msghdr and control buffer. An install is then
// one sendmsg here and one injected recvmsg there (three ptrace stops in all,
// with the one that holds the thread after its ioctl).
//
// What the receiver can do with it: nothing towards the server. Its socket's
// peer (ours) is shut for reading, so the receiver's sends fail (EPIPE); it
// was made by the receiver's own socketpair, so SO_PEERCRED names the
// receiver. It can close it, move it, or unmap the page: before each use
// kcmp checks that its number still holds our socket (else the channel is
// made again), and a failed recvmsg closes the channel and the install is
// made the one-shot way. The fds take the lowest free numbers as if the
// socket were not there: when its number is among them (/proc/TID/fd), the
// socket moves up first; nothing installed is ever moved or closed again (a
// close in the receiver may wait for a FLUSH that never comes). A process
// whose table is full (fewer fds fit than were sent: -EMFILE for the rest,
// as in the one-shot way) keeps no channel. A receiver that maps memory of
// its own over the scratch page can hold the injected recvmsg in a fault,
// as it could with the page of a one-shot install (another of its threads
// can map over that one while the install runs).
//
// Our side (our end, a copy of the receiver's end for kcmp and for draining,
// a pidfd of the process) is closed when the process is gone (its pidfd
// polls readable: Sweep), when the channel is dropped, and with the tracer.
#pragma once

#if defined(__x86_64__)

#include <sys/types.h>

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "fdcloser.h"
#include "syscall_inject.h"

namespace fdchannel {

struct Channel {
  int number = -1;        // the receiver's end, in its fd table (-1: none)
  uint64_t scratch = 0;   // its scratch page
  int ours = -1;          // our end: sends only
  int copy = -1;          // our copy of the receiver's end
  int pidfd = -1;         // the process's: watched by Channels (Sweep)
  bool refused = false;   // this process installs the one-shot way
};

// The tracer's channels, by receiving process. Tracer task only.
class Channels {
 public:
  Channels() = default;
  ~Channels();
  Channels(const Channels&) = delete;
  Channels& operator=(const Channels&) = delete;

  // tgid's channel (a new, empty one if none), or nullptr if at the cap
  // (or its pidfd cannot be had).
  Channel* For(pid_t tgid);
  // Forgets the channels of processes that are gone.
  void Sweep();

 private:
  std::unordered_map<pid_t, Channel> map_;
  int epoll_ = -1;
};

// Installs fds into the stopped thread t (registers saved, signals blocked)
// through its process's channel, made first if need be. True if done:
// *numbers filled (t.dead: nothing). False if nothing was installed and the
// one-shot way must be taken (the channel is closed then).
// Copies that must be closed go through closer.
bool Install(inject::Tracee& t, Channels& chans, FdCloser* closer, const std::vector<int>& fds,
             std::vector<int>* numbers);

}  // namespace fdchannel

#endif  // __x86_64__
