// See fdcloser.h.
#include "fdcloser.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <map>

using Clock = std::chrono::steady_clock;

struct FdCloser::State {
  // A lock of its own: fds are released on the loop thread while the fd
  // installer's tracer waits for it.
  std::mutex mu;
  std::condition_variable work;     // workers: fds queued, or stopping
  std::condition_variable changed;  // supervisor and destructor: fds queued, a worker idle or gone
  bool stopping = false;
  std::deque<int> queue;
  // per worker slot: when its current close began (time_point{} while idle), or gone
  std::vector<Clock::time_point> busySince;
  // per worker slot: the file system of the fd it closes (kNoDev: unknown)
  std::vector<dev_t> busyDev;
  std::vector<bool> alive;
  int idle = 0;
  // fds of a file system a worker is closing a file of, closed by that
  // worker after it (one line per file system: however many fds of a file
  // whose FLUSH never returns come, they park one worker)
  std::map<dev_t, std::deque<int>> waiting;

  bool BusyOnLocked(dev_t dev) const {
    for (size_t i = 0; i < alive.size(); i++)
      if (alive[i] && busyDev[i] == dev) return true;
    return false;
  }

  int StuckLocked(Clock::time_point now) const {
    int n = 0;
    for (size_t i = 0; i < alive.size(); i++)
      if (alive[i] && busySince[i] != Clock::time_point{} && now - busySince[i] > kStuckAfter) n++;
    return n;
  }
  int AliveLocked() const {
    int n = 0;
    for (bool a : alive) n += a;
    return n;
  }
};

static constexpr dev_t kNoDev = static_cast<dev_t>(-1);

// The file system of fd, from what the kernel has cached (AT_STATX_DONT_SYNC,
// nothing asked for: FUSE answers with st_dev without a request).
static dev_t DevOf(int fd) {
  struct statx st;
  if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, 0, &st) < 0) return kNoDev;
  return makedev(st.stx_dev_major, st.stx_dev_minor);
}

static void BlockSignals() {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);  // signals are the loop thread's
}

FdCloser::FdCloser() : state_(std::make_shared<State>()) {}

FdCloser::~FdCloser() {
  {
    std::unique_lock<std::mutex> l(state_->mu);
    state_->stopping = true;
    state_->work.notify_all();
    state_->changed.notify_all();
    // what is queued is closed by the workers that can still close
    State* s = state_.get();
    s->changed.wait_for(l, std::chrono::seconds(1), [s] {
      return s->queue.empty() || s->AliveLocked() == s->StuckLocked(Clock::now());
    });
  }
  if (supervisor_.joinable()) supervisor_.join();
}

void FdCloser::CloseLater(std::vector<int> fds) {
  if (fds.empty()) return;
  std::lock_guard<std::mutex> g(state_->mu);
  if (state_->stopping) {
    for (int fd : fds) close(fd);
    return;
  }
  if (!supervisor_.joinable()) supervisor_ = std::thread(&FdCloser::Supervise, state_);
  for (int fd : fds) state_->queue.push_back(fd);
  state_->work.notify_one();
  state_->changed.notify_all();
}

int FdCloser::Stuck() {
  std::lock_guard<std::mutex> g(state_->mu);
  return state_->StuckLocked(Clock::now());
}

// Starts a worker whenever fds wait and no worker is idle or busy with a
// close that is not stuck; checks again every kStuckAfter while fds wait.
void FdCloser::Supervise(std::shared_ptr<State> s) {
  BlockSignals();
  std::unique_lock<std::mutex> l(s->mu);
  for (;;) {
    if (s->queue.empty()) {
      if (s->stopping) return;
      s->changed.wait(l);
      continue;
    }
    Clock::time_point now = Clock::now();
    int alive = s->AliveLocked();
    int unstuck = alive - s->StuckLocked(now);
    if (s->idle == 0 && unstuck == 0 && alive < kMaxWorkers) {
      size_t slot = 0;
      while (slot < s->alive.size() && s->alive[slot]) slot++;
      if (slot == s->alive.size()) {
        s->alive.push_back(false);
        s->busySince.push_back({});
        s->busyDev.push_back(kNoDev);
      }
      s->alive[slot] = true;
      s->busySince[slot] = {};
      s->busyDev[slot] = kNoDev;
      std::thread(&FdCloser::Work, s, slot).detach();
    }
    if (s->stopping && s->AliveLocked() == s->StuckLocked(now)) return;  // nobody can close the rest
    s->changed.wait_for(l, kStuckAfter);
  }
}

void FdCloser::Work(std::shared_ptr<State> s, size_t slot) {
  BlockSignals();
  std::unique_lock<std::mutex> l(s->mu);
  // closes fd (the lock released meanwhile), then, while it has any, the
  // fds that waited for a close on the same file system to return
  auto closeAll = [&s, slot, &l](int fd) {
    s->busySince[slot] = Clock::now();  // a stat that blocks counts as a stuck close
    s->busyDev[slot] = kNoDev;
    l.unlock();
    dev_t dev = DevOf(fd);
    l.lock();
    if (dev != kNoDev && s->BusyOnLocked(dev)) {
      s->waiting[dev].push_back(fd);
      s->busySince[slot] = {};
      return;
    }
    s->busyDev[slot] = dev;
    for (;;) {
      s->busySince[slot] = Clock::now();
      l.unlock();
      close(fd);
      l.lock();
      auto w = s->waiting.find(dev);
      if (dev == kNoDev || w == s->waiting.end()) break;
      fd = w->second.front();
      w->second.pop_front();
      if (w->second.empty()) s->waiting.erase(w);
    }
    s->busySince[slot] = {};
    s->busyDev[slot] = kNoDev;
    s->changed.notify_all();
  };
  for (;;) {
    s->idle++;
    s->work.wait(l, [&s] { return s->stopping || !s->queue.empty(); });
    s->idle--;
    if (s->queue.empty()) break;  // stopping
    int fd = s->queue.front();
    s->queue.pop_front();
    closeAll(fd);
  }
  s->alive[slot] = false;
  s->changed.notify_all();
}
