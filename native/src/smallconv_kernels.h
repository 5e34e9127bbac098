// The small-Cin direct 3x3 convolution, compiled per instruction set (smallconv.inc).
#pragma once

namespace pastiche {
#define PASTICHE_SMALLCONV(ns)                                                                                       \
  namespace ns {                                                                                                     \
  void conv3x3_small_cin_rows(int cin, const float* xp, int wp, const float* wt, int cout, const float* bias, bool relu, \
                              float* y, int h, int w, int r0, int r1);                                               \
  }
PASTICHE_SMALLCONV(avx512)
PASTICHE_SMALLCONV(avx2)
PASTICHE_SMALLCONV(portable)
#undef PASTICHE_SMALLCONV
}  // namespace pastiche
