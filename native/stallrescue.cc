#include "stallrescue.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/fuse.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "loopcall.h"
#include "memtask.h"

bool StallRescue::Start(uv_loop_t* loop, int devfd, size_t bufSize, uint32_t maxRead,
                        void (*onRescued)(void*), void* data, std::string* err) {
  wakefd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wakefd_ < 0) {
    *err = std::string("kdbusfs: eventfd: ") + strerror(errno);
    return false;
  }
  async_ = new uv_async_t;
  int r = uv_async_init(loop, async_, OnAsync);
  if (r < 0) {
    delete async_;
    async_ = nullptr;
    *err = std::string("kdbusfs: uv_async_init: ") + uv_strerror(r);
    return false;
  }
  async_->data = this;
  // Only ever pending while a session's uv_poll keeps the loop alive anyway.
  uv_unref(reinterpret_cast<uv_handle_t*>(async_));
  devfd_ = devfd;
  maxRead_ = maxRead;
  onRescued_ = onRescued;
  data_ = data;
  in_.resize(bufSize);
  loopcall::MarkLoopThread();
  // Signals are for the loop thread: the new thread starts with all blocked.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  thread_ = std::thread([this] { Run(); });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return true;
}

void StallRescue::Stop() {
  if (thread_.joinable()) {
    stop_.store(true);
    eventfd_write(wakefd_, 1);  // a thread in poll()
    loopcall::Poke();           // a thread in WaitForCall()
    thread_.join();
  }
  if (async_) {
    uv_close(reinterpret_cast<uv_handle_t*>(async_), [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
    async_ = nullptr;
  }
  if (wakefd_ >= 0) {
    close(wakefd_);
    wakefd_ = -1;
  }
  devfd_ = -1;
  rescued_.clear();
  pending_.store(false);
  active_.store(false);
  pools_.clear();
}

void StallRescue::AddPool(uint64_t fh, const Pool* pool) {
  std::lock_guard<std::mutex> g(mu_);
  pools_[fh] = pool;
}

void StallRescue::RemovePool(uint64_t fh) {
  std::lock_guard<std::mutex> g(mu_);
  pools_.erase(fh);
}

void StallRescue::Run() {
  pthread_setname_np(pthread_self(), "kdbusfs-rescue");  // for top -H, ps -L
  uint32_t before = loopcall::Count();
  while (!stop_.load()) {
    pollfd p{wakefd_, POLLIN, 0};
    poll(&p, 1, kTickMs);
    if (stop_.load()) break;
    uint32_t now = loopcall::Count();
    if (now != before) {
      before = now;  // calls come and go: the loop is busy, look again in a tick
    } else if (now & 1) {
      // One call has lasted a whole tick. Given up on, it is left alone for
      // longer and longer (unread requests can still be abandoned by their
      // callers, read ones cannot), and tried again in case it does come to
      // wait on this mount.
      for (int ms = kGiveUpMs; Rescue(now); ms = std::min(2 * ms, kRetryMaxMs)) {
        pollfd wake{wakefd_, POLLIN, 0};
        poll(&wake, 1, ms);
        if (stop_.load() || loopcall::Count() != now) break;
      }
      before = loopcall::Count();
    } else {
      loopcall::WaitForCall(now);  // idle for a tick: sleep until a call starts
      before = loopcall::Count();
    }
  }
}

bool StallRescue::Rescue(uint32_t stuck) {
  using Clock = std::chrono::steady_clock;
  Clock::time_point start = Clock::now(), progress = start;
  {
    std::lock_guard<std::mutex> g(mu_);
    served_ = own_ = failed_ = setAside_ = 0;
    // Before Count() is looked at again: a loop thread that has left the
    // call by then sees active_ before it reads devfd itself (both seq_cst).
    active_.store(true);
  }
  bool gaveUp = false;
  for (;;) {
    bool idle = false, setAside = false;
    {
      std::lock_guard<std::mutex> g(mu_);
      if (stop_.load() || !active_.load() || loopcall::Count() != stuck) break;
      ssize_t r = read(devfd_, in_.data(), in_.size());
      if (r >= 0) {
        setAside = Handle(static_cast<size_t>(r));
        if (!setAside) progress = Clock::now();
      } else if (errno == EAGAIN) {
        idle = true;
      } else if (errno != EINTR && errno != ENOENT) {
        break;  // the session is over (ENODEV): the loop thread finds out itself
      }
    }
    if (setAside) uv_async_send(async_);
    if (idle && Clock::now() - progress > std::chrono::milliseconds(kGiveUpMs)) {
      gaveUp = true;
      break;
    }
    if (idle) {
      pollfd p[2] = {{devfd_, POLLIN, 0}, {wakefd_, POLLIN, 0}};
      poll(p, 2, kTickMs);
    }
  }
  {
    std::lock_guard<std::mutex> g(mu_);
    active_.store(false);
    long ms = static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count());
    if (gaveUp) {
      fprintf(stderr,
              "kdbusfs: the loop thread is stuck on something no READ of this mount answers (a client "
              "pointer into another FUSE mount?); the rescue thread stops reading after %ld ms (%u "
              "pool READs answered, %u requests set aside)\n",
              ms, own_ + served_, setAside_);
    } else if (own_ || served_) {
      // own_: a pointer into a page never read (a page-cache pool page, say);
      // served_ alone: most likely a NOTIFY_STORE that waited for a client's fault.
      fprintf(stderr,
              "kdbusfs: the loop thread was stuck for over %d ms waiting on this mount; the rescue "
              "thread answered %u READs it caused itself (%u with EIO: not a pool) and %u READs of "
              "clients' pools, and set aside %u requests, in %ld ms\n",
              kTickMs, own_, failed_, served_, setAside_, ms);
    }
  }
  return gaveUp;
}

bool StallRescue::Handle(size_t len) {
  fuse_in_header h;
  fuse_read_in in;
  if (len >= sizeof h + sizeof in) {
    memcpy(&h, in_.data(), sizeof h);
    memcpy(&in, in_.data() + sizeof h, sizeof in);
    if (h.opcode == FUSE_READ && h.len == len) {
      // The loop thread copies clients' memory through a memory task.
      bool own = h.pid == static_cast<uint32_t>(loopcall::LoopTid()) || memtask::IsTask(static_cast<pid_t>(h.pid));
      auto it = pools_.find(in.fh);
      if (it != pools_.end()) {
        // Any client's fault: the loop thread may be waiting for that page's lock.
        size_t size = std::min<size_t>(in.size, maxRead_);
        out_.resize(size);
        ssize_t r = it->second->Read(in.offset, out_.data(), size);
        if (r < 0)
          Reply(h.unique, static_cast<int>(r), nullptr, 0);
        else
          Reply(h.unique, 0, out_.data(), static_cast<size_t>(r));
        if (own)
          own_++;
        else
          served_++;
        return false;
      }
      if (own) {
        // Only the loop thread could answer it, and it waits for this answer.
        Reply(h.unique, -EIO, nullptr, 0);
        own_++;
        failed_++;
        return false;
      }
    }
  }
  rescued_.emplace_back(in_.begin(), in_.begin() + static_cast<ptrdiff_t>(len));
  pending_.store(true);
  setAside_++;
  return true;
}

bool StallRescue::TakeSlow(std::vector<uint8_t>* request) {
  std::lock_guard<std::mutex> g(mu_);
  active_.store(false);
  if (rescued_.empty()) return false;
  *request = std::move(rescued_.front());
  rescued_.pop_front();
  pending_.store(!rescued_.empty());
  return true;
}

void StallRescue::Reply(uint64_t unique, int error, const void* data, size_t len) {
  fuse_out_header oh{};
  oh.len = static_cast<uint32_t>(sizeof oh + len);
  oh.error = error;
  oh.unique = unique;
  iovec iov[2] = {{&oh, sizeof oh}, {const_cast<void*>(data), len}};
  // ENOENT: the request is gone (its caller was interrupted or the connection aborted).
  if (writev(devfd_, iov, len ? 2 : 1) < 0 && errno != ENOENT && errno != ENODEV)
    fprintf(stderr, "kdbusfs: rescue: FUSE reply failed: %s\n", strerror(errno));
}

void StallRescue::OnAsync(uv_async_t* h) {
  // The callback may end the session and with it this object: copy first.
  auto* self = static_cast<StallRescue*>(h->data);
  void (*fn)(void*) = self->onRescued_;
  void* data = self->data_;
  fn(data);
}
