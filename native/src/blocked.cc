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

// The pixels in one part per thread, each summed into its own c x c matrix (a Gram matrix has few
// rows and many pixels), then the parts added and the upper triangle mirrored as gram() does.
void gram_c16(const float* x, int c, int hw, float* g) {
  ThreadPool& pool = ThreadPool::instance();
  const auto& k = active_winograd_c16();
  const int parts = std::max(1, std::min(pool.threads(), hw / 256));
  std::vector<float> partial((size_t)(parts - 1) * c * c);
  pool.parallel_for(parts, [&](int s, int) {
    const int p0 = (int)((long)hw * s / parts), p1 = (int)((long)hw * (s + 1) / parts);
    k.gram(x, c, hw, p0, p1, s == 0 ? g : partial.data() + (size_t)(s - 1) * c * c);
  });
  sum_parts_and_mirror(g, partial.data(), parts, c);
}

// The pixels split over the threads, each making every output block of its own.
void mix_channels_c16(const float* d, int c, const float* x, int hw, float* y) {
  ThreadPool& pool = ThreadPool::instance();
  const auto& k = active_winograd_c16();
  const int parts = std::max(1, std::min(pool.threads(), hw / 96));
  pool.parallel_for(parts, [&](int s, int) {
    k.mix(d, c, x, hw, (int)((long)hw * s / parts), (int)((long)hw * (s + 1) / parts), y);
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
