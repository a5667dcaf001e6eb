// Trivial requests answered on the loop thread without calling JS: a POLL,
// a RECV on an empty queue, a FREE of a slice the client holds, and a command
// the ioctl prologue refuses (size out of bounds, unknown flags). The core
// (lib/core/handle.ts, lib/fast-state.ts) publishes into this object, per
// open file, exactly the facts its own dispatch would look at: the handle's
// role, its connection's kind, whether that connection is active and its
// queue empty, the poll mask, the offsets the client may FREE; and once, the
// static part of its COMMANDS table. Requests are dispatched one at a time in
// arrival order (fairqueue.h) and the core publishes every change as it
// makes it, so an answer given here is the one the core would give at that
// point. Whatever needs more than these facts goes to JS, unchanged.
//
// What the core does not see happen here it gets later, before anything
// could observe the difference: FREEs are applied by its pool before the
// pool's next operation (lib/core/pool.ts sync), refusals are logged
// (lib/log.ts logRefusal) when JS next runs, at the latest within a timer
// period. `pending` (a JS Int32Array) counts what waits, [0] frees and [1]
// refusals, so JS looks only when there is something.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace fastpath {

// Published per file (lib/fast-state.ts says the same).
enum Role : uint32_t {
  kRoleJs = 0,         // every ioctl goes to JS (e.g. a control file that made its bus)
  kRoleControl = 1,    // control file, no bus yet
  kRoleEndpoint = 2,   // endpoint file, neither connected nor owning an endpoint
  kRoleOwner = 3,      // endpoint file that made a custom endpoint
  kRoleConnected = 4,  // endpoint file with a connection
};
constexpr uint32_t kRoleMask = 0x7;
constexpr uint32_t kPrivileged = 0x8;   // kRoleEndpoint: privileged at open
constexpr uint32_t kActive = 0x10;      // kRoleConnected: the connection is active
constexpr uint32_t kQueueEmpty = 0x20;  // kRoleConnected: nothing queued
constexpr int kKindShift = 8;           // kRoleConnected: its kind (handle.ts ORDINARY...) << 8

// A row of the core's COMMANDS table: only what its prologue checks.
struct Command {
  uint32_t on = 0;     // the Role that serves it
  bool privileged = false;
  uint32_t conns = 0;  // kRoleConnected: kinds served
  uint64_t min = 0, max = 0, valid = 0;
  uint32_t flagsOff = 0, kernelFlagsOff = 0, returnFlagsOff = 0;
  bool returnFirst = false;  // return_flags zeroed before the flags are checked
  bool returnDone = false;   // return_flags zeroed on success
  enum Fast : uint32_t { kNone = 0, kRecv = 1, kFree = 2 } fast = kNone;
};

// A refusal given here, for the core's log (reason: lib/fast-state.ts REASONS).
struct Refusal {
  uint32_t uid, cmd, tid;
  int errnum;
  uint32_t reason;
  uint64_t flags;
  uint64_t count;
};

struct Free {
  uint64_t fh, off;
};

class FastPath {
 public:
  bool enabled() const { return enabled_; }
  // pending: where the counts of frees and refusals not yet taken go (JS's Int32Array of 2).
  void Enable(std::unordered_map<uint32_t, Command> commands, int32_t* pending);

  void SetState(uint64_t fh, uint32_t state, uint32_t pollMask, uint32_t uid);
  void Forget(uint64_t fh);
  void SetFreeable(uint64_t fh, uint64_t off, bool held);

  // An ioctl: true if answered here, *result then 0 or -errno.
  bool Ioctl(uint64_t fh, uint32_t cmd, uint64_t arg, uint32_t tid, const uint8_t* head, size_t headLen,
             int* result);
  // A POLL: true if answered here with *mask; a registration (kh) is kept for Wake.
  bool Poll(uint64_t fh, uint64_t kh, uint32_t flags, uint32_t* mask);
  // The core's wake of fh: the registered kh, once (false if none).
  bool Wake(uint64_t fh, uint64_t* kh);
  size_t pollers() const;

  std::vector<Free> TakeFrees();
  std::vector<Refusal> TakeRefusals();

 private:
  struct File {
    uint32_t state = 0, pollMask = 0, uid = 0;
    bool armed = false;
    uint64_t kh = 0;
    std::unordered_set<uint64_t> freeable;
  };
  // Keeps a refusal for the core's log; false (nothing kept) when that is full.
  bool Refuse(const File& f, uint32_t cmd, uint32_t tid, int errnum, uint32_t reason, uint64_t flags);
  void Count(int which, int32_t n);

  bool enabled_ = false;
  int32_t* pending_ = nullptr;
  std::unordered_map<uint32_t, Command> commands_;
  std::unordered_map<uint64_t, File> files_;
  std::vector<Free> frees_;
  std::vector<Refusal> refusals_;
};

}  // namespace fastpath
