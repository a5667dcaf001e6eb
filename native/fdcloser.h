// Closing fds off the event loop. A close(2) runs the file's flush, which
// may block: a file of another FUSE mount waits for that server (a client
// could pass one whose FLUSH is never answered; once that server has read
// the request the closing thread waits uninterruptibly), a kdbusfs file for
// this very loop. The kernel's kdbus dropped files with fput, which never
// flushed; in userspace every close of an fd does. So fds are closed on
// worker threads, one fd at a time, and a worker stuck in one close for
// longer than kStuckAfter is left to it: a supervisor starts another for
// the rest, so a client's file parks at most the thread closing it. Fds of
// a file system a worker is closing a file of (st_dev) wait for that worker
// instead of parking workers of their own: a message of 253 fds of a file
// whose FLUSH never returns parks one worker, not all of them.
//
// Lines are charged to the uid whose fds they close (the sender that handed
// them to the server: Own), at most kLinesPerUid at a time; the rest of
// that uid's fds wait behind its own lines. So a user with many file systems
// whose FLUSH never returns parks kLinesPerUid workers, and every other
// user's closes find a worker while fewer than kMaxWorkers / kLinesPerUid
// uids park theirs. Copies of an owned fd (dup: the fd installer's) are
// charged to its owner: the same file (KCMP_FILE) as an open owned fd, or
// else the inode of owned fds of one uid whose closes have not returned.
// Fds of nobody's are charged to one account of their own, capped alike.
#pragma once

#include <sys/types.h>


#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

class FdCloser {
 public:
  // a close taking longer is a stuck FLUSH, not a slow disk
  static constexpr std::chrono::milliseconds kStuckAfter{50};
  // workers at most, stuck ones included: past that, fds wait in the queue
  static constexpr int kMaxWorkers = 64;
  // workers closing one uid's fds at a time
  static constexpr int kLinesPerUid = 4;
  // the account of fds nobody owns
  static constexpr uid_t kNoUid = static_cast<uid_t>(-1);

  FdCloser();
  // Stops once the workers that are not stuck have closed what is queued.
  ~FdCloser();
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;

  // fd (taken from a client) is uid's: its close, and its copies', are charged to uid.
  void Own(int fd, uid_t uid);

  // Closes fds in the background.
  void CloseLater(std::vector<int> fds);

  // Workers stuck in a close right now (for tests and the log).
  int Stuck();

 private:
  struct State;
  struct Item;
  static void Supervise(std::shared_ptr<State> s);
  static void Work(std::shared_ptr<State> s, size_t slot);

  // Shared with the workers, which may outlive this object (a stuck one
  // returns when the other server answers or goes).
  std::shared_ptr<State> state_;
  std::thread supervisor_;
};
