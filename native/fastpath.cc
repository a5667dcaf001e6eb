#include "fastpath.h"

#include <cerrno>
#include <cstring>

#include "memtask.h"

namespace fastpath {

namespace {

constexpr uint64_t kFlagKernel = 1ULL << 63;  // KDBUS_FLAG_KERNEL
constexpr uint32_t kIoctlType = 0x95;
constexpr uint32_t kPollScheduleNotify = 1;  // FUSE_POLL_SCHEDULE_NOTIFY
// The largest ioctl head of kdbus (HELLO's 104 bytes), rounded up.
constexpr size_t kMaxHead = 128;
// CMD_FREE.offset (lib/abi/kdbus.ts)
constexpr size_t kFreeOffset = 8;
// Refusals kept for the core's log; once full, a refusal of another kind
// than the last goes to JS, which takes them all first.
constexpr size_t kMaxRefusals = 1024;

uint64_t U64(const uint8_t* p, size_t off) {
  uint64_t v;
  memcpy(&v, p + off, sizeof v);
  return v;
}

// The caller's command as the core's WriteBack (lib/core/handle.ts) leaves
// it: fields set, and the span from the first to the last changed byte
// written back, unless unchanged.
class WriteBack {
 public:
  WriteBack(const uint8_t* head, size_t len) { memcpy(buf_, head, len); }
  void Set(size_t off, uint64_t v) {
    if (U64(buf_, off) == v) return;
    memcpy(buf_ + off, &v, sizeof v);
    lo_ = off < lo_ ? off : lo_;
    hi_ = off + 8 > hi_ ? off + 8 : hi_;
  }
  int Flush(uint32_t tid, uint64_t arg) const {
    if (hi_ == 0) return 0;
    return memtask::Write(static_cast<pid_t>(tid), arg + lo_, buf_ + lo_, hi_ - lo_);
  }

