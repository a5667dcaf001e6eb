/* Shared helpers of the bench/ clients: a monotonic clock and a rep loop. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static inline unsigned long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static inline double now_us(void) { return now_ns() / 1e3; }

/* qsort order of doubles, for medians. */
static inline int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

#define die(...) do { fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); exit(1); } while (0)

/* Runs op() until `seconds` have passed (at least min_iter times), `reps`
 * times after one warm-up rep of a third of the time; prints one figure per
 * rep: microseconds per op (per_op = 1) or ops per second times `scale`.
 * With BENCH_OPS set, "ops N" on stderr at the end: every op of every rep and
 * the warm-up, times `scale` (bench/run.sh divides the FUSE requests it
 * counted by it). */
#define RUN_REPS(seconds, reps, min_iter, per_op, scale, ...)                  \
  do {                                                                          \
    double ops_ = 0;                                                            \
    for (int rep_ = -1; rep_ < (reps); rep_++) {                                \
      double limit_ = rep_ < 0 ? (seconds) / 3 : (seconds);                      \
      double t0_ = now_s(), t_;                                                 \
      long n_ = 0;                                                              \
      do { __VA_ARGS__; n_++; t_ = now_s(); } while (t_ - t0_ < limit_ || n_ < (min_iter)); \
      ops_ += n_ * (double)(scale);                                             \
      if (rep_ < 0) continue;                                                   \
      if (per_op) printf("%.2f\n", (t_ - t0_) * 1e6 / n_);                      \
      else printf("%.0f\n", n_ * (double)(scale) / (t_ - t0_));                 \
      fflush(stdout);                                                           \
    }                                                                           \
    if (getenv("BENCH_OPS")) fprintf(stderr, "ops %.0f\n", ops_);               \
  } while (0)
#endif
