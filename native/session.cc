// The request loop. /dev/fuse is non-blocking and watched by a uv_poll_t on
// Node's own loop: requests are read and answered on the JS thread, one at a
// time, with no thread hop (a hop through a pool costs ~13 us per request),
// taken from users in turn (fairqueue.h).
#include "session.h"

#include <poll.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "fuse_kernel.h"
#include "memtask.h"
#include "procmem.h"

namespace {

constexpr uint32_t kMaxWrite = 128 * 1024;
// Must hold the largest WRITE: header + fuse_write_in + max_write.
constexpr size_t kInBufSize = kMaxWrite + 4096;
// Requests served per wakeup before yielding to the rest of the event loop.
constexpr int kBatch = 64;
constexpr uint32_t kKdbusIoctlType = 0x95;
constexpr uint64_t kMaxCommandRead = 64 * 1024;
constexpr int kOpenPool = 1;
constexpr int kOpenDirectIo = 2;

const char* const kHandlerNames[] = {"open", "release", "ioctl",  "poll",
                                     "interrupt", "read", "write", "destroyed"};

template <typename T>
bool Take(const uint8_t* p, size_t n, T* out) {
  if (n < sizeof(T)) return false;
  memcpy(out, p, sizeof(T));
  return true;
}

// Reads a READ-like request and finds the open file or directory it names:
// nullptr, with the request answered EINVAL or EBADF, when either fails.
template <typename Map, typename Fail>
typename Map::mapped_type* TakeOpen(const uint8_t* p, size_t n, fuse_read_in* in, Map& open, Fail fail) {
  if (!Take(p, n, in)) {
    fail(-EINVAL);
    return nullptr;
  }
  auto it = open.find(in->fh);
  if (it == open.end()) {
    fail(-EBADF);
    return nullptr;
  }
  return &it->second;
}

// The device of the topmost mount of fstype on mountpoint, from
// /proc/self/mountinfo (a stat of the mount point would ask this very thread
// for the root's attributes). 0 if not found.
uint64_t MountDev(const std::string& mountpoint, const std::string& fstype) {
  FILE* f = fopen("/proc/self/mountinfo", "re");
  if (!f) return 0;
  uint64_t dev = 0;
  char* line = nullptr;
  size_t cap = 0;
  while (getline(&line, &cap, f) > 0) {
    // id parent major:minor root mountpoint options... - fstype source options
    unsigned major, minor;
    char mp[4096];
    if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &major, &minor, mp) != 3) continue;
    std::string point;  // unescape \ooo (space, tab, newline, backslash)
    for (const char* c = mp; *c; c++) {
      if (c[0] == '\\' && c[1] >= '0' && c[1] <= '7' && c[2] >= '0' && c[2] <= '7' && c[3] >= '0' && c[3] <= '7') {
        point += static_cast<char>((c[1] - '0') * 64 + (c[2] - '0') * 8 + (c[3] - '0'));
        c += 3;
      } else {
        point += *c;
      }
    }
    const char* sep = strstr(line, " - ");
    if (!sep || point != mountpoint) continue;
    char type[256];
    if (sscanf(sep + 3, "%255s", type) == 1 && fstype == type) dev = procmem::DevNumber(major, minor);
  }
  free(line);
  fclose(f);
  return dev;
}

size_t DirentSize(size_t namelen) {
  return (offsetof(fuse_dirent, name) + namelen + 7) & ~size_t{7};
}

}  // namespace

Session::Session(Napi::Env env, const MountParams& params, bool passthrough)
    : env_(env),
      params_(params),
      wantPassthrough_(passthrough),
      tree_(params.rootMode, params.rootUid, params.rootGid),
      in_(kInBufSize) {}

