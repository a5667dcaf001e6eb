#include "client.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <uv.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "napi-functions.h"

namespace {

using napifn::Int;
using napifn::TypeError;

// A syscall's result for JS: the value, or -errno when it failed.
Napi::Number Result(Napi::Env env, int r) { return Int(env, r < 0 ? -errno : r); }

bool IsFd(const Napi::Value& v) {
  if (!v.IsNumber()) return false;
  double d = v.As<Napi::Number>().DoubleValue();
  return d >= 0 && d <= INT32_MAX && d == static_cast<int>(d);
}

// A call whose one argument is a string (a path, a name): its Result.
template <typename Call>
Napi::Value WithString(const Napi::CallbackInfo& info, const char* usage, Call call) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) return TypeError(env, usage);
  std::string s = info[0].As<Napi::String>().Utf8Value();
  return Result(env, call(s.c_str()));
}

// open(path, O_RDWR | O_CLOEXEC): fd or -errno.
Napi::Value Open(const Napi::CallbackInfo& info) {
  return WithString(info, "open(path: string)", [](const char* path) { return open(path, O_RDWR | O_CLOEXEC); });
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !IsFd(info[0])) return TypeError(env, "close(fd: number)");
  return Result(env, close(info[0].As<Napi::Number>().Int32Value()));
}

// ioctl(fd, cmd, buffer): the buffer's memory is the argument, updated in
// place; 0 or -errno. kdbus refuses an unaligned command (EFAULT), so a
// Buffer that is not 8-aligned (a subarray) goes through an aligned copy.
Napi::Value Ioctl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !IsFd(info[0]) || !info[1].IsNumber() || !info[2].IsBuffer()) {
    return TypeError(env, "ioctl(fd: number, cmd: number, arg: Buffer)");
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  unsigned long cmd = info[1].As<Napi::Number>().Uint32Value();
  auto buf = info[2].As<Napi::Buffer<uint8_t>>();
  uint8_t* data = buf.Data();
  size_t len = buf.Length();
  int r;
  if (reinterpret_cast<uintptr_t>(data) % 8 == 0) {
    r = ioctl(fd, cmd, data);
  } else {
    std::vector<uint64_t> aligned((len + 7) / 8);
    memcpy(aligned.data(), data, len);
    r = ioctl(fd, cmd, aligned.data());
    int e = errno;
    memcpy(data, aligned.data(), len);
    errno = e;
  }
  return Result(env, r);
}

// The address of a Buffer's memory, for items that point at caller memory
// (PAYLOAD_VEC): valid while the Buffer is referenced.
Napi::Value Address(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsBuffer()) return TypeError(env, "address(buffer: Buffer)");
  auto buf = info[0].As<Napi::Buffer<uint8_t>>();
  return Napi::BigInt::New(env, static_cast<uint64_t>(reinterpret_cast<uintptr_t>(buf.Data())));
}

// ---- read-only mappings ----
//
// A mapping handed to JS as an external Buffer. munmap() cannot take the
// Buffer away from JS, so it does not leave a hole: it replaces the file
// mapping with anonymous zero pages at the same address (the file and its
// memory are released; a stale view reads zeros instead of faulting). The
// Buffer's finalizer unmaps whatever is there last.

struct Mapping {
  size_t len;
  bool released;
};

std::mutex& MappingsMu() {
  static std::mutex mu;
  return mu;
}
std::map<void*, Mapping>& Mappings() {
  static std::map<void*, Mapping> m;
  return m;
}

void FinalizeMapping(Napi::Env, uint8_t* addr) {
  size_t len = 0;
  {
    std::lock_guard<std::mutex> g(MappingsMu());
    auto it = Mappings().find(addr);
    if (it == Mappings().end()) return;
    len = it->second.len;
    Mappings().erase(it);
  }
  munmap(addr, len);
}

