// The small-Cin direct convolution for the avx512 path (see smallconv.inc).
#include <cstddef>

#include "smallconv_kernels.h"

#if defined(__x86_64__)
#pragma GCC target("avx512f,avx2,fma")
#endif

namespace pastiche {
namespace avx512 {
namespace {
#define LANES 16
#include "smallconv.inc"
#undef LANES
}  // namespace

void conv3x3_small_cin_rows(int cin, const float* xp, int wp, const float* wt, int cout, const float* bias, bool relu,
                            float* y, int h, int w, int r0, int r1) {
  small_cin_rows(cin, xp, wp, wt, cout, bias, relu, y, h, w, r0, r1);
}
}  // namespace avx512
}  // namespace pastiche
