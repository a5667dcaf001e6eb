#include "unixpeer.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "napi-functions.h"
#include "scmrights.h"

namespace {

using napifn::Int;
using napifn::TypeError;

bool IsFd(const Napi::Value& v) { return v.IsNumber() && v.As<Napi::Number>().Int32Value() >= 0; }

// listen(address, backlog): a non-blocking listening SOCK_STREAM socket on a
// path ('@' first: the abstract namespace), or -errno.
Napi::Value Listen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) return TypeError(env, "listen(address: string, backlog: number)");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) return Int(env, -EINVAL);
  memcpy(addr.sun_path, path.data(), path.size());
  bool abstract = path[0] == '@';
  if (abstract) addr.sun_path[0] = '\0';
  socklen_t len = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + path.size() + (abstract ? 0 : 1));
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Int(env, -errno);
  if (bind(fd, reinterpret_cast<struct sockaddr*>(&addr), len) < 0 ||
      listen(fd, info[1].As<Napi::Number>().Int32Value()) < 0) {
    int e = errno;
    close(fd);
    return Int(env, -e);
  }
  return Int(env, fd);
}

// The peer's security label (SO_PEERSEC), empty when the socket has none
// (no LSM: ENOPROTOOPT) or it cannot be read.
std::string PeerLabel(int fd) {
  std::vector<char> label(256);
  for (;;) {
    socklen_t n = static_cast<socklen_t>(label.size());
    if (getsockopt(fd, SOL_SOCKET, SO_PEERSEC, label.data(), &n) == 0) {
      // the kernel may or may not count a terminating NUL
      std::string out(label.data(), n);
      while (!out.empty() && out.back() == '\0') out.pop_back();
      return out;
    }
    if (errno != ERANGE || n <= label.size() || n > 65536) return std::string();
    label.resize(n);
  }
}

// accept(fd): [fd, pid, uid, gid, label] of a new non-blocking connection
// (its SO_PEERCRED and SO_PEERSEC; label '' when there is none), or -errno
// (-EAGAIN when none is waiting).
Napi::Value Accept(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !IsFd(info[0])) return TypeError(env, "accept(fd: number)");
  int fd;
  do {
    fd = accept4(info[0].As<Napi::Number>().Int32Value(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return Int(env, -errno);
  struct ucred cred;
  socklen_t n = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &n) < 0) {
    int e = errno;
    close(fd);
    return Int(env, -e);
  }
  Napi::Array out = Napi::Array::New(env, 5);
  out.Set(0u, Int(env, fd));
  out.Set(1u, Int(env, cred.pid));
  out.Set(2u, Int(env, cred.uid));
  out.Set(3u, Int(env, cred.gid));
  out.Set(4u, Napi::String::New(env, PeerLabel(fd)));
  return out;
}

// recv(fd, buf): [bytes, ...fds] read into buf (0 bytes: the peer closed),
// fds from SCM_RIGHTS installed close-on-exec, or -errno (-EAGAIN: nothing yet).
Napi::Value Recv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !IsFd(info[0]) || !info[1].IsBuffer()) return TypeError(env, "recv(fd: number, buf: Buffer)");
  auto buf = info[1].As<Napi::Buffer<uint8_t>>();
  std::vector<int> fds;
  long n = scmrights::Recv(info[0].As<Napi::Number>().Int32Value(), buf.Data(), buf.Length(), &fds);
  if (n < 0) return Int(env, n);
  // the caller sees the fds it got: a short control buffer cut off the rest
  Napi::Array out = Napi::Array::New(env, fds.size() + 1);
  out.Set(0u, Int(env, n));
  for (size_t i = 0; i < fds.size(); i++) out.Set(static_cast<uint32_t>(i + 1), Int(env, fds[i]));
  return out;
}

// send(fd, buf, fds): bytes sent from buf with fds as SCM_RIGHTS (on the
// first byte), or -errno (-EAGAIN: the reader is behind). Never SIGPIPE.
Napi::Value Send(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !IsFd(info[0]) || !info[1].IsBuffer() || !info[2].IsArray()) {
    return TypeError(env, "send(fd: number, buf: Buffer, fds: number[])");
  }
  auto buf = info[1].As<Napi::Buffer<uint8_t>>();
  auto list = info[2].As<Napi::Array>();
  if (list.Length() > static_cast<uint32_t>(scmrights::kMaxFd)) return Int(env, -ETOOMANYREFS);
  std::vector<int> fds(list.Length());
  for (uint32_t i = 0; i < list.Length(); i++) fds[i] = list.Get(i).As<Napi::Number>().Int32Value();
  return Int(env, scmrights::Send(info[0].As<Napi::Number>().Int32Value(), buf.Data(), buf.Length(), fds.data(), fds.size()));
}

}  // namespace

void RegisterUnixPeer(Napi::Env env, Napi::Object exports) {
  exports.Set("unixPeer", napifn::Table(env, {{"listen", Listen}, {"accept", Accept}, {"recv", Recv}, {"send", Send}}));
}