// mmap(fd, size, offset = 0) with PROT_READ, MAP_SHARED: Buffer or -errno.
Napi::Value Mmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !IsFd(info[0]) || !info[1].IsNumber() ||
      (info.Length() > 2 && !info[2].IsNumber())) {
    return TypeError(env, "mmap(fd: number, size: number, offset?: number)");
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  double size = info[1].As<Napi::Number>().DoubleValue();
  double offset = info.Length() > 2 ? info[2].As<Napi::Number>().DoubleValue() : 0;
  if (!(size > 0) || size > static_cast<double>(SIZE_MAX / 2) || size != static_cast<double>(static_cast<size_t>(size)) ||
      offset < 0 || offset != static_cast<double>(static_cast<int64_t>(offset))) {
    return TypeError(env, "mmap: size must be a positive integer, offset a non-negative integer");
  }
  size_t len = static_cast<size_t>(size);
  void* addr = mmap(nullptr, len, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(offset));
  if (addr == MAP_FAILED) return Int(env, -errno);
  {
    std::lock_guard<std::mutex> g(MappingsMu());
    Mappings()[addr] = Mapping{len, false};
  }
  return Napi::Buffer<uint8_t>::New(env, static_cast<uint8_t*>(addr), len, FinalizeMapping);
}

// munmap(buffer): 0 (also when already released) or -errno; the Buffer must
// be one mmap() returned, whole.
Napi::Value Munmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsBuffer()) return TypeError(env, "munmap(mapping: Buffer)");
  auto buf = info[0].As<Napi::Buffer<uint8_t>>();
  std::lock_guard<std::mutex> g(MappingsMu());
  auto it = Mappings().find(buf.Data());
  if (it == Mappings().end() || it->second.len != buf.Length()) {
    return TypeError(env, "munmap: not a whole mapping made by mmap()");
  }
  if (it->second.released) return Int(env, 0);
  void* r = mmap(buf.Data(), it->second.len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  if (r == MAP_FAILED) return Int(env, -errno);
  it->second.released = true;
  return Int(env, 0);
}

// ---- poll watches ----

// UV_READABLE / UV_DISCONNECT (POLLIN / POLLHUP, POLLERR) readiness of an
// fd, reported to a JS callback on the loop until stopped, with whether the
// loop slept (blocked in its poll phase) since the watch's previous event:
// when it did not, the level-triggered poll found the fd ready again at once,
// so more than one message was queued (a burst). Node runs its loop with
// UV_METRICS_IDLE_TIME, which is what tells; without it, every event after
// the first counts as not slept.
class PollWatch {
 public:
  static PollWatch* Start(Napi::Env env, int fd, Napi::Function cb, int* err) {
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
      *err = -EIO;
      return nullptr;
    }
    auto* w = new PollWatch(env, cb);
    int r = uv_poll_init(loop, &w->poll_, fd);
    if (r != 0) {
      delete w;  // never registered with the loop
      *err = r;  // libuv errors are -errno on Linux
      return nullptr;
    }
    w->poll_.data = w;
    w->loop_ = loop;
    r = uv_poll_start(&w->poll_, UV_READABLE | UV_DISCONNECT, OnPoll);
    if (r != 0) {
      w->Stop();
      *err = r;
      return nullptr;
    }
    return w;
  }

  void Stop() {
    if (stopped_) return;
    stopped_ = true;
    cb_.Reset();
    uv_close(reinterpret_cast<uv_handle_t*>(&poll_), [](uv_handle_t* h) { delete static_cast<PollWatch*>(h->data); });
  }

  // Events off or on again, the same handle: a new one would cost a poll of
  // the fd at uv_poll_init (libuv checks the fd can be watched) besides the
  // one its registration makes, and on a kdbusfs file every poll is a FUSE
  // request. Off takes the fd out of the loop's epoll set; on puts it back at
  // the loop's next poll phase (one poll of the fd).
  int SetActive(bool on) {
    if (stopped_) return -EBADF;
    return on ? uv_poll_start(&poll_, UV_READABLE | UV_DISCONNECT, OnPoll) : uv_poll_stop(&poll_);
  }

 private:
  PollWatch(Napi::Env env, Napi::Function cb)
      : env_(env), cb_(Napi::Persistent(cb)), context_(env, "kdbusfs:client-poll") {}

  static void OnPoll(uv_poll_t* handle, int status, int events) {
    auto* w = static_cast<PollWatch*>(handle->data);
    if (w->stopped_) return;
    Napi::Env env = w->env_;
    Napi::HandleScope scope(env);
    uint64_t idle = uv_metrics_idle_time(w->loop_);
    bool slept = w->first_ || idle != w->idle_;
    w->first_ = false;
    w->idle_ = idle;
    // MakeCallback: promise continuations queued by the callback run right after it.
    w->cb_.MakeCallback(env.Global(), {Int(env, status), Int(env, events), Napi::Boolean::New(env, slept)}, w->context_);
    if (env.IsExceptionPending()) {
      // The callback's own throw: an uncaught exception of the process, as for any event.
      Napi::Error e = env.GetAndClearPendingException();
      napi_fatal_exception(env, e.Value());
    }
  }

  Napi::Env env_;
  Napi::FunctionReference cb_;
  Napi::AsyncContext context_;
  uv_poll_t poll_;
  uv_loop_t* loop_ = nullptr;
  uint64_t idle_ = 0;
  bool first_ = true;
  bool stopped_ = false;
};

