// Readability watches on fds the server holds (a synchronous call's
// CANCEL_FD), on Node's event loop: one uv_poll_t each, one JS callback.
#pragma once
#include <napi.h>
#include <uv.h>

class FdWatch {
 public:
  // Starts watching fd; cb runs once, on the loop thread, when fd is readable
  // (or in error). Returns nullptr and sets *err (a negative errno) on failure.
  static FdWatch* Start(Napi::Env env, int fd, Napi::Function cb, int* err);
  // Stops the watch and frees it (also after it fired).
  void Stop();

 private:
  FdWatch(Napi::Env env, Napi::Function cb);
  static void OnPoll(uv_poll_t* handle, int status, int events);

  Napi::Env env_;
  Napi::FunctionReference cb_;
  uv_poll_t poll_;
  bool stopped_ = false;
};