 private:
  uint8_t buf_[kMaxHead];
  size_t lo_ = SIZE_MAX, hi_ = 0;
};

}  // namespace

void FastPath::Enable(std::unordered_map<uint32_t, Command> commands, int32_t* pending) {
  commands_ = std::move(commands);
  pending_ = pending;
  enabled_ = true;
}

void FastPath::Count(int which, int32_t n) {
  if (pending_) pending_[which] += n;
}

void FastPath::SetState(uint64_t fh, uint32_t state, uint32_t pollMask, uint32_t uid) {
  File& f = files_[fh];
  f.state = state;
  f.pollMask = pollMask;
  f.uid = uid;
}

void FastPath::Forget(uint64_t fh) { files_.erase(fh); }

void FastPath::SetFreeable(uint64_t fh, uint64_t off, bool held) {
  auto it = files_.find(fh);
  if (it == files_.end()) return;
  if (held)
    it->second.freeable.insert(off);
  else
    it->second.freeable.erase(off);
}

bool FastPath::Refuse(const File& f, uint32_t cmd, uint32_t tid, int errnum, uint32_t reason, uint64_t flags) {
  if (!refusals_.empty()) {
    Refusal& last = refusals_.back();
    if (last.uid == f.uid && last.cmd == cmd && last.tid == tid && last.errnum == errnum &&
        last.reason == reason && last.flags == flags) {
      last.count++;
      Count(1, 1);
      return true;
    }
  }
  if (refusals_.size() >= kMaxRefusals) return false;
  refusals_.push_back({f.uid, cmd, tid, errnum, reason, flags, 1});
  Count(1, 1);
  return true;
}

// In the order of EndpointHandle.dispatch / ControlHandle.dispatch and the
// prologue (commandBuffer, negotiateFlags, validateItems); anything the core
// would look further at returns false.
bool FastPath::Ioctl(uint64_t fh, uint32_t cmd, uint64_t arg, uint32_t tid, const uint8_t* head, size_t headLen,
                     int* result) {
  if (!enabled_ || ((cmd >> 8) & 0xff) != kIoctlType) return false;
  auto fit = files_.find(fh);
  if (fit == files_.end()) return false;
  File& f = fit->second;
  auto cit = commands_.find(cmd);
  if (cit == commands_.end()) return false;
  const Command& c = cit->second;
  uint32_t role = f.state & kRoleMask;
  // The handle's own checks (ENOTTY, EPERM, EBADFD, ECONNRESET, EOPNOTSUPP) stay in JS.
  if (role == kRoleJs || c.on != role) return false;
  if (role == kRoleEndpoint && c.privileged && !(f.state & kPrivileged)) return false;
  if (role == kRoleConnected && (!(f.state & kActive) || !((f.state >> kKindShift) & c.conns))) return false;
  if (arg % 8 != 0 || headLen < 8) return false;
  uint64_t size = U64(head, 0);
  if (size < c.min) {
    *result = -EINVAL;
    return Refuse(f, cmd, tid, EINVAL, 1, 0);
  }
  if (size > c.max) {
    *result = -EMSGSIZE;
    return Refuse(f, cmd, tid, EMSGSIZE, 2, 0);
  }
  // Beyond the head the command must be read from the caller: JS does that.
  if (size > headLen || size > kMaxHead) return false;
  WriteBack w(head, size);
  if (c.returnFirst) w.Set(c.returnFlagsOff, 0);
  w.Set(c.kernelFlagsOff, c.valid | kFlagKernel);
  uint64_t flags = U64(head, c.flagsOff);
  if (flags & ~c.valid) {
    if (!Refuse(f, cmd, tid, EINVAL, 3, flags)) return false;
    w.Flush(tid, arg);  // as the core: a failed write-back leaves the errno as it is
    *result = -EINVAL;
    return true;
  }
  if (size != c.min) return false;  // items: validated in JS
  switch (c.fast) {
    case Command::kRecv:
      // Connection.recv peeks the queue first: empty is EAGAIN whatever the
      // flags and the lost count; nothing but kernel_flags is written back.
      if (!(f.state & kQueueEmpty)) return false;
      w.Flush(tid, arg);
      *result = -EAGAIN;
      return true;
    case Command::kFree: {
      // a slice the client holds; any other offset is ENXIO, logged by the core
      auto off = f.freeable.find(U64(head, kFreeOffset));
      if (off == f.freeable.end()) return false;
      frees_.push_back({fh, *off});
      f.freeable.erase(off);
      Count(0, 1);
      if (c.returnDone) w.Set(c.returnFlagsOff, 0);
      *result = w.Flush(tid, arg) < 0 ? -EFAULT : 0;
      return true;
    }
    default:
      return false;
  }
}

bool FastPath::Poll(uint64_t fh, uint64_t kh, uint32_t flags, uint32_t* mask) {
  if (!enabled_) return false;
  auto it = files_.find(fh);
  if (it == files_.end()) return false;
  if (flags & kPollScheduleNotify) {
    it->second.armed = true;
    it->second.kh = kh;
  }
  *mask = it->second.pollMask;
  return true;
}

bool FastPath::Wake(uint64_t fh, uint64_t* kh) {
  auto it = files_.find(fh);
  if (it == files_.end() || !it->second.armed) return false;
  it->second.armed = false;
  *kh = it->second.kh;
  return true;
}

size_t FastPath::pollers() const {
  size_t n = 0;
  for (const auto& [fh, f] : files_) n += f.armed;
  return n;
}

std::vector<Free> FastPath::TakeFrees() {
  Count(0, -static_cast<int32_t>(frees_.size()));
  std::vector<Free> out;
  out.swap(frees_);
  return out;
}

std::vector<Refusal> FastPath::TakeRefusals() {
  int32_t n = 0;
  for (const Refusal& r : refusals_) n += static_cast<int32_t>(r.count);
  Count(1, -n);
  std::vector<Refusal> out;
  out.swap(refusals_);
  return out;
}

}  // namespace fastpath
