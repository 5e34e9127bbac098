// The native backend's kernels. Shapes are validated on the TypeScript side; these trust them.
// Layouts are the engine's: activations NCHW, conv weights [Cin, K, K, Cout], fc weights [Din, Dout].
#pragma once
#include <cstddef>
#include <cstdint>

namespace pastiche {

// y = conv(x, w) + b, then ReLU if relu.
// `wino` is the layer's transformed weights (winograd_weights for tile `wino_tile`) or null for
// im2col + GEMM. Winograd only: `reflect`, the border mirrored instead of zero; `up`, the input
// upsampled (nearest) by that factor first, h and w being the upsampled sizes; `pool2x2`, y is the
// output's 2x2 stride-2 max-pool (see conv3x3_winograd).
// `blocked` (channel-blocked Winograd only, see conv3x3_winograd): x and/or y in nChw16c.
void conv2d(const float* x, int n, int cin, int h, int w, const float* wt, int cout, int k, int pad, int stride,
            const float* bias, bool relu, float* y, const float* wino, int wino_tile, bool reflect, int up,
            bool pool2x2 = false, int blocked = 0);
// `wino` is the rotated transform (winograd_weights with rotate) or null for GEMM + col2im; `c16`:
// in the channel-blocked layout (winograd_weights with c16), taking that path, where `blocked` may
// say that dy (X_BLOCKED) and/or dx, add and mask (Y_BLOCKED) are in nChw16c.
// With `add` and/or `mask` (both shaped like dx, may be null): dx = (dx + add) * (mask > 0), the
// backward of a ReLU (and of a gradient injected at its output) fused into this pass.
void conv2d_backward_data(const float* dy, int n, int cin, int h, int w, const float* wt, int cout, int k, int pad,
                          int stride, float* dx, const float* wino, int wino_tile, const float* add, const float* mask,
                          bool c16 = false, int blocked = 0);
void conv2d_backward_params(const float* dy, const float* x, int n, int cin, int h, int w, int cout, int k, int pad,
                            int stride, float* dw, float* db);

// Winograd F(m x m, 3x3), m = 4 or 6, for 3x3 stride-1 convolutions (any padding up to 2). `up`
// holds the transformed weights from winograd_weights (for cin -> cout channels, the same m).
// dst = (dst + add) * (mask > 0) over n contiguous elements, either operand optional: the gradient
// epilogue (see GradientEpilogue), serial.
void add_and_mask_span(float* dst, const float* add, const float* mask, long n);

// Optional epilogue per output element: + add[i], then ReLU (relu) or zero where mask[i] <= 0.
// `reflect`: the border mirrored as ReflectionPad2d does (pad < h, w) instead of zero; `upsample`:
// x is h / upsample x w / upsample, read as if upsampled (nearest) to h x w first. `pool2x2`: y
// receives the 2x2 stride-2 max-pool of the output (floor size) instead (no add or mask then).
// `c16`: `up` is in the channel-blocked layout (winograd_weights gives it where winograd_c16 holds),
// and `blocked` may say that x (X_BLOCKED, with neither reflect nor upsample) and/or y (Y_BLOCKED,
// and then add and mask) are in nChw16c: [n][c / 16][h][w][16], each pixel's 16 channels of a
// block side by side, as one layer hands them to the next.
enum Blocked : int { X_BLOCKED = 1, Y_BLOCKED = 2 };
// Whether an nChw16c output of `bytes` at y is written with non-temporal stores, a pixel's 16
// channels one whole cache line not read from memory first: from 4 MiB (past L2: the next layer
// reads it from memory either way), where y starts on a cache line (the host pool's arrays do:
// largeHostArray). Taken by the fused Winograd path (winograd.cc says what it measured),
// conv1_1's direct kernel and the max-pool's gradient (conv.cc).
inline bool streams_output(double bytes, const float* y) {
  return bytes >= 4.0 * 1024 * 1024 && (reinterpret_cast<uintptr_t>(y) & 63) == 0;
}
void conv3x3_winograd(const float* x, int n, int cin, int h, int w, const float* up, int m, int cout, int pad,
                      const float* bias, bool relu, float* y, const float* add = nullptr, const float* mask = nullptr,
                      bool reflect = false, int upsample = 1, bool pool2x2 = false, bool c16 = false, int blocked = 0);
// Whether a forward cin -> cout F(m x m) convolution takes the channel-blocked path (winograd_c16.inc):
// F(4x4), both channel counts multiples of 16, on a CPU with AVX-512 (whatever ISA is active: the
// weights' layout must not change when a test forces another).
bool winograd_c16(int cin, int cout, int m);
// Floats needed for the transformed weights of a cin -> cout convolution.
size_t winograd_weights_size(int cin, int cout, int m);
// What conv3x3_winograd's calls since the last reset spent in each stage, for `bench`: seconds of
// the input transform (with its padded copies), the GEMMs and the output transform; the GEMMs'
// products (FLOP) and the bytes each transform moves (estimated).
struct WinogradStages {
  double input_s = 0, gemm_s = 0, output_s = 0, gemm_flops = 0, input_bytes = 0, output_bytes = 0;
  double fused_tiles = 0;  // of them, tiles that took the three stages in one pass (winograd.cc)
  double streamed_tiles = 0;  // and of those, tiles whose output went out with non-temporal stores
};
WinogradStages& winograd_stages();
// Transforms weights [wcin, 3, 3, wcout]; `rotate` gives those of the gradient to the data (a
// wcout -> wcin convolution with the kernel turned 180 degrees). `c16`: in the channel-blocked
// path's layout, where winograd_c16 holds for that convolution (the forward's always are).
// `round`: the weights rounded to bfloat16 first (--precision bf16), into scratch, not kept.
void winograd_weights(const float* wt, int wcin, int wcout, bool rotate, int m, float* up, bool c16 = false, bool round = false);

// K x K stride-1 convolution with few input or output channels, computed directly (directconv.inc);
// `reflect`: the border mirrored instead of zero.
void conv2d_direct(const float* x, int n, int cin, int h, int w, const float* wt, int cout, int k, int pad,
                   bool reflect, const float* bias, bool relu, float* y);
// Row r of a plane padded by pad (r in input coordinates, -pad <= r < h + pad, or beyond: zeros):
// dst[j] = x[r][j - pad], the border zero or with `reflect` mirrored without repeating the edge
// (ReflectionPad2d: -1 -> 1, h -> h - 2; pad < h, w); zeros from w + 2 pad up to `width`. With
// `up` > 1 the h x w plane is read as its nearest upsampling to (h up) x (w up), r and the
// padding counted in that image. `bf16`: the row rounded to bfloat16 (--precision bf16's operands).
void padded_row(const float* plane, int h, int w, int pad, bool reflect, int r, float* dst, int width, int up = 1, bool bf16 = false);
// y = a + alpha b over n floats, chunks over threads.
void add_scaled(const float* a, const float* b, float alpha, float* y, long n);
// y = alpha x; the sum of x^2 (in double, summed in a fixed order whatever the thread count).
void scale(const float* x, float alpha, float* y, long n);
double sum_of_squares(const float* x, long n);
// L-BFGS's sweep, float history vectors against the double direction q, over the threads: q = (q +
// c[0] v[0] + c[1] v[1]) * scale (nv <= 2), then u[j].q into out[j] (nu <= 2), the chunks' partial
// sums added in a fixed order whatever the thread count.
void sweep_f32_f64(double* q, const double* c, const float* const* v, int nv, double scale, const float* const* u, int nu,
                   long n, double* out);
// Reflection padding of `planes` h x w planes by pad on each side; nearest upsampling by factor.
void reflection_pad(const float* x, int planes, int h, int w, int pad, float* y);
void upsample_nearest(const float* x, int planes, int h, int w, int factor, float* y);
// Instance normalisation over n * c planes of m values (weight and bias per channel), + ReLU.
void instance_norm(const float* x, int n, int c, long m, const float* w, const float* b, float eps, bool relu, float* y);
// Its backward: dx, and the weight and bias gradients (summed over the batch in order).
void instance_norm_backward(const float* dy, const float* x, const float* relu_out, int n, int c, long m, const float* w,
                            float eps, float* dx, float* dw, float* db);
// Direct 3x3 stride-1 pad-1 convolution for cin <= 4 (+ bias, optional ReLU): VGG19's first layer.
// `blocked`: y in nChw16c (cout a multiple of 16), for a channel-blocked convolution next.
void conv3x3_small_cin(const float* x, int n, int cin, int h, int w, const float* wt, int cout, const float* bias,
                       bool relu, float* y, bool blocked = false);
// Its gradient to the data, dx (n x cin x h x w) from dy (n x cout x h x w), cin <= 4; wr the
// kernel turned by 180 degrees, [cout][3][3][cin] (the backend's rotatedWeights).
// dy nChw16c with `blocked` (cout a multiple of 16).
void conv3x3_small_cin_backward_data(const float* dy, int n, int cin, int h, int w, const float* wr, int cout, float* dx,
                                     bool blocked = false);

void max_pool2d(const float* x, int planes, int h, int w, int k, int stride, int pad, float* y, int ho, int wo);
// relu_mask: also the backward of the ReLU whose output is x (gradients to cells with x <= 0 dropped).
void max_pool2d_backward(const float* dy, const float* x, int planes, int h, int w, int k, int stride, int pad, float* dx,
                         int ho, int wo, bool relu_mask);
// The 2x2 stride-2 max-pool of an nChw16c x (n x c x h x w, c a multiple of 16) into nChw16c y
// (floor size), and its backward, dy and dx nChw16c too (relu_mask as above).
void max_pool2x2_c16(const float* x, int n, int c, int h, int w, float* y);
void max_pool2x2_c16_backward(const float* dy, const float* x, int n, int c, int h, int w, float* dx, bool relu_mask);

// y[m x n] = x[m x k] w[k x n] + b
void linear(const float* x, int m, int k, const float* w, int n, const float* b, float* y);
// y [n, hw, c] = x [n, c, hw]: MatConvNet's flattening order before fc6 (in JavaScript, run once
// per pass and never optimised by the JIT, the 25088 values took 0.5 ms).
void channels_last(const float* x, int n, int c, int hw, float* y);
// The same with bfloat16 operands (--precision bf16), any number of rows streamed: the weights
// stored as bf16 bits, or fp32 ones rounded as they are read (the same products).
void linear_bf16(const float* x, int m, int k, const uint16_t* w, int n, const float* b, float* y);
void linear_bf16(const float* x, int m, int k, const float* w, int n, const float* b, float* y);

void relu(const float* x, float* y, long size);
void relu_backward(const float* dy, const float* x, float* dx, long size);

}  // namespace pastiche
