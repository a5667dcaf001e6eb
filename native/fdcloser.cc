// See fdcloser.h.
#include "fdcloser.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

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
  std::vector<bool> alive;
  int idle = 0;

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
      }
      s->alive[slot] = true;
      s->busySince[slot] = {};
      std::thread(&FdCloser::Work, s, slot).detach();
    }
    if (s->stopping && s->AliveLocked() == s->StuckLocked(now)) return;  // nobody can close the rest
    s->changed.wait_for(l, kStuckAfter);
  }
}

void FdCloser::Work(std::shared_ptr<State> s, size_t slot) {
  BlockSignals();
  std::unique_lock<std::mutex> l(s->mu);
  for (;;) {
    s->idle++;
    s->work.wait(l, [&s] { return s->stopping || !s->queue.empty(); });
    s->idle--;
    if (s->queue.empty()) break;  // stopping
    int fd = s->queue.front();
    s->queue.pop_front();
    s->busySince[slot] = Clock::now();
    l.unlock();
    close(fd);
    l.lock();
    s->busySince[slot] = {};
    s->changed.notify_all();
  }
  s->alive[slot] = false;
  s->changed.notify_all();
}
