// The hand-vectorised direct kernels for the avx512 path: smallconv.inc, pool2x2.inc.
#include <cstddef>

#include "simd_kernels.h"

#if defined(__x86_64__)
#pragma GCC target("avx512f,avx2,fma")
#endif

namespace pastiche {
namespace avx512 {
namespace {
#define LANES 16
#include "smallconv.inc"
#include "pool2x2.inc"
constexpr int kLanes = LANES;
#undef LANES
}  // namespace

void conv3x3_small_cin_rows(int cin, const float* xp, int wp, const float* wt, int cout, const float* bias, bool relu,
                            float* y, int h, int w, int r0, int r1) {
  small_cin_rows(cin, xp, wp, wt, cout, bias, relu, y, h, w, r0, r1);
}
void pool2x2_backward_span(const float* r0, const float* r1, const float* g, float* d0, float* d1, int n, bool relu_mask) {
  pool2x2_backward_rows(r0, r1, g, d0, d1, n, relu_mask);
}
int vector_lanes() { return kLanes; }
}  // namespace avx512
}  // namespace pastiche