Session* Session::Mount(Napi::Env env, const MountParams& params, bool passthrough,
                        Napi::Object handlers, std::string* err, int* error) {
  *error = 0;
  std::unique_ptr<Session> s(new Session(env, params, passthrough));
  s->handlers_ = Napi::Persistent(handlers);
  for (int i = 0; i < kHandlerCount; i++) {
    Napi::Value v = handlers.Get(kHandlerNames[i]);
    if (env.IsExceptionPending()) {
      env.GetAndClearPendingException();
      *err = std::string("kdbusfs: reading handler '") + kHandlerNames[i] + "' threw";
      return nullptr;
    }
    if (v.IsFunction()) s->fns_[i] = Napi::Persistent(v.As<Napi::Function>());
  }
  s->async_ = std::make_unique<Napi::AsyncContext>(env, "kdbusfs:fuse", handlers);

  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || !loop) {
    *err = "kdbusfs: no event loop";
    return nullptr;
  }
  s->fd_ = MountFuse(params, err);
  if (s->fd_ < 0) {
    *error = s->fd_;
    s->unmounted_ = true;
    return nullptr;
  }
  s->dev_ = MountDev(params.mountpoint, params.subtype.empty() ? "fuse" : "fuse." + params.subtype);
  if (!s->dev_) fprintf(stderr, "kdbusfs: %s not found in /proc/self/mountinfo\n", params.mountpoint.c_str());
  // From here on ~Session (via Unmount) undoes whatever was done.
  if ((*error = s->watchdog_.Start(params.mountpoint, err)) < 0) return nullptr;
  s->poll_ = new uv_poll_t;
  int r = uv_poll_init(loop, s->poll_, s->fd_);
  if (r < 0) {
    delete s->poll_;
    s->poll_ = nullptr;
    *error = r;  // libuv errors are -errno
    *err = std::string("kdbusfs: uv_poll_init: ") + uv_strerror(r);
    return nullptr;
  }
  s->poll_->data = s.get();
  s->more_ = new uv_idle_t;
  uv_idle_init(loop, s->more_);
  s->more_->data = s.get();
  r = uv_poll_start(s->poll_, UV_READABLE, OnPoll);
  if (r < 0) {
    *error = r;
    *err = std::string("kdbusfs: uv_poll_start: ") + uv_strerror(r);
    return nullptr;
  }
  if (!s->rescue_.Start(loop, s->fd_, kInBufSize, kMaxWrite, OnRescued, s.get(), err)) {
    *error = -EIO;  // its thread or pipe could not be made (*err says which)
    return nullptr;
  }
  return s.release();
}

Session::~Session() { Unmount(); }

void Session::Dispose(Session* s) {
  if (s->dispatching_)
    s->disposeLater_ = true;
  else
    delete s;
}

void Session::Unmount() {
  if (unmounted_) return;
  unmounted_ = true;
  const char* mp = params_.mountpoint.c_str();
  if (!ended_) {
    umount2(mp, MNT_DETACH);
  } else {
    // The kernel already ended the session; only detach what is still there
    // and dead, never whatever may have been mounted on this path since.
    struct stat st;
    if (stat(mp, &st) < 0 && (errno == ENOTCONN || errno == ECONNABORTED)) umount2(mp, MNT_DETACH);
  }
  StopServing();
  watchdog_.Stop();
}

