// Cost of one copy of a client's memory: process_vm_readv in the calling
// thread (procmem::Read, what the loop thread did before) against a copy
// handed to the memory task (memtask::Read). Reads this process's own
// ordinary memory, 8 B and 1 MiB, in alternating rounds so that a loaded
// machine weighs on both alike; prints the median per copy of each.
//
//   g++ -O2 -std=c++17 -Inative -o memtask-bench bench/memtask-bench.cc \
//       native/memtask.cc native/procmem.cc native/loopcall.cc
//   taskset -c 0 ./memtask-bench      (pinned: the task shares the CPU)
//   ./memtask-bench                   (unpinned)
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "loopcall.h"
#include "memtask.h"
#include "procmem.h"

namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename F>
double PerCopyUs(F copy, int n) {
  auto a = std::chrono::steady_clock::now();
  for (int i = 0; i < n; i++) copy();
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - a).count() / n;
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 30;
  loopcall::MarkLoopThread();  // as the server's loop thread
  pid_t self = getpid();
  for (size_t len : {size_t{8}, size_t{1} << 20}) {
    std::vector<char> src(len, 1), dst(len);
    uint64_t addr = reinterpret_cast<uintptr_t>(src.data());
    int n = len < 4096 ? 2000 : 50;
    std::vector<double> direct, task;
    for (int r = 0; r < rounds; r++) {
      direct.push_back(PerCopyUs([&] { procmem::Read(self, addr, dst.data(), len); }, n));
      task.push_back(PerCopyUs([&] {
        if (memtask::Read(self, addr, dst.data(), len) != 0) abort();
      }, n));
    }
    printf("%zu B: direct %.2f us, memory task %.2f us (medians of %d rounds of %d copies)\n", len, Median(direct),
           Median(task), rounds, n);
  }
  return 0;
}
