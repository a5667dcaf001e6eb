// Requests read from /dev/fuse and not yet served, taken from users in turn.
//
// The loop thread reads every request that is waiting (up to a bound) before
// it serves the next one, and serves them round-robin by the FUSE header's
// uid: a user with a backlog of expensive requests (many threads each in a
// NAME_LIST, say) delays another user's request by at most one request of
// its own (the one in progress when it came), not by its whole backlog.
// Only requests of different users are reordered, and only requests that
// were waiting at the same time: those are
// concurrent syscalls, which the kernel could have run in any order. Each
// user's requests keep their arrival order (so each thread's, and the order
// in which one user's SENDs are queued). An INTERRUPT goes behind the
// request it names when that is still waiting here, else it is served first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

class FairQueue {
 public:
  // Reading stops at either bound (the kernel keeps the rest in its own queue).
  static constexpr size_t kMaxRequests = 1024;
  static constexpr size_t kMaxBytes = 4u << 20;

  bool full() const { return count_ >= kMaxRequests || bytes_ >= kMaxBytes; }
  bool empty() const { return count_ == 0; }

  // req: a whole FUSE request, at least a fuse_in_header long.
  void Push(std::vector<uint8_t>&& req);
  // The next request to serve, or false if none waits.
  bool Pop(std::vector<uint8_t>* req);
  void Clear();

 private:
  struct User {
    uint32_t uid;
    std::deque<std::vector<uint8_t>> reqs;
  };
  std::deque<std::vector<uint8_t>> first_;  // INTERRUPTs of requests already served
  std::deque<User> turns_;                  // users with waiting requests, next turn first
  // The user served last, if it has more waiting: it rejoins turns_ at the
  // next Pop, so that a user whose request arrived while that one was being
  // served goes first (a backlog delays it by the request in progress only).
  std::optional<User> served_;
  size_t count_ = 0;
  size_t bytes_ = 0;
};