void Session::StopServing() {
  if (poll_) {
    uv_poll_stop(poll_);
    uv_close(reinterpret_cast<uv_handle_t*>(poll_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    poll_ = nullptr;
  }
  if (more_) {
    uv_close(reinterpret_cast<uv_handle_t*>(more_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_idle_t*>(h); });
    more_ = nullptr;
  }
  // Before the pools and fd_ it reads from go.
  rescue_.Stop();
  // Pools first: they close their backing ids on fd_.
  files_.clear();
  dirs_.clear();
  parked_.clear();
  waiting_.Clear();
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
}

void Session::End() {
  if (ended_) return;
  ended_ = true;
  StopServing();
  Napi::Value rv;
  Call(kDestroyed, {}, &rv);
}

void Session::OnPoll(uv_poll_t* handle, int status, int events) {
  Session* s = static_cast<Session*>(handle->data);
  // Held across the callback scope too: its close runs microtasks, which may
  // unmount this session.
  s->dispatching_++;
  {
    Napi::HandleScope hs(s->env_);
    Napi::CallbackScope cs(s->env_, *s->async_);
    s->Serve();
    // libuv reports POLLERR (connection aborted) as an error and stops the handle.
    if (status < 0 && !s->ended_ && !s->unmounted_) s->End();
  }
  s->dispatching_--;
  if (s->disposeLater_) delete s;
}

void Session::Serve() {
  // Everything waiting is read before each request is served, so that the
  // next one is chosen among all users' (native/fairqueue.h). A lone request
  // costs what it did: one read for it, one read that finds nothing more.
  std::vector<uint8_t> req;
  for (int i = 0; i < kBatch && fd_ >= 0; i++) {
    if (!ReadWaiting()) return;
    if (!waiting_.Pop(&req)) break;
    HandleRequest(req.data(), req.size());
  }
  // Requests read but not served yet leave /dev/fuse unreadable: the next
  // loop iteration serves them (an idle handle, which also keeps that
  // iteration from blocking).
  if (!more_) return;
  if (waiting_.empty())
    uv_idle_stop(more_);
  else
    uv_idle_start(more_, [](uv_idle_t* h) {
      Session* s = static_cast<Session*>(h->data);
      if (s->poll_) OnPoll(s->poll_, 0, UV_READABLE);
    });
}

bool Session::ReadWaiting() {
  // Requests the rescue read while this thread was stuck arrived first.
  for (std::vector<uint8_t> req; fd_ >= 0 && !waiting_.full() && rescue_.TakeRescued(&req);)
    if (req.size() >= sizeof(fuse_in_header)) waiting_.Push(std::move(req));
  while (fd_ >= 0 && !waiting_.full()) {
    ssize_t r = read(fd_, in_.data(), in_.size());
    if (r < 0) {
      int e = errno;
      if (e == EAGAIN) return true;
      if (e == EINTR || e == ENOENT) continue;  // ENOENT: that request vanished
      if (e != ENODEV) fprintf(stderr, "kdbusfs: reading /dev/fuse: %s\n", strerror(e));
      End();
      return false;
    }
    if (static_cast<size_t>(r) < sizeof(fuse_in_header)) {
      fprintf(stderr, "kdbusfs: short FUSE request (%zd bytes)\n", r);
      continue;
    }
    if (IsPoolRead(in_.data(), static_cast<size_t>(r)))
      HandleRequest(in_.data(), static_cast<size_t>(r));
    else
      waiting_.Push(std::vector<uint8_t>(in_.begin(), in_.begin() + r));
  }
  return fd_ >= 0;
}

bool Session::IsPoolRead(const uint8_t* req, size_t len) const {
  fuse_in_header h;
  fuse_read_in in;
  if (len < sizeof h + sizeof in) return false;
  memcpy(&h, req, sizeof h);
  if (h.opcode != FUSE_READ) return false;
  memcpy(&in, req + sizeof h, sizeof in);
  auto it = files_.find(in.fh);
  return it != files_.end() && it->second.pool;
}

void Session::HandleRequest(const uint8_t* req, size_t len) {
  if (len < sizeof(fuse_in_header)) {
    fprintf(stderr, "kdbusfs: short FUSE request (%zu bytes)\n", len);
    return;
  }
  fuse_in_header h;
  memcpy(&h, req, sizeof h);
  size_t body = len - sizeof h;
  size_t ext = static_cast<size_t>(h.total_extlen) * 8;
  if (h.len != len || ext > body) {
    fprintf(stderr, "kdbusfs: malformed FUSE request (opcode %u)\n", h.opcode);
    Reply(h.unique, -EIO);
    return;
  }
  Napi::HandleScope scope(env_);
  Dispatch(h, req + sizeof h, body - ext);
}

void Session::OnRescued(void* session) {
  Session* s = static_cast<Session*>(session);
  if (s->poll_) OnPoll(s->poll_, 0, UV_READABLE);
}

void Session::Dispatch(const fuse_in_header& h, const uint8_t* p, size_t n) {
  switch (h.opcode) {
    case FUSE_INIT: return OnInit(h, p, n);
    case FUSE_LOOKUP: return OnLookup(h, p, n);
    case FUSE_FORGET: return OnForget(h, p, n);
    case FUSE_BATCH_FORGET: return OnBatchForget(h, p, n);
    case FUSE_GETATTR: return OnGetAttr(h);
    case FUSE_OPENDIR: return OnOpenDir(h);
    case FUSE_READDIR: return OnReadDir(h, p, n);
    case FUSE_RELEASEDIR: return OnReleaseDir(h, p, n);
    case FUSE_STATFS: return OnStatFs(h);
    case FUSE_OPEN: return OnOpen(h, p, n);
    case FUSE_RELEASE: return OnRelease(h, p, n);
    case FUSE_READ: return OnRead(h, p, n);
    case FUSE_WRITE: return OnWrite(h, p, n);
    case FUSE_IOCTL: return OnIoctl(h, p, n);
    case FUSE_POLL: return OnPollRequest(h, p, n);
    case FUSE_INTERRUPT: return OnInterrupt(h, p, n);
    case FUSE_FLUSH:
    case FUSE_FSYNC:
    case FUSE_FSYNCDIR:
    case FUSE_ACCESS:
      Reply(h.unique, 0);
      return;
    case FUSE_SETATTR:
    case FUSE_MKNOD:
    case FUSE_MKDIR:
    case FUSE_UNLINK:
    case FUSE_RMDIR:
    case FUSE_RENAME:
    case FUSE_RENAME2:
    case FUSE_LINK:
    case FUSE_SYMLINK:
    case FUSE_CREATE:
    case FUSE_TMPFILE:
      Reply(h.unique, -EPERM);
      return;
    case FUSE_DESTROY:
      Reply(h.unique, 0);
      End();
      return;
    case FUSE_NOTIFY_REPLY:  // answers a RETRIEVE, which we never send
      return;
    default:
      Reply(h.unique, -ENOSYS);
  }
}

int Session::ReplyV(uint64_t unique, int error, const iovec* data, int n) {
  if (fd_ < 0) return -EBADF;
  fuse_out_header oh{};
  iovec iov[4];
  iov[0] = {&oh, sizeof oh};
  size_t total = sizeof oh;
  for (int i = 0; i < n && i < 3; i++) {
    iov[i + 1] = data[i];
    total += data[i].iov_len;
  }
  oh.len = static_cast<uint32_t>(total);
  oh.error = error;
  oh.unique = unique;
  if (writev(fd_, iov, std::min(n, 3) + 1) < 0) {
    int e = errno;
    // ENOENT: the request is gone (the connection is being aborted).
    if (e != ENOENT && e != ENODEV)
      fprintf(stderr, "kdbusfs: FUSE reply (error %d) failed: %s\n", error, strerror(e));
    return -e;
  }
  return 0;
}

int Session::Reply(uint64_t unique, int error, const void* data, size_t len) {
  if (error || !len) return ReplyV(unique, error, nullptr, 0);
  iovec iov{const_cast<void*>(data), len};
  return ReplyV(unique, 0, &iov, 1);
}

// The kernel refuses errors outside (-512, 0] (ERESTARTSYS included).
int Session::ToErrno(int v) { return v < -511 || v > 0 ? -EIO : v; }

namespace {

// A handler's numeric result as an int, or -EIO (logged) for anything else.
int ResultOf(const Napi::Value& v, const char* what) {
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (std::isfinite(d) && d == std::floor(d) && d >= -2147483648.0 && d <= 2147483647.0)
      return static_cast<int>(d);
  }
  fprintf(stderr, "kdbusfs: %s handler returned something other than an int32\n", what);
  return -EIO;
}

}  // namespace

bool Session::Call(Handler which, std::initializer_list<napi_value> args, Napi::Value* result) {
  if (fns_[which].IsEmpty()) return false;
  Napi::Env env(env_);
  Napi::Value r = fns_[which].Value().Call(handlers_.Value(), args);
  if (!env.IsExceptionPending()) {
    *result = r;
    return true;
  }
  Napi::Value ex(env, env.GetAndClearPendingException().Value());
  std::string text = "(unprintable)";
  if (ex.IsObject()) {
    Napi::Value stack = ex.As<Napi::Object>().Get("stack");
    if (stack.IsString()) text = stack.As<Napi::String>().Utf8Value();
  }
  if (env.IsExceptionPending()) env.GetAndClearPendingException();
  if (text == "(unprintable)") {
    Napi::String s = ex.ToString();
    if (env.IsExceptionPending())
      env.GetAndClearPendingException();
    else
      text = s.Utf8Value();
  }
  fprintf(stderr, "kdbusfs: %s handler threw: %s\n", kHandlerNames[which], text.c_str());
  return false;
}

Napi::Object Session::CallerObject(const Caller& c) {
  Napi::Env env(env_);
  Napi::Object o = Napi::Object::New(env);
  o.Set("tid", Napi::Number::New(env, c.tid));
  o.Set("uid", Napi::Number::New(env, c.uid));
  o.Set("gid", Napi::Number::New(env, c.gid));
  return o;
}

void Session::OnInit(const fuse_in_header& h, const uint8_t* p, size_t n) {
  fuse_init_in in{};
  memcpy(&in, p, std::min(n, sizeof in));
  if (n < 16 || in.major < 7) {
    Reply(h.unique, -EPROTO);
    return;
  }
  kfuse::InitOut out{};
  out.major = FUSE_KERNEL_VERSION;
  out.minor = std::min(in.minor, kfuse::kReplyMinor);
  uint64_t offered = in.flags;
  if ((in.flags & FUSE_INIT_EXT) && n >= 20) offered |= static_cast<uint64_t>(in.flags2) << 32;
  // ATOMIC_O_TRUNC: `echo 1 > file` must not turn into a SETATTR we refuse.
  uint64_t want = FUSE_INIT_EXT | FUSE_MAX_PAGES | FUSE_PARALLEL_DIROPS | FUSE_ATOMIC_O_TRUNC;
  if (wantPassthrough_) want |= kfuse::kInitPassthrough;
  uint64_t flags = want & offered;
  passthrough_ = (flags & kfuse::kInitPassthrough) != 0;
  out.flags = static_cast<uint32_t>(flags);
  out.flags2 = static_cast<uint32_t>(flags >> 32);
  // No readahead: a page-cache pool page is only ever read when the client
  // touches it (see Pool::Flush).
  out.max_readahead = 0;
  out.max_background = 64;
  out.congestion_threshold = 48;
  out.max_write = kMaxWrite;
  out.time_gran = 1;
  out.max_pages = kMaxWrite / 4096;
  out.max_stack_depth = passthrough_ ? 1 : 0;
  protoMinor_ = in.minor;
  Reply(h.unique, 0, &out, sizeof out);
}

void Session::OnLookup(const fuse_in_header& h, const uint8_t* p, size_t n) {
  const char* name = reinterpret_cast<const char*>(p);
  size_t len = strnlen(name, n);
  if (len == n) {
    Reply(h.unique, -EINVAL);
    return;
  }
  fuse_entry_out out{};  // all timeouts 0: the tree changes under the clients
  uint64_t id = 0;
  int e = tree_.Lookup(h.nodeid, std::string(name, len), &id, &out.attr);
  if (e) {
    Reply(h.unique, e);
    return;
  }
  out.nodeid = id;
  if (Reply(h.unique, 0, &out, sizeof out) < 0) tree_.Forget(id, 1);
}

void Session::OnForget(const fuse_in_header& h, const uint8_t* p, size_t n) {
  fuse_forget_in in;
  if (Take(p, n, &in)) tree_.Forget(h.nodeid, in.nlookup);
}

void Session::OnBatchForget(const fuse_in_header& h, const uint8_t* p, size_t n) {
  fuse_batch_forget_in in;
  if (!Take(p, n, &in)) return;
  size_t room = (n - sizeof in) / sizeof(fuse_forget_one);
  size_t count = std::min<size_t>(in.count, room);
  for (size_t i = 0; i < count; i++) {
    fuse_forget_one one;
    memcpy(&one, p + sizeof in + i * sizeof one, sizeof one);
    tree_.Forget(one.nodeid, one.nlookup);
  }
}

void Session::OnGetAttr(const fuse_in_header& h) {
  fuse_attr_out out{};
  int e = tree_.GetAttr(h.nodeid, &out.attr);
  if (e)
    Reply(h.unique, e);
  else
    Reply(h.unique, 0, &out, sizeof out);
}

void Session::OnOpenDir(const fuse_in_header& h) {
  // A snapshot: offsets stay meaningful while the tree changes.
  std::vector<DirEntry> entries;
  int e = tree_.ListDir(h.nodeid, &entries);
  if (e) {
    Reply(h.unique, e);
    return;
  }
  uint64_t fh = nextFh_++;
  dirs_.emplace(fh, std::move(entries));
  kfuse::OpenOut out{};
  out.fh = fh;
  if (Reply(h.unique, 0, &out, sizeof out) < 0) dirs_.erase(fh);
}

void Session::OnReadDir(const fuse_in_header& h, const uint8_t* p, size_t n) {
  fuse_read_in in;
  const std::vector<DirEntry>* dir = TakeOpen(p, n, &in, dirs_, [&](int e) { Reply(h.unique, e); });
  if (!dir) return;
  const std::vector<DirEntry>& v = *dir;
  size_t size = std::min<size_t>(in.size, kMaxWrite);
  out_.resize(size);
  size_t pos = 0;
  for (uint64_t i = in.offset; i < v.size(); i++) {
    const DirEntry& d = v[i];
    size_t rec = DirentSize(d.name.size());
    if (pos + rec > size) break;
    fuse_dirent de{};
    de.ino = d.ino;
    de.off = i + 1;
    de.namelen = static_cast<uint32_t>(d.name.size());
    de.type = d.type;
    memset(out_.data() + pos, 0, rec);
    memcpy(out_.data() + pos, &de, offsetof(fuse_dirent, name));
    memcpy(out_.data() + pos + offsetof(fuse_dirent, name), d.name.data(), d.name.size());
    pos += rec;
  }
  Reply(h.unique, 0, out_.data(), pos);
}

void Session::OnReleaseDir(const fuse_in_header& h, const uint8_t* p, size_t n) {
  fuse_release_in in;
  if (Take(p, n, &in)) dirs_.erase(in.fh);
  Reply(h.unique, 0);
}

void Session::OnStatFs(const fuse_in_header& h) {
  fuse_statfs_out out{};
  out.st.bsize = 4096;
  out.st.frsize = 4096;
  out.st.namelen = 255;
  Reply(h.unique, 0, &out, sizeof out);
}

void Session::OnOpen(const fuse_in_header& h, const uint8_t* p, size_t n) {
  fuse_open_in in;
  if (!Take(p, n, &in)) {
    Reply(h.unique, -EINVAL);
    return;
  }
  double tag = 0;
  bool reopened = false;
  int e = tree_.CheckOpen(h.nodeid, &tag, &reopened);
  if (e) {
    Reply(h.unique, e);
    return;
  }
  Napi::Env env(env_);
  uint64_t fh = nextFh_++;
  int res = 0;
  if (!fns_[kOpen].IsEmpty()) {
    Napi::Value rv;
    Caller c{h.pid, h.uid, h.gid};
    if (Call(kOpen, {Napi::Number::New(env, static_cast<double>(fh)), Napi::Number::New(env, tag),
                     CallerObject(c), Napi::Number::New(env, in.flags)},
             &rv))
      res = ResultOf(rv, "open");
    else
      res = -EIO;
  }
  if (fd_ < 0) return;  // unmounted from inside the handler
  if (res < 0) {
    Reply(h.unique, ToErrno(res));
    return;
  }
  OpenFile f;
  f.nodeid = h.nodeid;
  f.flags = res;
  kfuse::OpenOut out{};
  out.fh = fh;
  // No FLUSH at each close(2): it would be answered with nothing done, and the
  // closing client waits for that answer (the RELEASE after the last close
  // does not make it wait).
  out.open_flags |= FOPEN_NOFLUSH;
  if (res & kOpenPool) {
    int err = 0;
    Pool* pool = nullptr;
    if (passthrough_) {
      pool = Pool::Create(fd_, true, &err);
      if (pool) {
        passthroughConfirmed_ = true;
      } else if (!passthroughConfirmed_ && (err == -EPERM || err == -EOPNOTSUPP)) {
        // BACKING_OPEN needs CAP_SYS_ADMIN in the initial user namespace.
        fprintf(stderr, "kdbusfs: passthrough refused (%s): pools use the page cache\n",
                strerror(-err));
        passthrough_ = false;
      }
    }
    if (!pool && !passthrough_) pool = Pool::Create(fd_, false, &err);
    if (!pool) {
      files_.emplace(fh, std::move(f));
      CloseFile(fh);  // the handler already accepted fh: tell it it is gone
      Reply(h.unique, ToErrno(err));
      return;
    }
    f.pool.reset(pool);
    if (pool->passthrough()) {
      out.open_flags |= kfuse::kOpenPassthrough;
      out.backing_id = pool->backingId();
    } else if (!reopened) {
      // A reopened instance may hold an earlier pool's pages: let the open drop them.
      out.open_flags |= FOPEN_KEEP_CACHE;
    }
  } else if (res & kOpenDirectIo) {
    out.open_flags |= FOPEN_DIRECT_IO;
  }
  if (f.pool) rescue_.AddPool(fh, f.pool.get());
  files_.emplace(fh, std::move(f));
  tree_.MarkOpen(h.nodeid, fh);
  if (Reply(h.unique, 0, &out, sizeof out) < 0) CloseFile(fh);  // no RELEASE will come
}

void Session::CloseFile(uint64_t fh) {
  if (!files_.count(fh)) return;
  Napi::Value rv;
  Call(kRelease, {Napi::Number::New(env_, static_cast<double>(fh))}, &rv);
  // Looked up again: the handler may have unmounted the session.
  auto it = files_.find(fh);
  if (it == files_.end()) return;
  tree_.MarkClosed(it->second.nodeid);
  rescue_.RemovePool(fh);
  files_.erase(it);
}

void Session::OnRelease(const fuse_in_header& h, const uint8_t* p, size_t n) {
  fuse_release_in in;
  if (Take(p, n, &in)) CloseFile(in.fh);
  Reply(h.unique, 0);
}

void Session::OnRead(const fuse_in_header& h, const uint8_t* p, size_t n) {
  fuse_read_in in;
  OpenFile* file = TakeOpen(p, n, &in, files_, [&](int e) { Reply(h.unique, e); });
  if (!file) return;
  size_t size = std::min<size_t>(in.size, kMaxWrite);
  if (file->pool) {
    out_.resize(size);
    ssize_t r = file->pool->Read(in.offset, out_.data(), size);
    if (r < 0)
      Reply(h.unique, static_cast<int>(r));
    else
      Reply(h.unique, 0, out_.data(), static_cast<size_t>(r));
    return;
  }
  if (!(file->flags & kOpenDirectIo) || fns_[kRead].IsEmpty()) {
    Reply(h.unique, -EINVAL);
    return;
  }
  Napi::Env env(env_);
  Napi::Value rv;
  if (!Call(kRead, {Napi::Number::New(env, static_cast<double>(in.fh)),
                    Napi::Number::New(env, static_cast<double>(in.offset)),
                    Napi::Number::New(env, static_cast<double>(size))},
            &rv)) {
    Reply(h.unique, -EIO);
  } else if (rv.IsTypedArray()) {
    Napi::TypedArray ta = rv.As<Napi::TypedArray>();
    const uint8_t* data = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    Reply(h.unique, 0, data, std::min(ta.ByteLength(), size));
  } else {
    int r = ResultOf(rv, "read");
    Reply(h.unique, r < 0 ? ToErrno(r) : 0);
  }
}

void Session::OnWrite(const fuse_in_header& h, const uint8_t* p, size_t n) {
  fuse_write_in in;
  if (!Take(p, n, &in) || in.size > n - sizeof in) {
    Reply(h.unique, -EINVAL);
    return;
  }
  auto it = files_.find(in.fh);
  if (it == files_.end()) {
    Reply(h.unique, -EBADF);
    return;
  }
  if (!(it->second.flags & kOpenDirectIo) || it->second.pool || fns_[kWrite].IsEmpty()) {
    Reply(h.unique, -EINVAL);
    return;
  }
  Napi::Env env(env_);
  Napi::Value rv;
  Napi::Buffer<uint8_t> data = Napi::Buffer<uint8_t>::Copy(env, p + sizeof in, in.size);
  int r = Call(kWrite, {Napi::Number::New(env, static_cast<double>(in.fh)),
                        Napi::Number::New(env, static_cast<double>(in.offset)), data},
               &rv)
              ? ResultOf(rv, "write")
              : -EIO;
  if (r < 0) {
    Reply(h.unique, ToErrno(r));
    return;
  }
  fuse_write_out out{};
  out.size = std::min<uint32_t>(static_cast<uint32_t>(r), in.size);
  Reply(h.unique, 0, &out, sizeof out);
}

void Session::OnIoctl(const fuse_in_header& h, const uint8_t* p, size_t n) {
  fuse_ioctl_in in;
  if (!Take(p, n, &in) || in.in_size > n - sizeof in) {
    Reply(h.unique, -EINVAL);
    return;
  }
  const uint8_t* head = p + sizeof in;
  if (!files_.count(in.fh) || fns_[kIoctl].IsEmpty()) {
    Reply(h.unique, -ENOTTY);
    return;
  }
  int fast;
  if (fast_.Ioctl(in.fh, in.cmd, in.arg, h.pid, head, in.in_size, &fast)) {
    if (fast < 0) {
      Reply(h.unique, ToErrno(fast));
    } else {
      fuse_ioctl_out out{};
      out.result = fast;
      Reply(h.unique, 0, &out, sizeof out);
    }
    return;
  }
  Napi::Env env(env_);
  Caller c{h.pid, h.uid, h.gid};
  Napi::Value command = env.Null();
  Napi::Value headBuf;
  if (((in.cmd >> 8) & 0xff) == kKdbusIoctlType && in.in_size >= 8 && in.arg % 8 == 0) {
    uint64_t size;
    memcpy(&size, head, sizeof size);
    if (size >= 8 && size <= in.in_size) {
      // The kernel already copied it all: spare the ~2.5 us of process_vm_readv.
      command = Napi::Buffer<uint8_t>::Copy(env, head, size);
      headBuf = command;  // it starts with the same bytes: one Buffer serves as both
    } else if (size >= 8 && size <= kMaxCommandRead) {
      Napi::Buffer<uint8_t> buf = Napi::Buffer<uint8_t>::New(env, size);
      int e = memtask::Read(static_cast<pid_t>(h.pid), in.arg, buf.Data(), size);
      command = e ? Napi::Value(Napi::Number::New(env, e)) : Napi::Value(buf);
    }
  }
  // Parked before the call, so that the handler may answer it right away.
  parked_[h.unique] = c;
  Napi::Value rv;
  bool ok = Call(kIoctl,
                 {Napi::Number::New(env, static_cast<double>(h.unique)),
                  Napi::Number::New(env, static_cast<double>(in.fh)), Napi::Number::New(env, in.cmd),
                  Napi::Number::New(env, static_cast<double>(in.arg)), Napi::Number::New(env, h.pid),
                  headBuf.IsEmpty() ? Napi::Buffer<uint8_t>::Copy(env, head, in.in_size) : headBuf,
                  command},
                 &rv);
  if (!parked_.count(h.unique)) return;  // already answered
  if (ok && rv.IsUndefined()) return;    // parked until replyIoctl()
  ReplyIoctl(h.unique, ok ? ResultOf(rv, "ioctl") : -EIO);
}

bool Session::ReplyIoctl(uint64_t unique, int result, const uint8_t* out, size_t outLen) {
  auto it = parked_.find(unique);
  if (it == parked_.end()) return false;
  parked_.erase(it);
  if (result < 0) {
    Reply(unique, ToErrno(result));
    return true;
  }
  // Data after fuse_ioctl_out is copied by the kernel to the caller's
  // argument, in the caller's own context: cheaper than process_vm_writev.
  // Without it the reply is bare, so that nothing is copied over what the
  // handler wrote into the caller's memory itself.
  fuse_ioctl_out head{};
  head.result = result;
  iovec iov[2] = {{&head, sizeof head}, {const_cast<uint8_t*>(out), outLen}};
  ReplyV(unique, 0, iov, outLen ? 2 : 1);
  return true;
}

void Session::OnPollRequest(const fuse_in_header& h, const uint8_t* p, size_t n) {
  fuse_poll_in in;
  if (!Take(p, n, &in)) {
    Reply(h.unique, -EINVAL);
    return;
  }
  if (!files_.count(in.fh)) {
    Reply(h.unique, -EBADF);
    return;
  }
  Napi::Env env(env_);
  Napi::Value rv;
  int r;
  uint32_t mask;
  if (fast_.Poll(in.fh, in.kh, in.flags, &mask)) {
    r = static_cast<int>(mask);
  } else if (fns_[kPoll].IsEmpty()) {
    r = POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM;
  } else if (Call(kPoll, {Napi::Number::New(env, static_cast<double>(in.fh)),
                          Napi::Number::New(env, static_cast<double>(in.kh)),
                          Napi::Number::New(env, in.flags), Napi::Number::New(env, in.events)},
                  &rv)) {
    r = ResultOf(rv, "poll");
  } else {
    // Not ENOSYS: that would turn off poll for the whole connection.
    r = -EIO;
  }
  if (r < 0) {
    Reply(h.unique, ToErrno(r));
    return;
  }
  fuse_poll_out out{};
  out.revents = static_cast<uint32_t>(r);
  Reply(h.unique, 0, &out, sizeof out);
}

void Session::OnInterrupt(const fuse_in_header& h, const uint8_t* p, size_t n) {
  fuse_interrupt_in in;
  if (!Take(p, n, &in)) return;
  // Only parked requests: the rest were answered already. Never answer an
  // INTERRUPT with EAGAIN (the kernel re-queues it at once: a livelock).
  auto it = parked_.find(in.unique);
  if (it == parked_.end()) return;
  Caller c = it->second;
  Napi::Value rv;
  Call(kInterrupt, {Napi::Number::New(env_, static_cast<double>(in.unique)), CallerObject(c)}, &rv);
}

void Session::NotifyPoll(uint64_t kh) {
  if (fd_ < 0) return;
  fuse_notify_poll_wakeup_out w{};
  w.kh = kh;
  fuse_out_header oh{};
  oh.len = sizeof oh + sizeof w;
  oh.error = FUSE_NOTIFY_POLL;
  iovec iov[2] = {{&oh, sizeof oh}, {&w, sizeof w}};
  // ENOENT: nobody polls with that handle any more.
  if (writev(fd_, iov, 2) < 0 && errno != ENOENT && errno != ENODEV)
    fprintf(stderr, "kdbusfs: poll notification failed: %s\n", strerror(errno));
}

Pool* Session::FindPool(uint64_t fh) {
  auto it = files_.find(fh);
  return it == files_.end() ? nullptr : it->second.pool.get();
}

int Session::PoolSetup(uint64_t fh, uint64_t size) {
  auto it = files_.find(fh);
  if (it == files_.end() || !it->second.pool) return -EBADF;
  Pool* pool = it->second.pool.get();
  int e = pool->Setup(size);
  if (e || pool->passthrough()) return e;
  // Page cache: the client faults pages up to the inode's size. GETATTR
  // reports the pool size from now on, and storing the last page sets the
  // kernel's i_size at once (a fault never asks for attributes).
  tree_.SetInstanceSize(it->second.nodeid, size);
  pool->Flush(it->second.nodeid, size - 1, 1);
  return 0;
}

void Session::PoolFlush(uint64_t fh, uint64_t off, uint64_t len) {
  auto it = files_.find(fh);
  if (it != files_.end() && it->second.pool && fd_ >= 0)
    it->second.pool->Flush(it->second.nodeid, off, len);
}
