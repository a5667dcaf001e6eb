#include "loopcall.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <climits>

namespace loopcall {

namespace {

std::atomic<uint32_t> g_count{0};
std::atomic<int> g_sleepers{0};
std::atomic<pid_t> g_loopTid{0};
thread_local bool t_loop = false;
thread_local int t_depth = 0;

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t), "a futex word");

uint32_t* Word() { return reinterpret_cast<uint32_t*>(&g_count); }

void WakeAll() { syscall(SYS_futex, Word(), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0); }

}  // namespace

void MarkLoopThread() {
  t_loop = true;
  g_loopTid.store(static_cast<pid_t>(syscall(SYS_gettid)));
}

pid_t LoopTid() { return g_loopTid.load(); }

Scope::Scope() : counted_(t_loop && t_depth++ == 0) {
  if (!counted_) return;
  g_count.fetch_add(1);
  // Pairs with WaitForCall: either the sleeper sees the new count, or we see it.
  if (g_sleepers.load()) WakeAll();
}

Scope::~Scope() {
  if (!t_loop) return;
  t_depth--;
  if (counted_) g_count.fetch_add(1);
}

uint32_t Count() { return g_count.load(); }

void WaitForCall(uint32_t seen) {
  g_sleepers.fetch_add(1);
  while (g_count.load() == seen)
    syscall(SYS_futex, Word(), FUTEX_WAIT_PRIVATE, seen, nullptr, nullptr, 0);
  g_sleepers.fetch_sub(1);
}

void Poke() {
  g_count.fetch_add(2);
  WakeAll();
}

}  // namespace loopcall
