// The small-Cin direct convolution for the portable path (see smallconv.inc).
#include <cstddef>

#include "smallconv_kernels.h"

namespace pastiche {
namespace portable {
namespace {
#define LANES 4
#include "smallconv.inc"
#undef LANES
}  // namespace

void conv3x3_small_cin_rows(int cin, const float* xp, int wp, const float* wt, int cout, const float* bias, bool relu,
                            float* y, int h, int w, int r0, int r1) {
  small_cin_rows(cin, xp, wp, wt, cout, bias, relu, y, h, w, r0, r1);
}
}  // namespace portable
}  // namespace pastiche
