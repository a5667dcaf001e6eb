// One FUSE session: the mount, the /dev/fuse request loop on Node's event
// loop, and the dispatch of each request to the tree, the pools or JS.
#pragma once

#include <napi.h>
#include <uv.h>

#include <linux/fuse.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "fairqueue.h"
#include "fastpath.h"
#include "mount.h"
#include "pool.h"
#include "stallrescue.h"
#include "tree.h"

class Session {
 public:
  // Mounts and starts serving. On failure returns nullptr, *err says why and
  // *error is the system's -errno (0: a bug of the caller, such as a handler
  // object that throws).
  static Session* Mount(Napi::Env env, const MountParams& params, bool passthrough,
                        Napi::Object handlers, std::string* err, int* error);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Detaches the mount and stops serving (idempotent). The object must then be
  // given to Dispose(), which deletes it now or once the current dispatch ends.
  void Unmount();
  static void Dispose(Session* s);

  Tree& tree() { return tree_; }
  uint32_t protoMinor() const { return protoMinor_; }
  // The mount's device ((major << 20) | minor, as procmem::DevNumber), 0 if unknown:
  // the same in every mount namespace and bind mount, so files of this mount are
  // recognized wherever a client opened them.
  uint64_t dev() const { return dev_; }
  bool passthrough() const { return passthrough_; }

  // Answers a parked ioctl. out (a success only): bytes the kernel copies to
  // the start of the caller's argument, at most the ioctl's _IOC_SIZE.
  bool ReplyIoctl(uint64_t unique, int result, const uint8_t* out = nullptr, size_t outLen = 0);
  void NotifyPoll(uint64_t kh);

  // Requests answered without JS (fastpath.h); pending: JS's Int32Array of 2, kept alive here.
  fastpath::FastPath& fast() { return fast_; }
  void KeepFastPending(Napi::Int32Array pending) { fastPending_ = Napi::Persistent(pending); }

  // The pool of an open file, or nullptr.
  Pool* FindPool(uint64_t fh);
  int PoolSetup(uint64_t fh, uint64_t size);
  void PoolFlush(uint64_t fh, uint64_t off, uint64_t len);

 private:
  struct OpenFile {
    uint64_t nodeid = 0;
    int flags = 0;  // what handlers.open returned
    std::unique_ptr<Pool> pool;
  };
  struct Caller {
    uint32_t tid, uid, gid;
  };
  enum Handler { kOpen, kRelease, kIoctl, kPoll, kInterrupt, kRead, kWrite, kDestroyed, kHandlerCount };

  Session(Napi::Env env, const MountParams& params, bool passthrough);

  static void OnPoll(uv_poll_t* handle, int status, int events);
  void Serve();
  // Reads what /dev/fuse and the rescue hold into waiting_; false once the
  // session ended.
  bool ReadWaiting();
  // A READ of a pool file (a client's page fault) is served as soon as it is
  // read, never queued: the faulting task holds that page's lock until it is
  // answered, and the next request served may need the same lock (a
  // NOTIFY_STORE of a message into that page, a client pointer into it read
  // with process_vm_readv) and would wait on it forever, with the READ queued
  // behind it where the stall rescue cannot see it. It costs one pread of the
  // pool's memfd and touches no bus state.
  bool IsPoolRead(const uint8_t* req, size_t len) const;
  // One request, read from /dev/fuse or by the rescue: checked, then dispatched.
  void HandleRequest(const uint8_t* req, size_t len);
  static void OnRescued(void* session);
  void Dispatch(const fuse_in_header& h, const uint8_t* body, size_t len);
  void End();
  void StopServing();

  int Reply(uint64_t unique, int error, const void* data = nullptr, size_t len = 0);
  int ReplyV(uint64_t unique, int error, const iovec* iov, int n);

  // Calls a JS handler. Returns false if the handler is missing or threw (the
  // exception is logged and cleared); *result is its return value otherwise.
  bool Call(Handler h, std::initializer_list<napi_value> args, Napi::Value* result);
  Napi::Object CallerObject(const Caller& c);
  static int ToErrno(int v);

  void OnInit(const fuse_in_header& h, const uint8_t* p, size_t n);
  void OnLookup(const fuse_in_header& h, const uint8_t* p, size_t n);
  void OnForget(const fuse_in_header& h, const uint8_t* p, size_t n);
  void OnBatchForget(const fuse_in_header& h, const uint8_t* p, size_t n);
  void OnGetAttr(const fuse_in_header& h);
  void OnOpenDir(const fuse_in_header& h);
  void OnReadDir(const fuse_in_header& h, const uint8_t* p, size_t n);
  void OnReleaseDir(const fuse_in_header& h, const uint8_t* p, size_t n);
  void OnStatFs(const fuse_in_header& h);
  void OnOpen(const fuse_in_header& h, const uint8_t* p, size_t n);
  void OnRelease(const fuse_in_header& h, const uint8_t* p, size_t n);
  void OnRead(const fuse_in_header& h, const uint8_t* p, size_t n);
  void OnWrite(const fuse_in_header& h, const uint8_t* p, size_t n);
  void OnIoctl(const fuse_in_header& h, const uint8_t* p, size_t n);
  void OnPollRequest(const fuse_in_header& h, const uint8_t* p, size_t n);
  void OnInterrupt(const fuse_in_header& h, const uint8_t* p, size_t n);

  void CloseFile(uint64_t fh);

  napi_env env_;
  MountParams params_;
  bool wantPassthrough_;
  bool passthrough_ = false;
  bool passthroughConfirmed_ = false;  // a BACKING_OPEN has succeeded
  uint32_t protoMinor_ = 0;
  uint64_t dev_ = 0;
  int fd_ = -1;
  uv_poll_t* poll_ = nullptr;
  uv_idle_t* more_ = nullptr;  // runs Serve again while waiting_ holds requests
  Watchdog watchdog_;
  bool ended_ = false;     // the kernel ended the session
  bool unmounted_ = false;
  int dispatching_ = 0;
  bool disposeLater_ = false;

  Napi::ObjectReference handlers_;
  Napi::FunctionReference fns_[kHandlerCount];
  std::unique_ptr<Napi::AsyncContext> async_;

  Tree tree_;
  uint64_t nextFh_ = 1;
  std::unordered_map<uint64_t, OpenFile> files_;
  std::unordered_map<uint64_t, std::vector<DirEntry>> dirs_;
  std::unordered_map<uint64_t, Caller> parked_;  // unanswered ioctls by unique
  StallRescue rescue_;  // reads for this thread while it waits on its own mount
  std::vector<uint8_t> in_;
  FairQueue waiting_;  // read, not yet served
  std::vector<uint8_t> out_;
  fastpath::FastPath fast_;
  Napi::Reference<Napi::Int32Array> fastPending_;
};
