// See fdcloser.h.
#include "fdcloser.h"

#include <fcntl.h>
#include <linux/kcmp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <map>
#include <utility>

using Clock = std::chrono::steady_clock;

static constexpr dev_t kNoDev = static_cast<dev_t>(-1);

using File = std::pair<dev_t, ino_t>;

// An fd to close, the uid its line is charged to, its file.
struct FdCloser::Item {
  int fd;
  uid_t uid;
  File file;
  // an owned fd's: counted in closing until its close returns
  bool owned;
  dev_t dev() const { return file.first; }
};

struct FdCloser::State {
  // A lock of its own: fds are released on the loop thread while the fd
  // installer's tracer waits for it.
  std::mutex mu;
  std::condition_variable work;     // workers: fds queued, or stopping
  std::condition_variable changed;  // supervisor and destructor: fds queued, a worker idle or gone
  bool stopping = false;
  std::deque<Item> queue;
  // per worker slot: when its current close began (time_point{} while idle), or gone
  std::vector<Clock::time_point> busySince;
  // per worker slot: the file system of the fd it closes (kNoDev: unknown)
  std::vector<dev_t> busyDev;
  std::vector<bool> alive;
  int idle = 0;
  // fds of a file system a worker is closing a file of, closed by that
  // worker after it (one line per file system: however many fds of a file
  // whose FLUSH never returns come, they park one worker)
  std::map<dev_t, std::deque<Item>> waiting;
  // per uid: lines (workers) closing its fds now, at most kLinesPerUid
  std::map<uid_t, int> lines;
  // per uid: its fds waiting for one of its lines
  std::map<uid_t, std::deque<Item>> held;
  // fds taken from clients and not let go of yet: whose, and which file
  struct Owned {
    uid_t uid;
    File file;
  };
  std::map<int, Owned> owned;
  std::map<File, std::vector<int>> ownedFiles;
  // owned fds let go of whose close has not returned, per file and uid (their
  // numbers may be another file's already)
  std::map<File, std::map<uid_t, int>> closing;

  void DisownLocked(std::map<int, Owned>::iterator o) {
    auto f = ownedFiles.find(o->second.file);
    if (f != ownedFiles.end()) {
      auto& v = f->second;
      for (size_t i = 0; i < v.size(); i++) {
        if (v[i] != o->first) continue;
        v[i] = v.back();
        v.pop_back();
        break;
      }
      if (v.empty()) ownedFiles.erase(f);
    }
    owned.erase(o);
  }

  // An owned fd's close returned.
  void ClosedLocked(const Item& it) {
    if (!it.owned) return;
    auto c = closing.find(it.file);
    if (c == closing.end()) return;
    if (--c->second[it.uid] == 0) c->second.erase(it.uid);
    if (c->second.empty()) closing.erase(c);
  }

  // The uid whose fd fd (of file) copies: the owner of an owned fd of the
  // same file (KCMP_FILE); else, when every owned fd of that inode, open or
  // closing, is one uid's, that uid; else nobody.
  uid_t CopyOwnerLocked(int fd, File file) {
    pid_t me = getpid();
    std::map<uid_t, bool> uids;
    auto f = ownedFiles.find(file);
    if (f != ownedFiles.end()) {
      for (int orig : f->second) {
        if (syscall(SYS_kcmp, me, me, KCMP_FILE, fd, orig) == 0) return owned[orig].uid;
        uids[owned[orig].uid] = true;
      }
    }
    auto c = closing.find(file);
    if (c != closing.end())
      for (auto& u : c->second) uids[u.first] = true;
    return uids.size() == 1 ? uids.begin()->first : kNoUid;
  }

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

// The file system and inode of fd, from what the kernel has cached
// (AT_STATX_DONT_SYNC, nothing asked for: FUSE answers without a request).
static File FileOf(int fd) {
  struct statx st;
  if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_INO, &st) < 0) return {kNoDev, 0};
  return {makedev(st.stx_dev_major, st.stx_dev_minor), st.stx_ino};
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

