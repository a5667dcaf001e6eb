// A second reader of one session's /dev/fuse, for the moments the loop
// thread is stuck in a loopcall::Scope waiting for a READ of this very
// session, which it would never read:
//  - a client pointed the server at a page of a page-cache pool that was
//    never read (msg_address, a payload vector, an ioctl's items...):
//    process_vm_readv faults that page in, and the kernel asks for a READ;
//  - the server stores a message (NOTIFY_STORE) into a page a client is
//    faulting in: the page stays locked until that client's READ is answered.
//
// Requests are not addressed to a reader (every reader of a FUSE connection
// takes the next one), so a reader that served pool READs all the time would
// take everything else from the loop thread too. This one reads only while
// the loop thread is stuck: a call that has not returned after one tick
// (kTickMs). It then answers READs of pool files itself, from the pool's
// memfd (the page's owner may be any client), answers READs the loop thread
// itself caused on other files with EIO (that call then fails with EFAULT),
// and sets every other request aside, in arrival order, for the loop thread,
// which takes them (TakeRescued) before it reads /dev/fuse again. While the
// loop is idle the thread sleeps; while it is busy it wakes once per tick.
// A stall no READ of this mount eases (kGiveUpMs) is left alone, retried
// less and less often.
#pragma once

#include <uv.h>

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "pool.h"

class StallRescue {
 public:
  StallRescue() = default;
  ~StallRescue() { Stop(); }
  StallRescue(const StallRescue&) = delete;
  StallRescue& operator=(const StallRescue&) = delete;

  // On the loop thread. devfd is the session's /dev/fuse (non-blocking),
  // bufSize its largest request, maxRead the largest READ answer.
  // onRescued(data) runs on the loop thread once requests were set aside.
  // Returns false and sets *err on failure.
  bool Start(uv_loop_t* loop, int devfd, size_t bufSize, uint32_t maxRead, void (*onRescued)(void*),
             void* data, std::string* err);
  // On the loop thread, before devfd is closed (idempotent).
  void Stop();

  // The pools it may serve READs from, by open file (loop thread).
  void AddPool(uint64_t fh, const Pool* pool);
  void RemovePool(uint64_t fh);

  // On the loop thread, before every read of devfd: the oldest request set
  // aside, or false if there is none, and then no rescue reads any more.
  bool TakeRescued(std::vector<uint8_t>* request) {
    if (!active_.load() && !pending_.load()) return false;
    return TakeSlow(request);
  }

 private:
  // A call stuck this long (to twice as long) is rescued; a busy loop wakes
  // the thread this often.
  static constexpr int kTickMs = 5;
  // A stall that no READ has eased for this long is not ours to rescue: the
  // READs the loop thread waits for come at once. Reading on would only take
  // requests their callers could otherwise still abandon.
  static constexpr int kGiveUpMs = 1000;
  // Then it tries again after 1, 2, 4... seconds, up to this.
  static constexpr int kRetryMaxMs = 32000;

  void Run();
  // Reads for the loop thread while it stays in call `stuck`. Returns true if
  // it gave up (kGiveUpMs) with the loop thread still stuck.
  bool Rescue(uint32_t stuck);
  // One request read by the rescue: answered, or set aside. Under mu_.
  // Returns true if it was set aside.
  bool Handle(size_t len);
  bool TakeSlow(std::vector<uint8_t>* request);
  void Reply(uint64_t unique, int error, const void* data, size_t len);
  static void OnAsync(uv_async_t* h);

  int devfd_ = -1;
  int wakefd_ = -1;
  uint32_t maxRead_ = 0;
  uv_async_t* async_ = nullptr;
  void (*onRescued_)(void*) = nullptr;
  void* data_ = nullptr;
  std::thread thread_;
  std::atomic<bool> stop_{false};

  std::mutex mu_;
  // Reading for the loop thread; cleared (under mu_) by whichever of the two
  // threads ends the rescue.
  std::atomic<bool> active_{false};
  std::atomic<bool> pending_{false};  // rescued_ is not empty
  std::deque<std::vector<uint8_t>> rescued_;
  std::unordered_map<uint64_t, const Pool*> pools_;
  std::vector<uint8_t> in_;
  std::vector<uint8_t> out_;
  // What the current rescue did, for its log line.
  unsigned own_ = 0;     // READs the loop thread's own call caused (answered or failed)
  unsigned failed_ = 0;  // of those, answered EIO (not a pool)
  unsigned served_ = 0;  // other clients' pool READs
  unsigned setAside_ = 0;
};
