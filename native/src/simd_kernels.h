// The hand-vectorised kernels (smallconv.inc, pool2x2.inc, epilogue.inc), compiled once per instruction
// set by simd_{avx512,avx2,portable}.cc; simd_kernels() is the table of the active one.
#pragma once
#include <cstddef>

namespace pastiche {

// dy's channels go through conv3x3_few_out_rows in groups of this many, each group's rows read in
// order and summed into dx (a few planes, in cache): all 64 at once were 64 streams of rows 1 MB
// apart, which the copies into the ring waited on (2.8 of 6.6 ms at 512 were the copies alone).
// conv1_1's gradient at 512 took 6.2-6.9 ms with all 64, 5.8-6.3 in groups of 8, 5.3-5.4 of 16,
// 5.6-6.6 of 32.
constexpr int FEW_OUT_GROUP = 16;

struct SimdKernels {
  // Floats per vector: the pool2x2 spans take whole vectors of output columns.
  int lanes;
  // Rows [r0, r1) of a 3x3 stride-1 pad-1 convolution of cin <= 4 zero-padded planes (see conv.cc).
  void (*conv3x3_small_cin_rows)(int cin, const float* xp, int wp, const float* wt, int cout, const float* bias,
                                 bool relu, float* y, int h, int w, int r0, int r1, int co_block);
  // The same rows of every 16-channel block into nChw16c (cout a multiple of 16).
  void (*conv3x3_small_cin_rows_c16)(int cin, const float* xp, int wp, const float* wt, int cout, const float* bias,
                                     bool relu, float* y, int h, int w, int r0, int r1, bool stream);
  // Rows [r0, r1) of the gradient of a 3x3 stride-1 pad-1 convolution to its nc <= 4 input
  // channels, from dy's cdy planes through the caller's ring of padded rows (smallconv.inc): wr the
  // kernel turned by 180 degrees, [cdy][3][3][nc]; ring min(cdy, FEW_OUT_GROUP) * 4 * wp floats.
  void (*conv3x3_few_out_rows)(int nc, const float* dy, int cdy, int h, int w, const float* wr, float* dx, int r0,
                               int r1, float* ring, int wp);
  // The same rows from an nChw16c dy read in place (cdy a multiple of 16): w16 the kernel as
  // [cdy / 16][3][3][nc][16], wr's values for a block's 16 channels side by side.
  void (*conv3x3_few_out_rows_c16)(int nc, const float* dy, int cdy, int h, int w, const float* w16, float* dx, int r0,
                                   int r1);
  // Rows [r0, r1) of a K x K stride-1 convolution read in place from cin padded planes of hp x wp
  // (directconv.inc): for layers with few output or input channels.
  void (*conv_direct_rows)(const float* xp, int wp, int hp, int cin, int k, const float* wt, int cout,
                           const float* bias, bool relu, float* y, int ho, int wo, int r0, int r1);
  // Instance normalisation of one plane of m values (instnorm.inc), forward (+ ReLU) and backward.
  void (*instance_norm_plane)(const float* x, long m, float w, float b, float eps, bool relu, float* y);
  void (*instance_norm_backward_plane)(const float* dy, const float* x, const float* relu_out, long m, float w,
                                       float eps, float* dx, double* sum_g, double* sum_gx);
  // One output row of a 2x2 stride-2 max-pool forward over n (a multiple of lanes) columns.
  void (*pool2x2_forward_span)(const float* r0, const float* r1, float* y, int n);
  // One output row of a 2x2 stride-2 max-pool backward over n (a multiple of lanes) columns.
  void (*pool2x2_backward_span)(const float* r0, const float* r1, const float* g, float* d0, float* d1, int n,
                                bool relu_mask);
  // The same two for a 16-channel block of nChw16c tensors (pool2x2.inc): one output row of n
  // pixels, and its backward (dy and dx nChw16c too).
  void (*pool2x2_c16_forward_row)(const float* x0, const float* x1, float* y, int n);
  void (*pool2x2_c16_backward_row)(const float* x0, const float* x1, const float* g, float* d0, float* d1, int n,
                                   bool relu_mask, bool stream);
  // dst = (dst + add) * (mask > 0) over n floats; add or mask may be null.
  void (*add_and_mask_span)(float* dst, const float* add, const float* mask, long n);
  // y = x > 0 ? x : 0; dx = x > 0 ? dy : 0; row = row + b, then ReLU if relu.
  void (*relu_span)(const float* x, float* y, long n);
  void (*relu_backward_span)(const float* dy, const float* x, float* dx, long n);
  void (*bias_relu_span)(float* row, long n, float b, bool relu);
  // y = alpha x; the sum of x^2 (double, see epilogue.inc).
  void (*scale_span)(const float* x, float alpha, float* y, long n);
  double (*sum_squares_span)(const float* x, long n);
  // L-BFGS's sweep, float history vectors v, u against the double direction q: q = (q + c[0] v[0]
  // + c[1] v[1]) * scale (nv <= 2 of them), then u[j].q into out[j] (nu <= 2).
  void (*sweep_f32_f64_span)(double* q, const double* c, const float* const* v, int nv, double scale, const float* const* u,
                             int nu, long n, double* out);
  // Machine probes (machine.inc): 12 independent FMA chains of one vector for `iterations`; the sum
  // of n floats; a = b + s * c over n floats.
  float (*fma_chains)(long iterations);
  float (*sum_span)(const float* p, long n);
  void (*triad_span)(float* a, const float* b, const float* c, float s, long n);
};

// The table of the active instruction set (conv.cc).
const SimdKernels& simd_kernels();

namespace avx512 { extern const SimdKernels simd; }
namespace avx2 { extern const SimdKernels simd; }
namespace portable { extern const SimdKernels simd; }

}  // namespace pastiche
