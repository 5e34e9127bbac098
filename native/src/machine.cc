// The machine probes of `pastiche bench`: the fp32 FMA peak of the active instruction set on the
// pool's threads, and the memory bandwidth of a read stream and of STREAM's triad. Timed here, in
// C++, so that no JavaScript runs inside the measured interval.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <vector>

#include "machine.h"
#include "simd_kernels.h"
#include "threadpool.h"

namespace pastiche {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Keeps results alive so that the compiler cannot drop the work that made them.
volatile float g_sink;

}  // namespace

double probe_fma_gflops(long iterations) {
  const SimdKernels& k = simd_kernels();
  ThreadPool& pool = ThreadPool::instance();
  const int threads = pool.threads();
  std::vector<float> out(threads);
  // One task per thread; the run is repeated and the fastest taken (a VM steals time now and then).
  double best = 0;
  for (int rep = 0; rep < 3; rep++) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.parallel_for(threads, [&](int i, int) { out[i] = k.fma_chains(iterations); });
    const double s = seconds_since(t0);
    best = std::max(best, 2.0 * 12 * k.lanes * (double)iterations * threads / s / 1e9);
  }
  for (float v : out) g_sink = g_sink + v;
  return best;
}

double probe_bandwidth_gbs(bool triad, long floats) {
  const SimdKernels& k = simd_kernels();
  ThreadPool& pool = ThreadPool::instance();
  const int tasks = pool.threads() * 8;
  std::vector<float> a(floats, 1.f), b(triad ? floats : 0, 2.f), c(triad ? floats : 0, 3.f);
  std::vector<float> sums(tasks);
  const long per = (floats / tasks) & ~63L;
  auto run = [&](int i, int) {
    const long lo = i * per;
    const long n = i == tasks - 1 ? floats - lo : per;
    if (triad) k.triad_span(a.data() + lo, b.data() + lo, c.data() + lo, 0.5f, n);
    else sums[i] = k.sum_span(a.data() + lo, n);
  };
  pool.parallel_for(tasks, run);  // first touch done above; one pass to warm the TLB and pool
  double best = 0;
  for (int rep = 0; rep < 4; rep++) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.parallel_for(tasks, run);
    const double s = seconds_since(t0);
    // STREAM's accounting: triad moves 3 arrays (2 read, 1 written), the sum 1.
    best = std::max(best, (triad ? 3.0 : 1.0) * 4.0 * (double)floats / s / 1e9);
  }
  for (float v : sums) g_sink = g_sink + v;
  g_sink = g_sink + a[floats / 2];
  return best;
}

}  // namespace pastiche
