// The JS surface (lib/fuse/native.ts): argument checking and conversion only.
#include <napi.h>
#include <malloc.h>
#include <v8.h>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "fdcloser.h"
#include "client.h"
#include "fdinstall.h"
#include "fdwatch.h"
#include "mount.h"
#include "memtask.h"
#include "procmem.h"
#include "session.h"
#include "unixsend.h"
#include "unixpeer.h"

namespace {

constexpr double kMaxSafe = 9007199254740991.0;  // 2^53 - 1
constexpr uint64_t kMaxMemRead = 1ULL << 30;
// memReadMessage: a message's head and the vectors staged with it, at most.
constexpr size_t kMessageStage = 64 * 1024;

const char* ErrnoName(int e) {
  switch (e) {
    case ENOENT: return "ENOENT";
    case EEXIST: return "EEXIST";
    case ENOTDIR: return "ENOTDIR";
    case EINVAL: return "EINVAL";
    case EPERM: return "EPERM";
    default: return "EIO";
  }
}

// Tree names are bytes, as kdbus names are (a bus may be "1000-bus\xE9"): JS
// passes them as byte strings, one char per byte. Not napi's latin1 read,
// which would silently truncate a char above 0xFF; such a name is refused.
bool NameBytes(const Napi::String& s, std::string* out) {
  std::u16string chars = s.Utf16Value();
  out->clear();
  out->reserve(chars.size());
  for (char16_t c : chars) {
    if (c > 0xFF) return false;
    out->push_back(static_cast<char>(c));
  }
  return true;
}

// A name for a message: printable ASCII as is, every other byte as \xNN.
std::string Shown(const std::string& name) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : name) {
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    }
  }
  return out;
}

class Addon : public Napi::Addon<Addon> {
 public:
  Addon(Napi::Env env, Napi::Object exports) {
    DefineAddon(exports, {
        InstanceMethod("sessionMount", &Addon::SessionMount),
        InstanceMethod("lastMountError", &Addon::LastMountError),
        InstanceMethod("sessionInfo", &Addon::SessionInfo),
        InstanceMethod("sessionUnmount", &Addon::SessionUnmount),
        InstanceMethod("clearStaleMount", &Addon::ClearStale),
        InstanceMethod("execSelf", &Addon::ExecSelf),
        InstanceMethod("nodeAdd", &Addon::NodeAdd),
        InstanceMethod("nodeRemove", &Addon::NodeRemove),
        InstanceMethod("replyIoctl", &Addon::ReplyIoctl),
        InstanceMethod("notifyPoll", &Addon::NotifyPoll),
        InstanceMethod("fastEnable", &Addon::FastEnable),
        InstanceMethod("fastState", &Addon::FastState),
        InstanceMethod("fastForget", &Addon::FastForget),
        InstanceMethod("fastFreeable", &Addon::FastFreeable),
        InstanceMethod("fastWake", &Addon::FastWake),
        InstanceMethod("fastTake", &Addon::FastTake),
        InstanceMethod("fastPollers", &Addon::FastPollers),
        InstanceMethod("memRead", &Addon::MemRead),
        InstanceMethod("memWrite", &Addon::MemWrite),
        InstanceMethod("memReadMessage", &Addon::MemReadMessage),
        InstanceMethod("poolSetup", &Addon::PoolSetup),
        InstanceMethod("poolWrite", &Addon::PoolWrite),
        InstanceMethod("poolCopyFromProcess", &Addon::PoolCopyFromProcess),
        InstanceMethod("poolFlush", &Addon::PoolFlush),
        InstanceMethod("takeFd", &Addon::TakeFd),
        InstanceMethod("fdStat", &Addon::FdStat),
        InstanceMethod("closeFd", &Addon::CloseFd),
        InstanceMethod("watchFd", &Addon::WatchFd),
        InstanceMethod("unwatchFd", &Addon::UnwatchFd),
        InstanceMethod("fdInstall", &Addon::FdInstall),
        InstanceMethod("releaseFds", &Addon::ReleaseFds),
        InstanceMethod("sendDontWait", &Addon::SendDontWaitOn),
        InstanceMethod("datagramSend", &Addon::DatagramSendTo),
        InstanceMethod("raiseFdLimit", &Addon::RaiseFdLimit),
        InstanceMethod("giveBackMemory", &Addon::GiveBackMemory),
    });
    RegisterClient(env, exports);
    RegisterUnixPeer(env, exports);
    installer_ = std::make_unique<FdInstaller>(env, &closer_, [this](uint64_t sid, uint64_t unique, int result) {
      auto it = sessions_.find(sid);
      return it != sessions_.end() && it->second->ReplyIoctl(unique, result);
    });
  }