void FdCloser::Own(int fd, uid_t uid) {
  File file = FileOf(fd);
  std::lock_guard<std::mutex> g(state_->mu);
  auto o = state_->owned.find(fd);
  if (o != state_->owned.end()) state_->DisownLocked(o);  // closed without us: the number is new
  state_->owned[fd] = {uid, file};
  if (file.first != kNoDev) state_->ownedFiles[file].push_back(fd);
}

void FdCloser::CloseLater(std::vector<int> fds) {
  if (fds.empty()) return;
  // fds nobody owns: their file, to find the owned fd they copy (a stat that
  // does not wait for the file's server, outside the lock)
  std::vector<char> unowned(fds.size());
  {
    std::lock_guard<std::mutex> g(state_->mu);
    for (size_t i = 0; i < fds.size(); i++) unowned[i] = !state_->owned.count(fds[i]);
  }
  std::vector<File> files(fds.size(), {kNoDev, 0});
  for (size_t i = 0; i < fds.size(); i++)
    if (unowned[i]) files[i] = FileOf(fds[i]);
  std::lock_guard<std::mutex> g(state_->mu);
  State* s = state_.get();
  for (size_t i = 0; i < fds.size(); i++) {
    Item it{fds[i], kNoUid, files[i], false};
    auto o = s->owned.find(fds[i]);
    if (o != s->owned.end()) {
      it = {fds[i], o->second.uid, o->second.file, true};
      s->DisownLocked(o);
      s->closing[it.file][it.uid]++;
    } else if (it.dev() != kNoDev) {
      it.uid = s->CopyOwnerLocked(fds[i], files[i]);
    }
    if (s->stopping) {
      close(it.fd);
      s->ClosedLocked(it);
      continue;
    }
    s->queue.push_back(it);
  }
  if (s->stopping) return;
  if (!supervisor_.joinable()) supervisor_ = std::thread(&FdCloser::Supervise, state_);
  s->work.notify_one();
  s->changed.notify_all();
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
  // closes it (the lock released meanwhile), then, while there are any, the
  // fds that waited for a close on the same file system to return, then the
  // fds of its uid that waited for a line of that uid
  auto closeAll = [&s, slot, &l](Item it) {
    if (it.dev() != kNoDev && s->BusyOnLocked(it.dev())) {
      s->waiting[it.dev()].push_back(it);
      return;
    }
    const uid_t uid = it.uid;
    if (s->lines[uid] >= kLinesPerUid) {
      s->held[uid].push_back(it);
      return;
    }
    s->lines[uid]++;
    for (;;) {
      s->busyDev[slot] = it.dev();
      s->busySince[slot] = Clock::now();
      l.unlock();
      close(it.fd);
      l.lock();
      s->ClosedLocked(it);
      auto w = s->waiting.find(it.dev());
      if (it.dev() != kNoDev && w != s->waiting.end()) {
        it = w->second.front();
        w->second.pop_front();
        if (w->second.empty()) s->waiting.erase(w);
        continue;
      }
      s->busyDev[slot] = kNoDev;
      // the next of this uid's fds whose file system no other line is on
      bool next = false;
      auto h = s->held.find(uid);
      while (h != s->held.end() && !h->second.empty()) {
        it = h->second.front();
        h->second.pop_front();
        if (it.dev() != kNoDev && s->BusyOnLocked(it.dev())) {
          s->waiting[it.dev()].push_back(it);
          continue;
        }
        next = true;
        break;
      }
      if (h != s->held.end() && h->second.empty()) s->held.erase(h);
      if (!next) break;
    }
    if (--s->lines[uid] == 0) s->lines.erase(uid);
    s->busySince[slot] = {};
    s->changed.notify_all();
  };
  for (;;) {
    s->idle++;
    s->work.wait(l, [&s] { return s->stopping || !s->queue.empty(); });
    s->idle--;
    if (s->queue.empty()) break;  // stopping
    Item it = s->queue.front();
    s->queue.pop_front();
    closeAll(it);
  }
  s->alive[slot] = false;
  s->changed.notify_all();
}
