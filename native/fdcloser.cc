// See fdcloser.h.
#include "fdcloser.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

FdCloser::~FdCloser() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  for (auto& v : queue_)
    for (int fd : v) close(fd);
}

void FdCloser::CloseLater(std::vector<int> fds) {
  if (fds.empty()) return;
  std::lock_guard<std::mutex> g(mu_);
  if (stopping_) {
    for (int fd : fds) close(fd);
    return;
  }
  if (!thread_.joinable()) thread_ = std::thread(&FdCloser::Run, this);
  queue_.push_back(std::move(fds));
  cv_.notify_one();
}

void FdCloser::Run() {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);  // signals are the loop thread's
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    cv_.wait(l, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping
    std::vector<int> v = std::move(queue_.front());
    queue_.pop_front();
    l.unlock();
    for (int fd : v) close(fd);
    l.lock();
  }
}