  // Environment teardown: take the mounts down; JS is no longer callable, so
  // the session objects themselves are left to process exit.
  ~Addon() {
    for (auto& s : sessions_) s.second->Unmount();
    // After the sessions: their end releases threads the installer waits for.
    installer_.reset();
  }

 private:
  std::map<uint64_t, Session*> sessions_;
  Napi::Reference<Napi::Array> fdStatKeys_;  // FdStat's result's keys
  uint64_t nextSid_ = 1;
  /** why the last sessionMount failed (its -errno says what), for lastMountError */
  std::string mountError_;
  std::map<uint64_t, FdWatch*> watches_;
  uint64_t nextWatch_ = 1;
  // before the installer, which closes its copies through it
  FdCloser closer_;
  std::unique_ptr<FdInstaller> installer_;
  // memReadMessage's staging room (the loop thread's: one read at a time)
  std::unique_ptr<uint8_t[]> stage_;

  static Napi::Value Fail(Napi::Env env, const std::string& msg) {
    Napi::Error::New(env, msg).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  static Napi::Value FailType(Napi::Env env, const std::string& msg) {
    Napi::TypeError::New(env, msg).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  static Napi::Value FailRange(Napi::Env env, const std::string& msg) {
    Napi::RangeError::New(env, msg).ThrowAsJavaScriptException();
    return env.Undefined();
  }

  // An integer argument in [lo, hi]. Throws (and returns false) otherwise, the
  // range named as `what`.
  static bool Integer(const Napi::CallbackInfo& info, size_t i, const char* name, double lo, double hi,
                      const char* what, double* out) {
    Napi::Value v = info[i];
    if (!v.IsNumber()) {
      FailType(info.Env(), std::string("kdbusfs: ") + name + " must be a number");
      return false;
    }
    double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= lo && d <= hi && d == std::floor(d))) {
      FailRange(info.Env(), std::string("kdbusfs: ") + name + " must be " + what);
      return false;
    }
    *out = d;
    return true;
  }

  // A non-negative safe integer argument.
  static bool U64(const Napi::CallbackInfo& info, size_t i, const char* name, uint64_t* out) {
    double d;
    if (!Integer(info, i, name, 0, kMaxSafe, "a non-negative integer", &d)) return false;
    *out = static_cast<uint64_t>(d);
    return true;
  }

  static bool I32(const Napi::CallbackInfo& info, size_t i, const char* name, int32_t* out) {
    double d;
    if (!Integer(info, i, name, INT32_MIN, INT32_MAX, "an int32", &d)) return false;
    *out = static_cast<int32_t>(d);
    return true;
  }

  // Where the mem* calls read or write: a task's memory at an address, their first two arguments.
  struct TaskAddress {
    int32_t tid;
    uint64_t addr;
  };
  static bool Address(const Napi::CallbackInfo& info, TaskAddress* at) {
    return I32(info, 0, "tid", &at->tid) && U64(info, 1, "addr", &at->addr);
  }

  static bool Bytes(const Napi::CallbackInfo& info, size_t i, const uint8_t** data, size_t* len) {
    Napi::Value v = info[i];
    if (v.IsTypedArray()) {
      Napi::TypedArray ta = v.As<Napi::TypedArray>();
      *data = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
      *len = ta.ByteLength();
      return true;
    }
    if (v.IsDataView()) {
      Napi::DataView dv = v.As<Napi::DataView>();
      *data = static_cast<const uint8_t*>(dv.ArrayBuffer().Data()) + dv.ByteOffset();
      *len = dv.ByteLength();
      return true;
    }
    if (v.IsArrayBuffer()) {
      Napi::ArrayBuffer ab = v.As<Napi::ArrayBuffer>();
      *data = static_cast<const uint8_t*>(ab.Data());
      *len = ab.ByteLength();
      return true;
    }
    FailType(info.Env(), "kdbusfs: data must be a Buffer");
    return false;
  }

  Session* Find(const Napi::CallbackInfo& info, bool quiet = false) {
    uint64_t sid;
    if (!U64(info, 0, "session id", &sid)) return nullptr;
    auto it = sessions_.find(sid);
    if (it != sessions_.end()) return it->second;
    if (!quiet) Fail(info.Env(), "kdbusfs: no session " + std::to_string(sid));
    return nullptr;
  }

