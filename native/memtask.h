// A client's memory, read and written by a task the server can kill.
//
// process_vm_readv / process_vm_writev fault the client's pages in, in the
// calling thread. A page of a file on a FUSE mount whose server never answers
// its READ (any user can mount one with fusermount3) holds that thread until
// a fatal signal: on the loop thread, every user would wait. So the loop
// thread hands each copy to a memory task: created with clone(CLONE_VM |
// CLONE_FILES) but not CLONE_THREAD, it shares the server's memory (it copies
// straight into server buffers) and file table (it writes pools' memfds), yet is a
// process of its own, so SIGKILL ends it alone. The loop thread waits for
// the copy kTimeoutMs (more while the task is runnable: a loaded machine's
// run queue is no stall); then it kills the task, logs why (rate-limited)
// and fails the copy with EFAULT; the next copy gets a new task at once. A
// killable fault ends with the kill; a FUSE READ its server has read but not
// answered is waited out uninterruptibly by the kernel, so such a task stays
// until that server answers or goes, and is reaped by a later copy; the task
// copies page by page, so that it copies nothing once it wakes.
//
// Such tasks are processes (pids, memory) a user could pile up, one per
// request, for as long as its FUSE server keeps their READs. So each killed,
// unreaped task is charged to the real uid of the caller whose copy it was,
// and a uid with 4 of them (kUidCap) has its copies refused at once with
// EFAULT, without a task, until a reap finds one gone (its server answered or
// went). Below the cap a uid's copies go through the live task as always:
// an honest process of a uid that has a few stuck tasks is not refused for
// them, and ordinary memory is never refused for any uid below its cap. At
// the cap that uid's honest copies are refused too: no copy can be known to be
// ordinary memory before it is made (another thread of the client can swap
// the page in between), and a uid reaches the cap only through memory of its
// own that did not come in, four times, still stuck. The uid is looked up
// (/proc/TID/status) only while some uid is at the cap. All uids together
// have at most 64 (kTotalCap): beyond it every uid with a stuck task is
// refused, and one that has none may still make one, so the server keeps
// at most kTotalCap plus one per further uid. The callers of other uids are
// never refused for another uid's tasks, and their copies never wait for
// them.
//
// EFAULT, not ETIMEDOUT: it is what kdbus answers for memory it could not
// read or write, every client treats it as its own bad pointer, and
// ETIMEDOUT already says something else in kdbus (a synchronous call whose
// reply did not come in time).
//
// Loop thread only (Node's main thread): one copy at a time.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

namespace memtask {

// A copy whose task has slept this long is given up. Ordinary memory takes
// microseconds (1 MiB: ~1.5 ms on a loaded machine), a swapped-out page
// milliseconds; one stuck copy delays every other user by this much, once.
constexpr int kTimeoutMs = 50;

// Copies len bytes from the thread tid's address addr to dst (Read), or from
// src to addr (Write). 0, or -errno: -EFAULT for memory that is not mapped,
// a short copy, or a copy that did not finish in time; -ESRCH for a thread
// that is gone; -ENOMEM if no task could be started.
int Read(pid_t tid, uint64_t addr, void* dst, size_t len);
int Write(pid_t tid, uint64_t addr, const void* src, size_t len);

// Read into a pool: len bytes from tid's addr into the pool at offset off,
// through a buffer of the task's own, a chunk at a time, each chunk read in
// one piece (the kernel pins pages in batches), then written with pwrite on
// fd, or, with map (the server's mapping of fd), copied into map + off: the
// caller (Pool) says which is cheaper for those pages. A task killed in a
// fault may still copy the batch it pinned once the fault ends, into its own
// buffer, which nobody reads: it never gets to write it out. 0, or -errno as
// Read (-ENOSPC or -ENOMEM from pwrite: the pool's memory could not be had).
int ReadIntoPool(pid_t tid, uint64_t addr, int fd, uint8_t* map, uint64_t off, size_t len);

// A SEND's message in one hand-off instead of one per read (each costs two
// task switches): its first `first` bytes into dst, and, if the message
// (struct kdbus_msg) lies whole in them, the data of each PAYLOAD_VEC item
// it names, in order, after them (8-aligned) while they fit in cap bytes in
// all. The bytes are read speculatively: the caller still checks the
// message as if nothing had been staged, and uses a staged vector where it
// would have copied it. vecs gets one entry per PAYLOAD_VEC item (at most
// kMaxStagedVecs): at is the offset of its bytes in dst, kUnstaged (NULL,
// empty, or beyond cap: the caller copies it itself), or kFailed (it could
// not be read: EFAULT where the caller would copy it; a stuck read is not
// tried again). *used: the bytes of dst in use. 0, or -errno for a head that
// could not be read (as Read).
struct StagedVec {
  int64_t at;
  uint64_t len;
};
constexpr int kMaxStagedVecs = 16;
constexpr int64_t kUnstaged = -1;
constexpr int64_t kFailed = -2;
int ReadMessage(pid_t tid, uint64_t addr, size_t first, uint8_t* dst, size_t cap, StagedVec* vecs, int* nvecs,
                size_t* used);

// True for a memory task of this server: a FUSE request it sent was caused by
// the loop thread (StallRescue).
bool IsTask(pid_t pid);

}  // namespace memtask
