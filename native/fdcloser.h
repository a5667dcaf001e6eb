// Closing fds off the event loop. A close(2) runs the file's flush, which
// may block: a file of another FUSE mount waits for that server (a client
// could pass one that never answers), a kdbusfs file for this very loop. The
// kernel's kdbus dropped files with fput, which never did. So the fds a
// server lets go of are closed on a thread of their own, in order.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

class FdCloser {
 public:
  FdCloser() = default;
  // Stops the thread once it has closed what it holds; later fds are closed at once.
  ~FdCloser();
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;

  // Closes fds in the background (the thread starts at the first call).
  void CloseLater(std::vector<int> fds);

 private:
  void Run();

  // A lock of its own: fds are released on the loop thread while the fd
  // installer's tracer waits for it, and a server killed meanwhile would
  // leave the installer's lock held.
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::deque<std::vector<int>> queue_;
  std::thread thread_;
};