  // The pool of fh, checked to exist and to hold [off, off+len).
  Pool* FindPool(const Napi::CallbackInfo& info, Session* s, uint64_t fh, uint64_t off,
                 uint64_t len) {
    Pool* p = s->FindPool(fh);
    if (!p || !p->ready()) {
      Fail(info.Env(), "kdbusfs: fh " + std::to_string(fh) + " has no pool set up");
      return nullptr;
    }
    if (!p->InBounds(off, len)) {
      FailRange(info.Env(), "kdbusfs: [" + std::to_string(off) + ", +" + std::to_string(len) +
                                ") is outside the pool of fh " + std::to_string(fh) + " (" +
                                std::to_string(p->size()) + " bytes)");
      return nullptr;
    }
    return p;
  }

  static bool OptString(Napi::Object o, const char* key, const std::string& def, std::string* out) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined()) {
      *out = def;
      return true;
    }
    if (!v.IsString()) {
      FailType(o.Env(), std::string("kdbusfs: option ") + key + " must be a string");
      return false;
    }
    *out = v.As<Napi::String>().Utf8Value();
    return true;
  }

  static bool OptU32(Napi::Object o, const char* key, uint32_t def, uint32_t* out) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined()) {
      *out = def;
      return true;
    }
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0 && d <= UINT32_MAX && d == std::floor(d))) {
      FailType(o.Env(), std::string("kdbusfs: option ") + key + " must be a uint32");
      return false;
    }
    *out = static_cast<uint32_t>(d);
    return true;
  }

  static bool OptBool(Napi::Object o, const char* key, bool def) {
    Napi::Value v = o.Get(key);
    return v.IsUndefined() ? def : v.ToBoolean().Value();
  }

  Napi::Value SessionMount(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject() || !info[1].IsObject())
      return FailType(env, "kdbusfs: sessionMount(options, handlers)");
    Napi::Object o = info[0].As<Napi::Object>();
    MountParams p;
    std::string mp;
    if (!OptString(o, "mountpoint", "", &mp) || !OptString(o, "fsname", "kdbusfs", &p.fsname) ||
        !OptString(o, "subtype", "kdbusfs", &p.subtype) ||
        !OptU32(o, "rootMode", 0755, &p.rootMode) || !OptU32(o, "rootUid", 0, &p.rootUid) ||
        !OptU32(o, "rootGid", 0, &p.rootGid))
      return env.Undefined();
    if (mp.empty()) return FailType(env, "kdbusfs: option mountpoint is required");
    // The watchdog and unmount must name the mount the same way /proc does.
    char* real = realpath(mp.c_str(), nullptr);
    if (!real) {
      int e = errno;
      mountError_ = "kdbusfs: mount point " + mp + ": " + strerror(e) +
                    (e == ENOTCONN ? " (a dead mount: clear it first)" : "");
      return Napi::Number::New(env, -e);
    }
    p.mountpoint = real;
    free(real);
    p.allowOther = OptBool(o, "allowOther", false);
    p.defaultPermissions = OptBool(o, "defaultPermissions", false);
    bool passthrough = OptBool(o, "passthrough", true);
    if (env.IsExceptionPending()) return env.Undefined();
    std::string err;
    int error;
    Session* s = Session::Mount(env, p, passthrough, info[1].As<Napi::Object>(), &err, &error);
    if (!s && !error) return Fail(env, err);
    if (!s) {
      mountError_ = err;
      return Napi::Number::New(env, error);
    }
    uint64_t sid = nextSid_++;
    sessions_[sid] = s;
    return Napi::Number::New(env, static_cast<double>(sid));
  }

  Napi::Value LastMountError(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), mountError_);
  }

  Napi::Value SessionInfo(const Napi::CallbackInfo& info) {
    Session* s = Find(info);
    if (!s) return info.Env().Undefined();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("protoMinor", Napi::Number::New(info.Env(), s->protoMinor()));
    o.Set("passthrough", Napi::Boolean::New(info.Env(), s->passthrough()));
    o.Set("dev", Napi::Number::New(info.Env(), static_cast<double>(s->dev())));
    return o;
  }

  Napi::Value SessionUnmount(const Napi::CallbackInfo& info) {
    Session* s = Find(info, true);
    if (!s) return info.Env().Undefined();
    uint64_t sid = static_cast<uint64_t>(info[0].As<Napi::Number>().DoubleValue());
    sessions_.erase(sid);
    s->Unmount();
    Session::Dispose(s);
    return info.Env().Undefined();
  }

  Napi::Value ClearStale(const Napi::CallbackInfo& info) {
    if (!info[0].IsString()) return FailType(info.Env(), "kdbusfs: clearStaleMount(dir)");
    return Napi::Boolean::New(info.Env(), ClearStaleMount(info[0].As<Napi::String>().Utf8Value()));
  }

  // execv(2) of path with argv: this process becomes it, with its pid and
  // stdio (Node's other fds are close-on-exec). Returns -errno, only on failure.
  Napi::Value ExecSelf(const Napi::CallbackInfo& info) {
    if (!info[0].IsString() || !info[1].IsArray()) return FailType(info.Env(), "kdbusfs: execSelf(path, argv)");
    std::string path = info[0].As<Napi::String>().Utf8Value();
    Napi::Array arr = info[1].As<Napi::Array>();
    std::vector<std::string> args;
    for (uint32_t i = 0; i < arr.Length(); i++) {
      Napi::Value v = arr.Get(i);
      if (!v.IsString()) return FailType(info.Env(), "kdbusfs: execSelf: argv must be strings");
      args.push_back(v.As<Napi::String>().Utf8Value());
    }
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    // stdio must survive the exec (Node may have marked it close-on-exec).
    for (int fd = 0; fd <= 2; fd++) {
      int flags = fcntl(fd, F_GETFD);
      if (flags >= 0 && (flags & FD_CLOEXEC)) fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC);
    }
    // The new image inherits the signal mask: it must start with none blocked.
    sigset_t none, old;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, &old);
    execv(path.c_str(), argv.data());
    int e = errno;
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    return Napi::Number::New(info.Env(), -e);
  }

  Napi::Value NodeAdd(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Session* s = Find(info);
    uint64_t parent, mode, uid, gid;
    if (!s || !U64(info, 1, "parent", &parent)) return env.Undefined();
    if (!info[2].IsString()) return FailType(env, "kdbusfs: name must be a string");
    if (!U64(info, 4, "mode", &mode) || !U64(info, 5, "uid", &uid) || !U64(info, 6, "gid", &gid))
      return env.Undefined();
    if (!info[7].IsNumber()) return FailType(env, "kdbusfs: tag must be a number");
    std::string name;
    if (!NameBytes(info[2].As<Napi::String>(), &name))
      return FailType(env, "kdbusfs: name must be a byte string (no char above U+00FF)");
    int64_t r = s->tree().Add(parent, name, info[3].ToBoolean().Value(), static_cast<uint32_t>(mode),
                              static_cast<uint32_t>(uid), static_cast<uint32_t>(gid),
                              info[7].As<Napi::Number>().DoubleValue());
    if (r < 0) {
      int e = static_cast<int>(-r);
      Napi::Error err = Napi::Error::New(env, "kdbusfs: nodeAdd(" + std::to_string(parent) + ", '" +
                                                  Shown(name) + "'): " + strerror(e));
      err.Set("code", Napi::String::New(env, ErrnoName(e)));
      err.ThrowAsJavaScriptException();
      return env.Undefined();
    }
    return Napi::Number::New(env, static_cast<double>(r));
  }

  Napi::Value NodeRemove(const Napi::CallbackInfo& info) {
    Session* s = Find(info);
    uint64_t ino;
    if (!s || !U64(info, 1, "ino", &ino)) return info.Env().Undefined();
    // Removing what is already gone is a no-op; only the root is refused.
    if (s->tree().Remove(ino) == -EPERM) return Fail(info.Env(), "kdbusfs: the root cannot be removed");
    return info.Env().Undefined();
  }

  Napi::Value ReplyIoctl(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t unique;
    int32_t result;
    if (!U64(info, 1, "unique", &unique) || !I32(info, 2, "result", &result)) return env.Undefined();
    const uint8_t* out = nullptr;
    size_t outLen = 0;
    if (info.Length() > 3 && !info[3].IsUndefined() && !Bytes(info, 3, &out, &outLen)) return env.Undefined();
    // A session that is gone has no parked requests left: nothing to answer.
    Session* s = Find(info, true);
    if (env.IsExceptionPending()) return env.Undefined();
    return Napi::Boolean::New(env, s && s->ReplyIoctl(unique, result, out, outLen));
  }

  Napi::Value NotifyPoll(const Napi::CallbackInfo& info) {
    uint64_t kh;
    if (!U64(info, 1, "kh", &kh)) return info.Env().Undefined();
    Session* s = Find(info, true);
    if (s) s->NotifyPoll(kh);
    return info.Env().Undefined();
  }

  // The fast path (native/fastpath.h), fed by lib/fast-state.ts.
  Napi::Value FastEnable(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Session* s = Find(info);
    if (!s) return env.Undefined();
    if (!info[1].IsArray() || !info[2].IsTypedArray() ||
        info[2].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
        info[2].As<Napi::TypedArray>().ElementLength() < 2) {
      FailType(env, "kdbusfs: fastEnable(sid, rows, Int32Array(2))");
      return env.Undefined();
    }
    Napi::Array rows = info[1].As<Napi::Array>();
    std::unordered_map<uint32_t, fastpath::Command> table;
    for (uint32_t i = 0; i < rows.Length(); i++) {
      Napi::Object r = rows.Get(i).As<Napi::Object>();
      auto num = [&](const char* k) { return r.Get(k).ToNumber().Int64Value(); };
      fastpath::Command c;
      bool lossless;
      c.on = static_cast<uint32_t>(num("on"));
      c.privileged = r.Get("privileged").ToBoolean();
      c.conns = static_cast<uint32_t>(num("conns"));
      c.min = static_cast<uint64_t>(num("min"));
      c.max = static_cast<uint64_t>(num("max"));
      c.valid = r.Get("valid").As<Napi::BigInt>().Uint64Value(&lossless);
      c.flagsOff = static_cast<uint32_t>(num("flagsOff"));
      c.kernelFlagsOff = static_cast<uint32_t>(num("kernelFlagsOff"));
      c.returnFlagsOff = static_cast<uint32_t>(num("returnFlagsOff"));
      c.returnFirst = r.Get("returnFirst").ToBoolean();
      c.returnDone = r.Get("returnDone").ToBoolean();
      c.fast = static_cast<fastpath::Command::Fast>(num("fast"));
      if (env.IsExceptionPending()) return env.Undefined();
      table[static_cast<uint32_t>(num("cmd"))] = c;
    }
    Napi::Int32Array pending = info[2].As<Napi::Int32Array>();
    s->KeepFastPending(pending);
    s->fast().Enable(std::move(table), pending.Data());
    return env.Undefined();
  }

  Napi::Value FastState(const Napi::CallbackInfo& info) {
    uint64_t fh, state, mask, uid;
    if (!U64(info, 1, "fh", &fh) || !U64(info, 2, "state", &state) || !U64(info, 3, "mask", &mask) ||
        !U64(info, 4, "uid", &uid))
      return info.Env().Undefined();
    Session* s = Find(info, true);
    if (s) s->fast().SetState(fh, static_cast<uint32_t>(state), static_cast<uint32_t>(mask), static_cast<uint32_t>(uid));
    return info.Env().Undefined();
  }

  Napi::Value FastForget(const Napi::CallbackInfo& info) {
    uint64_t fh;
    if (!U64(info, 1, "fh", &fh)) return info.Env().Undefined();
    Session* s = Find(info, true);
    if (s) s->fast().Forget(fh);
    return info.Env().Undefined();
  }

  Napi::Value FastFreeable(const Napi::CallbackInfo& info) {
    uint64_t fh, off;
    if (!U64(info, 1, "fh", &fh) || !U64(info, 2, "offset", &off)) return info.Env().Undefined();
    Session* s = Find(info, true);
    if (s) s->fast().SetFreeable(fh, off, info[3].ToBoolean());
    return info.Env().Undefined();
  }

  Napi::Value FastWake(const Napi::CallbackInfo& info) {
    uint64_t fh, kh;
    if (!U64(info, 1, "fh", &fh)) return info.Env().Undefined();
    Session* s = Find(info, true);
    if (s && s->fast().Wake(fh, &kh)) s->NotifyPoll(kh);
    return info.Env().Undefined();
  }

  // {frees: [fh, offset, ...], refusals: [{uid, cmd, tid, errno, reason, flags, count}]}
  Napi::Value FastTake(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Session* s = Find(info, true);
    Napi::Object out = Napi::Object::New(env);
    Napi::Array frees = Napi::Array::New(env);
    Napi::Array refusals = Napi::Array::New(env);
    out.Set("frees", frees);
    out.Set("refusals", refusals);
    if (!s) return out;
    uint32_t i = 0;
    for (const fastpath::Free& f : s->fast().TakeFrees()) {
      frees.Set(i++, Napi::Number::New(env, static_cast<double>(f.fh)));
      frees.Set(i++, Napi::Number::New(env, static_cast<double>(f.off)));
    }
    i = 0;
    for (const fastpath::Refusal& r : s->fast().TakeRefusals()) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("uid", Napi::Number::New(env, r.uid));
      o.Set("cmd", Napi::Number::New(env, r.cmd));
      o.Set("tid", Napi::Number::New(env, r.tid));
      o.Set("errno", Napi::Number::New(env, r.errnum));
      o.Set("reason", Napi::Number::New(env, r.reason));
      o.Set("flags", Napi::BigInt::New(env, r.flags));
      o.Set("count", Napi::Number::New(env, static_cast<double>(r.count)));
      refusals.Set(i++, o);
    }
    return out;
  }

  Napi::Value FastPollers(const Napi::CallbackInfo& info) {
    Session* s = Find(info, true);
    return Napi::Number::New(info.Env(), s ? static_cast<double>(s->fast().pollers()) : 0);
  }

  Napi::Value MemRead(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    TaskAddress at;
    uint64_t len;
    if (!Address(info, &at) || !U64(info, 2, "len", &len)) return env.Undefined();
    if (len > kMaxMemRead) return Napi::Number::New(env, -ENOMEM);
    Napi::Buffer<uint8_t> buf = Napi::Buffer<uint8_t>::New(env, len);
    int e = memtask::Read(at.tid, at.addr, buf.Data(), len);
    if (e) return Napi::Number::New(env, e);
    return buf;
  }

  // memReadMessage(tid, addr, first, table): memtask::ReadMessage; table (an
  // Int32Array) gets the count of vectors, then each one's offset in the
  // returned Buffer (or kUnstaged, kFailed).
  Napi::Value MemReadMessage(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    TaskAddress at;
    uint64_t first;
    if (!Address(info, &at) || !U64(info, 2, "first", &first)) return env.Undefined();
    if (!info[3].IsTypedArray() || info[3].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
        info[3].As<Napi::TypedArray>().ElementLength() < 1 + memtask::kMaxStagedVecs) {
      FailType(env, "kdbusfs: table must be an Int32Array of 1 + kMaxStagedVecs");
      return env.Undefined();
    }
    if (first == 0 || first > kMessageStage) {
      FailRange(env, "kdbusfs: first out of range");
      return env.Undefined();
    }
    Napi::Int32Array table = info[3].As<Napi::Int32Array>();
    if (!stage_) stage_.reset(new uint8_t[kMessageStage]);
    memtask::StagedVec vecs[memtask::kMaxStagedVecs];
    int n = 0;
    size_t used = 0;
    int e = memtask::ReadMessage(at.tid, at.addr, first, stage_.get(), kMessageStage, vecs, &n, &used);
    table[0] = n;
    for (int i = 0; i < n; i++) table[1 + i] = static_cast<int32_t>(vecs[i].at);
    if (e) return Napi::Number::New(env, e);
    return Napi::Buffer<uint8_t>::Copy(env, stage_.get(), used);
  }

  Napi::Value MemWrite(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    TaskAddress at;
    const uint8_t* data;
    size_t len;
    if (!Address(info, &at) || !Bytes(info, 2, &data, &len)) return env.Undefined();
    return Napi::Number::New(env, memtask::Write(at.tid, at.addr, data, len));
  }

  Napi::Value PoolSetup(const Napi::CallbackInfo& info) {
    Session* s = Find(info);
    uint64_t fh, size;
    if (!s || !U64(info, 1, "fh", &fh) || !U64(info, 2, "size", &size)) return info.Env().Undefined();
    return Napi::Number::New(info.Env(), s->PoolSetup(fh, size));
  }

  Napi::Value PoolWrite(const Napi::CallbackInfo& info) {
    Session* s = Find(info);
    uint64_t fh, off;
    const uint8_t* data;
    size_t len;
    if (!s || !U64(info, 1, "fh", &fh) || !U64(info, 2, "offset", &off) || !Bytes(info, 3, &data, &len))
      return info.Env().Undefined();
    Pool* p = FindPool(info, s, fh, off, len);
    if (!p) return info.Env().Undefined();
    return Napi::Number::New(info.Env(), p->Write(off, data, len));
  }

  Napi::Value PoolCopyFromProcess(const Napi::CallbackInfo& info) {
    Session* s = Find(info);
    uint64_t fh, off, addr, len;
    int32_t tid;
    if (!s || !U64(info, 1, "fh", &fh) || !U64(info, 2, "offset", &off) || !I32(info, 3, "tid", &tid) ||
        !U64(info, 4, "addr", &addr) || !U64(info, 5, "len", &len))
      return info.Env().Undefined();
    Pool* p = FindPool(info, s, fh, off, len);
    if (!p) return info.Env().Undefined();
    return Napi::Number::New(info.Env(), p->CopyFromProcess(off, tid, addr, len));
  }

  Napi::Value PoolFlush(const Napi::CallbackInfo& info) {
    Session* s = Find(info);
    uint64_t fh, off, len;
    if (!s || !U64(info, 1, "fh", &fh) || !U64(info, 2, "offset", &off) || !U64(info, 3, "len", &len))
      return info.Env().Undefined();
    if (FindPool(info, s, fh, off, len)) s->PoolFlush(fh, off, len);
    return info.Env().Undefined();
  }

  // takeFd(tid, fd[, uid]): the copy is uid's (its closes charged to uid; see FdCloser::Own).
  Napi::Value TakeFd(const Napi::CallbackInfo& info) {
    int32_t tid, fd;
    uid_t uid = FdCloser::kNoUid;
    if (!I32(info, 0, "tid", &tid) || !I32(info, 1, "fd", &fd)) return info.Env().Undefined();
    if (info.Length() > 2 && !(info[2].IsNumber() && info[2].As<Napi::Number>().DoubleValue() == -1)) {
      uint64_t u;
      if (!U64(info, 2, "uid", &u)) return info.Env().Undefined();
      if (u > 0xfffffffe) return FailRange(info.Env(), "kdbusfs: uid must be a uid or -1");
      uid = static_cast<uid_t>(u);
    }
    int copy = procmem::TakeFd(tid, fd);
    if (copy >= 0) closer_.Own(copy, uid);
    return Napi::Number::New(info.Env(), copy);
  }

  Napi::Value FdStat(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int32_t fd;
    if (!I32(info, 0, "fd", &fd)) return env.Undefined();
    procmem::FdInfo fi;
    int e = procmem::StatFd(fd, &fi);
    if (e) return Napi::Number::New(env, e);
    bool kdbus = false;
    for (auto& s : sessions_) kdbus = kdbus || (s.second->dev() && s.second->dev() == fi.dev);
    // Once per fd a SEND takes: the keys are made once (a key given as a C
    // string is looked up in V8's string table on every call).
    // (held in an array: Node 20 makes references to objects only)
    if (fdStatKeys_.IsEmpty()) {
      Napi::Array keys = Napi::Array::New(env, 8);
      uint32_t i = 0;
      for (const char* k : {"seals", "size", "mode", "dev", "ino", "pathOnly", "domain", "kdbus"})
        keys.Set(i++, Napi::String::New(env, k));
      fdStatKeys_ = Napi::Persistent(keys);
    }
    Napi::Array keys = fdStatKeys_.Value();
    napi_value values[8] = {
        Napi::Number::New(env, fi.seals), Napi::Number::New(env, static_cast<double>(fi.size)),
        Napi::Number::New(env, fi.mode), Napi::Number::New(env, static_cast<double>(fi.dev)),
        Napi::Number::New(env, static_cast<double>(fi.ino)), Napi::Boolean::New(env, fi.pathOnly),
        Napi::Number::New(env, fi.domain), Napi::Boolean::New(env, kdbus)};
    Napi::Object o = Napi::Object::New(env);
    for (uint32_t i = 0; i < 8; i++) o.Set(keys.Get(i), Napi::Value(env, values[i]));
    return o;
  }

  // Reads an array of int32 fds (>= 0) from argument i.
  static bool FdArray(const Napi::CallbackInfo& info, size_t i, std::vector<int>* out) {
    if (!info[i].IsArray()) {
      FailType(info.Env(), "kdbusfs: fds must be an array of numbers");
      return false;
    }
    Napi::Array a = info[i].As<Napi::Array>();
    for (uint32_t k = 0; k < a.Length(); k++) {
      Napi::Value v = a.Get(k);
      double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
      if (!(d >= 0 && d <= INT32_MAX && d == std::floor(d))) {
        FailRange(info.Env(), "kdbusfs: fds must be non-negative int32s");
        return false;
      }
      out->push_back(static_cast<int>(d));
    }
    return true;
  }

  // fdInstall(sid, unique, tid, fds, done): see lib/fuse/native.ts.
  Napi::Value FdInstall(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t sid, unique;
    int32_t tid;
    std::vector<int> fds;
    if (!U64(info, 0, "session id", &sid) || !U64(info, 1, "unique", &unique) || !I32(info, 2, "tid", &tid) ||
        !FdArray(info, 3, &fds))
      return env.Undefined();
    if (!info[4].IsFunction()) return FailType(env, "kdbusfs: fdInstall needs a callback");
    if (fds.empty() || fds.size() > 1024) return FailRange(env, "kdbusfs: fdInstall takes 1 to 1024 fds");
    if (!sessions_.count(sid)) return Napi::Number::New(env, -ESHUTDOWN);
    return Napi::Number::New(env, installer_->Start(sid, unique, tid, fds, info[4].As<Napi::Function>()));
  }

  // raiseFdLimit(): RLIMIT_NOFILE's soft limit raised to the hard one (Node
  // has no setrlimit); returns the soft limit in force, or -errno.
  Napi::Value RaiseFdLimit(const Napi::CallbackInfo& info) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return Napi::Number::New(info.Env(), -errno);
    if (rl.rlim_cur < rl.rlim_max) {
      rl.rlim_cur = rl.rlim_max;
      if (setrlimit(RLIMIT_NOFILE, &rl) < 0) return Napi::Number::New(info.Env(), -errno);
    }
    return Napi::Number::New(info.Env(), static_cast<double>(std::min<rlim_t>(rl.rlim_cur, INT_MAX)));
  }

  // giveBackMemory(): a full garbage collection, then free heap memory
  // returned to the system. V8 collects only as it allocates, so what a
  // departed client's objects held stays counted (heap and array buffers)
  // on a server that goes quiet; and free()d memory stays in malloc's
  // arenas. Blocks for the collection (milliseconds for a small live heap).
  Napi::Value GiveBackMemory(const Napi::CallbackInfo& info) {
    v8::Isolate::GetCurrent()->LowMemoryNotification();
    malloc_trim(0);
    return info.Env().Undefined();
  }

  // releaseFds(fds): closes them on a helper thread.
  Napi::Value ReleaseFds(const Napi::CallbackInfo& info) {
    std::vector<int> fds;
    if (FdArray(info, 0, &fds)) closer_.CloseLater(std::move(fds));
    return info.Env().Undefined();
  }

  // watchFd(fd, cb): cb() once when fd becomes readable. Returns a watch id or -errno.
  Napi::Value WatchFd(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int32_t fd;
    if (!I32(info, 0, "fd", &fd)) return env.Undefined();
    if (!info[1].IsFunction()) return FailType(env, "kdbusfs: watchFd needs a callback");
    int err = 0;
    FdWatch* w = FdWatch::Start(env, fd, info[1].As<Napi::Function>(), &err);
    if (!w) return Napi::Number::New(env, err);
    uint64_t id = nextWatch_++;
    watches_[id] = w;
    return Napi::Number::New(env, static_cast<double>(id));
  }

  // unwatchFd(id): ends a watch (whether or not it fired). Unknown ids are ignored.
  Napi::Value UnwatchFd(const Napi::CallbackInfo& info) {
    uint64_t id;
    if (!U64(info, 0, "watch id", &id)) return info.Env().Undefined();
    auto it = watches_.find(id);
    if (it != watches_.end()) {
      it->second->Stop();
      watches_.erase(it);
    }
    return info.Env().Undefined();
  }

  // sendDontWait(fd, data): bytes sent or -errno.
  Napi::Value SendDontWaitOn(const Napi::CallbackInfo& info) {
    int32_t fd;
    const uint8_t* data;
    size_t len;
    if (!I32(info, 0, "fd", &fd) || !Bytes(info, 1, &data, &len)) return info.Env().Undefined();
    return Napi::Number::New(info.Env(), static_cast<double>(SendDontWait(fd, data, len)));
  }

  // datagramSend(path, data): 0 or -errno.
  Napi::Value DatagramSendTo(const Napi::CallbackInfo& info) {
    const uint8_t* data;
    size_t len;
    if (!info[0].IsString()) return FailType(info.Env(), "kdbusfs: datagramSend(path, data)");
    if (!Bytes(info, 1, &data, &len)) return info.Env().Undefined();
    return Napi::Number::New(info.Env(), DatagramSend(info[0].As<Napi::String>().Utf8Value(), data, len));
  }

  Napi::Value CloseFd(const Napi::CallbackInfo& info) {
    int32_t fd;
    if (I32(info, 0, "fd", &fd) && fd >= 0) close(fd);
    return info.Env().Undefined();
  }
};

}  // namespace

NODE_API_ADDON(Addon)
