#include "fdwatch.h"

FdWatch::FdWatch(Napi::Env env, Napi::Function cb) : env_(env), cb_(Napi::Persistent(cb)) {}

FdWatch* FdWatch::Start(Napi::Env env, int fd, Napi::Function cb, int* err) {
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
    *err = -EIO;
    return nullptr;
  }
  FdWatch* w = new FdWatch(env, cb);
  int r = uv_poll_init(loop, &w->poll_, fd);
  if (r != 0) {  // never registered with the loop: nothing to close
    delete w;
    *err = r;  // libuv errors are negative errnos on Linux
    return nullptr;
  }
  w->poll_.data = w;
  r = uv_poll_start(&w->poll_, UV_READABLE, OnPoll);
  if (r != 0) {
    w->Stop();
    *err = r;
    return nullptr;
  }
  return w;
}

void FdWatch::OnPoll(uv_poll_t* handle, int status, int events) {
  FdWatch* w = static_cast<FdWatch*>(handle->data);
  if (w->stopped_) return;
  uv_poll_stop(handle);
  Napi::HandleScope scope(w->env_);
  // A throw in the callback is the JS side's bug: report it, never unwind into libuv.
  w->cb_.Call({});
  if (w->env_.IsExceptionPending()) {
    Napi::Error e = w->env_.GetAndClearPendingException();
    fprintf(stderr, "kdbusfs: fd watch callback threw: %s\n", e.Message().c_str());
  }
}

void FdWatch::Stop() {
  if (stopped_) return;
  stopped_ = true;
  cb_.Reset();
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_),
           [](uv_handle_t* h) { delete static_cast<FdWatch*>(h->data); });
}
