// The hand-vectorised direct kernels, compiled per instruction set (smallconv.inc, pool2x2.inc).
#pragma once

namespace pastiche {
#define PASTICHE_SMALLCONV(ns)                                                                                       \
  namespace ns {                                                                                                     \
  void conv3x3_small_cin_rows(int cin, const float* xp, int wp, const float* wt, int cout, const float* bias, bool relu, \
                              float* y, int h, int w, int r0, int r1);                                               \
  /* One output row of a 2x2 stride-2 max-pool backward; n (a multiple of vector_lanes()) columns. */                \
  void pool2x2_backward_span(const float* r0, const float* r1, const float* g, float* d0, float* d1, int n,          \
                             bool relu_mask);                                                                        \
  int vector_lanes();                                                                                                \
  }
PASTICHE_SMALLCONV(avx512)
PASTICHE_SMALLCONV(avx2)
PASTICHE_SMALLCONV(portable)
#undef PASTICHE_SMALLCONV
}  // namespace pastiche
