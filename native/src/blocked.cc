// The style losses' products on nChw16c feature maps (blocked_ops.inc), over the threads: where the
// forward pass leaves a style layer's activations channel-blocked, its Gram matrix and the gradient's
// product with them read them as they are instead of converting them to NCHW first. And that
// conversion itself, for whoever reads such a tensor as NCHW (Tensor.data).
#include <algorithm>
#include <vector>

#include "gemm.h"
#include "kernels.h"
#include "threadpool.h"
#include "winograd_kernels.h"

namespace pastiche {

// --precision bf16: the operands rounded to bfloat16 a run of pixels at a time, into a copy on the
// thread that reads it next (every block's pixels of the run), then multiplied by the fp32 kernels:
// the product of two bf16 values is exact in fp32, so these are vdpbf16ps's products with fp32 sums,
// as in the GEMMs. The copy has one block more than the features: the kernels' own fetches run a
// run ahead of the last block, into it. Through matmul instead (an NCHW copy and the bf16 GEMM), a
// 512 px stylize step's Gram matrices took 138-144 ms, now 18-20 against fp32's 16-18 (`node` on
// the bench's stylize-step runner with the backend's ops timed).
namespace {

// Pixels [q0, q0 + n) of every 16-channel block of x (blocks hw pixels apart) rounded into run
// (blocks `stride` pixels apart), the next `ahead` pixels of each block fetched on the way: the
// kernels read the copy, so their own fetches no longer run ahead in x (64 channels at 512 px, the
// Gram matrix 7.3 -> 4.7-5.2 ms, d^T X 9.3 -> 6.9-7.1, against fp32's 3.7-4.0 and 5.4-5.6; `node`
// on the ops).
void round_run(const float* x, int blocks, size_t hw, int q0, int n, int ahead, float* run, size_t stride) {
  for (int b = 0; b < blocks; b++) {
    const float* src = x + ((size_t)b * hw + q0) * 16;
    float* dst = run + (size_t)b * stride * 16;
    for (int p = 0; p < n; p++) {
      if (p < ahead) __builtin_prefetch(src + (size_t)(n + p) * 16, 0, 3);
      round_bf16_span(src + (size_t)p * 16, dst + (size_t)p * 16, 16);
    }
  }
}

// This thread's copy, for both products.
thread_local HugeScratch run_copy;

// Pixels [p0, p1) of x's c channels (blocks hw pixels apart), `run` at a time, each rounded into
// this thread's copy (blocks `run` pixels apart) and handed to use(copy, q0, n), the next run's
// pixels fetched on the way.
template <class Use>
void rounded_runs(const float* x, int c, size_t hw, int p0, int p1, int run, Use use) {
  float* copy = run_copy.get<float>((size_t)(c + 16) * run);
  for (int q0 = p0; q0 < p1; q0 += run) {
    const int n = std::min(run, p1 - q0);
    round_run(x, c / 16, hw, q0, n, std::min(run, p1 - q0 - n), copy, run);
    use(copy, q0, n);
  }
}

}  // namespace

// The pixels in one part per thread, each summed into its own c x c matrix (a Gram matrix has few
// rows and many pixels), then the parts added and the upper triangle mirrored as gram() does.
void gram_c16(const float* x, int c, int hw, float* g) {
  ThreadPool& pool = ThreadPool::instance();
  const auto& k = active_winograd_c16();
  const bool bf16 = bf16_active();
  const int parts = std::max(1, std::min(pool.threads(), hw / C16_GRAM_RUN));
  std::vector<float> partial((size_t)(parts - 1) * c * c);
  pool.parallel_for(parts, [&](int s, int) {
    const int p0 = (int)((long)hw * s / parts), p1 = (int)((long)hw * (s + 1) / parts);
    float* out = s == 0 ? g : partial.data() + (size_t)(s - 1) * c * c;
    if (!bf16) return k.gram(x, c, hw, p0, p1, out, false);
    rounded_runs(x, c, hw, p0, p1, C16_GRAM_RUN, [&](const float* run, int q0, int n) { k.gram(run, c, C16_GRAM_RUN, 0, n, out, q0 != p0); });
  });
  sum_parts_and_mirror(g, partial.data(), parts, c);
}

// The pixels split over the threads, each making every output block of its own.
void mix_channels_c16(const float* d, int c, const float* x, int hw, float* y) {
  ThreadPool& pool = ThreadPool::instance();
  const auto& k = active_winograd_c16();
  const bool bf16 = bf16_active();
  const int parts = std::max(1, std::min(pool.threads(), hw / C16_MIX_RUN));
  std::vector<float> dr(bf16 ? (size_t)c * c : 0);
  if (bf16) round_bf16(d, dr.data(), (long)c * c);
  pool.parallel_for(parts, [&](int s, int) {
    const int p0 = (int)((long)hw * s / parts), p1 = (int)((long)hw * (s + 1) / parts);
    if (!bf16) return k.mix(d, c, x, hw, p0, p1, y, hw);
    rounded_runs(x, c, hw, p0, p1, C16_MIX_RUN, [&](const float* run, int q0, int n) { k.mix(dr.data(), c, run, C16_MIX_RUN, 0, n, y + (size_t)q0 * 16, hw); });
  });
}

// Runs of 4096 pixels of each 16-channel block over the threads, a run's 16 rows at a time.
void from_nchw16c(const float* x, int blocks, int hw, float* y) {
  const auto& k = active_winograd_c16();
  constexpr int RUN = 4096;
  const int runs = (hw + RUN - 1) / RUN;
  ThreadPool::instance().parallel_for(blocks * runs, [&](int task, int) {
    const int b = task / runs, p0 = task % runs * RUN, n = std::min(RUN, hw - p0);
    float* rows[16];
    for (int l = 0; l < 16; l++) rows[l] = y + ((size_t)b * 16 + l) * hw + p0;
    k.deinterleave(x + ((size_t)b * hw + p0) * 16, n, rows);
  });
}

}  // namespace pastiche