struct WatchHandle {
  PollWatch* watch;
};

// pollStart(fd, cb(status, events, slept)): a handle, or -errno. The watch keeps
// the loop alive until pollStop (or the handle is collected).
Napi::Value PollStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !IsFd(info[0]) || !info[1].IsFunction()) {
    return TypeError(env, "pollStart(fd: number, cb: (status, events, slept) => void)");
  }
  int err = 0;
  PollWatch* w = PollWatch::Start(env, info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Function>(), &err);
  if (!w) return Int(env, err);
  return Napi::External<WatchHandle>::New(env, new WatchHandle{w}, [](Napi::Env, WatchHandle* h) {
    if (h->watch) h->watch->Stop();
    delete h;
  });
}

Napi::Value PollStop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsExternal()) return TypeError(env, "pollStop(handle)");
  auto* h = info[0].As<Napi::External<WatchHandle>>().Data();
  if (h->watch) h->watch->Stop();
  h->watch = nullptr;
  return env.Undefined();
}

// pollActive(handle, on): the watch's events off (false) or on again (true), 0 or -errno.
Napi::Value PollActive(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsExternal() || !info[1].IsBoolean()) return TypeError(env, "pollActive(handle, on: boolean)");
  auto* h = info[0].As<Napi::External<WatchHandle>>().Data();
  if (!h->watch) return Int(env, -EBADF);
  return Int(env, h->watch->SetActive(info[1].As<Napi::Boolean>().Value()));
}

// ---- memfds ----

// memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING): fd or -errno.
Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  return WithString(info, "memfdCreate(name: string)",
                    [](const char* name) { return memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING); });
}

// fcntl(fd, F_ADD_SEALS, seals): 0 or -errno.
Napi::Value AddSeals(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !IsFd(info[0]) || !info[1].IsNumber()) return TypeError(env, "addSeals(fd: number, seals: number)");
  return Result(env, fcntl(info[0].As<Napi::Number>().Int32Value(), F_ADD_SEALS, info[1].As<Napi::Number>().Int32Value()));
}

// fcntl(fd, F_GET_SEALS): the seals or -errno.
Napi::Value GetSeals(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !IsFd(info[0])) return TypeError(env, "getSeals(fd: number)");
  return Result(env, fcntl(info[0].As<Napi::Number>().Int32Value(), F_GET_SEALS));
}

}  // namespace

void RegisterClient(Napi::Env env, Napi::Object exports) {
  exports.Set("client", napifn::Table(env, {
      {"open", Open}, {"close", Close}, {"ioctl", Ioctl}, {"address", Address}, {"mmap", Mmap},
      {"munmap", Munmap}, {"pollStart", PollStart}, {"pollStop", PollStop}, {"pollActive", PollActive},
      {"memfdCreate", MemfdCreate}, {"addSeals", AddSeals}, {"getSeals", GetSeals}
  }));
}
