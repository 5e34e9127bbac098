// Convolution by im2col + GEMM (any shape, and the weight gradient), dispatching 3x3 stride-1
// layers to Winograd; max pooling; fully connected; ReLU.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "gemm.h"
#include "kernels.h"
#include "simd_kernels.h"
#include "threadpool.h"
#include "winograd_kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace pastiche {

namespace {

constexpr size_t MAX_COLS = (size_t)1 << 22;  // floats in the column buffer (16 MiB)
HugeScratch g_cols;

struct Geometry {
  int cin, h, w, k, pad, stride, ho, wo;
};

// cols[r][j] for r = (ci*K + kh)*K + kw, j = output position p0 + j; (ci, kh) rows split over threads.
void im2col(const float* x, const Geometry& g, int p0, int len, float* cols) {
  const bool whole_rows = g.stride == 1 && p0 == 0 && len == g.ho * g.wo;
  ThreadPool::instance().parallel_for(g.cin * g.k, [&](int task, int) {
    const int ci = task / g.k, kh = task % g.k;
    const float* plane = x + (size_t)ci * g.h * g.w;
    for (int kw = 0; kw < g.k; kw++) {
      float* row = cols + (size_t)((ci * g.k + kh) * g.k + kw) * len;
      if (whole_rows) {
        // Stride 1: each output row is a shifted copy of an input row between zero borders.
        const int lo = std::max(0, g.pad - kw), hi = std::min(g.wo, g.w + g.pad - kw);  // valid ow range
        for (int oh = 0; oh < g.ho; oh++) {
          float* dst = row + (size_t)oh * g.wo;
          const int ih = oh + kh - g.pad;
          if (ih < 0 || ih >= g.h || lo >= hi) {
            std::memset(dst, 0, sizeof(float) * g.wo);
            continue;
          }
          std::memset(dst, 0, sizeof(float) * lo);
          std::memcpy(dst + lo, plane + (size_t)ih * g.w + lo + kw - g.pad, sizeof(float) * (hi - lo));
          std::memset(dst + hi, 0, sizeof(float) * (g.wo - hi));
        }
        continue;
      }
      // Any stride, any chunk: output row by output row, the columns that fall inside the input
      // found once per row (no bounds test per element: this loop was most of a stride-2 layer).
      const int lo = std::max(0, (g.pad - kw + g.stride - 1) / g.stride);         // first ow with iw >= 0
      const int hi = std::min(g.wo, (g.w + g.pad - kw + g.stride - 1) / g.stride);  // ow with iw < w
      for (int j = 0; j < len;) {
        const int oh = (p0 + j) / g.wo, ow0 = (p0 + j) % g.wo;
        const int n = std::min(len - j, g.wo - ow0);  // this output row's part of the chunk
        float* dst = row + j;
        const int ih = oh * g.stride + kh - g.pad;
        if (ih < 0 || ih >= g.h) {
          std::memset(dst, 0, sizeof(float) * n);
        } else {
          const float* src = plane + (size_t)ih * g.w + kw - g.pad;
          const int a = std::min(std::max(lo, ow0), ow0 + n), b = std::max(std::min(hi, ow0 + n), a);  // [a, b): inside
          for (int ow = ow0; ow < a; ow++) dst[ow - ow0] = 0.f;
          if (g.stride == 1)
            std::memcpy(dst + (a - ow0), src + a, sizeof(float) * (b - a));
          else
            for (int ow = a; ow < b; ow++) dst[ow - ow0] = src[ow * g.stride];
          for (int ow = b; ow < ow0 + n; ow++) dst[ow - ow0] = 0.f;
        }
        j += n;
      }
    }
  });
}

void col2im_add(const float* cols, const Geometry& g, int p0, int len, float* dx) {
  if (g.stride == 1) {
    // Stride 1: each input row gathers shifted spans of k*k column rows. One task per input row
    // (each row written by one task only), so that few channels still fill the threads (VGG19's
    // gradient to the 3-channel image), and contiguous adds instead of a bounds check per element.
    ThreadPool::instance().parallel_for(g.cin * g.h, [&](int task, int) {
      const int ci = task / g.h, ih = task % g.h;
      float* dst_row = dx + ((size_t)ci * g.h + ih) * g.w;
      for (int kh = 0; kh < g.k; kh++) {
        const int oh = ih - kh + g.pad;
        if (oh < 0 || oh >= g.ho) continue;
        const int q0 = std::max(oh * g.wo, p0), q1 = std::min(oh * g.wo + g.wo, p0 + len);  // positions in this chunk
        for (int kw = 0; kw < g.k; kw++) {
          const int lo = std::max(q0 - oh * g.wo, g.pad - kw), hi = std::min(q1 - oh * g.wo, g.w + g.pad - kw);  // ow range
          if (lo >= hi) continue;
          const float* src = cols + (size_t)((ci * g.k + kh) * g.k + kw) * len + (oh * g.wo + lo - p0);
          float* dst = dst_row + lo + kw - g.pad;
          for (int j = 0; j < hi - lo; j++) dst[j] += src[j];
        }
      }
    });
    return;
  }
  ThreadPool::instance().parallel_for(g.cin, [&](int ci, int) {
    float* plane = dx + (size_t)ci * g.h * g.w;
    for (int kh = 0; kh < g.k; kh++)
      for (int kw = 0; kw < g.k; kw++) {
        const float* row = cols + (size_t)((ci * g.k + kh) * g.k + kw) * len;
        int oh = p0 / g.wo, ow = p0 % g.wo;
        for (int j = 0; j < len; j++) {
          const int ih = oh * g.stride + kh - g.pad, iw = ow * g.stride + kw - g.pad;
          if (ih >= 0 && ih < g.h && iw >= 0 && iw < g.w) plane[(size_t)ih * g.w + iw] += row[j];
          if (++ow == g.wo) { ow = 0; oh++; }
        }
      }
  });
}

// GEMM B panels (pack_b's layout: [NR positions] per row, rows p0..p0+kc of the column matrix)
// gathered straight from the input, positions j0..j0+nc: the forward pass's implicit im2col.
// Building the columns and then packing them read and wrote every column twice; for the style
// network's stride-2 layers that was most of their time (`perf`: pack_b + im2col + memcpy 30%).
void pack_b_conv(const float* x, const Geometry& g, int p0, int kc, int j0, int nc, float* out) {
  const int kk = g.k * g.k;
  for (int jr = 0; jr < nc; jr += NR) {
    const int q0 = j0 + jr, nr = std::min(NR, nc - jr);
    const int oh = q0 / g.wo, ow0 = q0 % g.wo;
    const bool one_row = nr == NR && ow0 + NR <= g.wo;  // the panel's positions lie in output row oh
    for (int r = p0; r < p0 + kc; r++, out += NR) {
      const int ci = r / kk, kh = r % kk / g.k, kw = r % g.k;
      if (one_row) {
        const int ih = oh * g.stride + kh - g.pad, iw0 = ow0 * g.stride + kw - g.pad;
        if (ih < 0 || ih >= g.h) {
          std::memset(out, 0, sizeof(float) * NR);
          continue;
        }
        const float* src = x + ((size_t)ci * g.h + ih) * g.w;
        if (iw0 >= 0 && iw0 + (NR - 1) * g.stride < g.w) {  // inside: no test per element
          if (g.stride == 1)
            std::memcpy(out, src + iw0, sizeof(float) * NR);
          else
            for (int j = 0; j < NR; j++) out[j] = src[iw0 + j * g.stride];
          continue;
        }
        for (int j = 0; j < NR; j++) {
          const int iw = iw0 + j * g.stride;
          out[j] = iw >= 0 && iw < g.w ? src[iw] : 0.f;
        }
        continue;
      }
      for (int j = 0; j < NR; j++) {
        const int q = q0 + j, ih = q / g.wo * g.stride + kh - g.pad, iw = q % g.wo * g.stride + kw - g.pad;
        out[j] = j < nr && ih >= 0 && ih < g.h && iw >= 0 && iw < g.w ? x[((size_t)ci * g.h + ih) * g.w + iw] : 0.f;
      }
    }
  }
}

// Y [Cout, positions] = W^T [Cout, Cin K K] x columns [Cin K K, positions] for one image, the
// columns never stored (pack_b_conv); positions split over the threads, W^T packed once. P: fp32
// panels, or bf16 ones (converted from the gathered fp32 panels; K slices even, pairs whole).
template <class P>
void conv_gemm_as(const float* x, const Geometry& g, const float* wt, int cout, float* y) {
  const int rows = g.cin * g.k * g.k, hw = g.ho * g.wo, kslice = P::slice(rows);
  const int panels = (cout + MR - 1) / MR;
  static std::vector<typename P::T> pa;  // one call at a time: the addon serialises its calls
  pa.resize((size_t)panels * MR * P::depth(rows));
  for (int pc = 0; pc < rows; pc += kslice)  // slice pc's panels start at panels * MR * pc
    P::pack_a(Operand{wt, cout, true}, 0, cout, pc, std::min(kslice, rows - pc), pa.data() + (size_t)panels * MR * pc);
  ThreadPool& pool = ThreadPool::instance();
  const int t = pool.threads();
  const int chunk = ((hw + t - 1) / t + NR - 1) / NR * NR;
  pool.parallel_for(t, [&](int i, int) {
    thread_local std::vector<float> pb;
    thread_local std::vector<typename P::T> converted;
    if (pb.size() < (size_t)KC * NC) pb.resize((size_t)KC * NC);
    const int j0 = i * chunk, j1 = std::min(hw, j0 + chunk);
    for (int jc = j0; jc < j1; jc += NC) {
      const int nc = std::min(NC, j1 - jc);
      for (int pc = 0; pc < rows; pc += kslice) {
        const int kc = std::min(kslice, rows - pc), depth = P::depth(kc);
        pack_b_conv(x, g, pc, kc, jc, nc, pb.data());
        const typename P::T* b = P::from_fp32(pb.data(), kc, (nc + NR - 1) / NR, converted);
        P::gemm(kc, pa.data() + (size_t)panels * MR * pc, (size_t)MR * depth, cout, b, (size_t)NR * depth, nc, y + jc, hw, pc > 0);
      }
    }
  });
}

void conv_gemm(const float* x, const Geometry& g, const float* wt, int cout, float* y) {
  if (bf16_active())
    conv_gemm_as<Bf16Panels>(x, g, wt, cout, y);
  else
    conv_gemm_as<Fp32Panels>(x, g, wt, cout, y);
}

int positions_per_chunk(const Geometry& g) {
  const size_t rows = (size_t)g.cin * g.k * g.k;
  const size_t total = (size_t)g.ho * g.wo;
  return (int)std::max<size_t>(1, std::min(total, MAX_COLS / rows));
}

float* cols_buffer(size_t size) {
  return g_cols.get<float>(size);
}

}  // namespace

// The direct kernels of the active instruction set.
const SimdKernels& simd_kernels() {
  switch (active_isa()) {
    case Isa::Avx512: return avx512::simd;
    case Isa::Avx2: return avx2::simd;
    default: return portable::simd;
  }
}

void conv3x3_small_cin(const float* x, int n, int cin, int h, int w, const float* wt, int cout, const float* bias,
                       bool relu, float* y, bool blocked) {
  auto rows = simd_kernels().conv3x3_small_cin_rows;
  auto rows_c16 = simd_kernels().conv3x3_small_cin_rows_c16;
  // The planes zero-padded by one pixel, with room for a whole vector past the last column.
  const int wp = w + 2 + 16;
  const size_t plane = (size_t)(h + 2) * wp;
  static std::vector<float> xp;  // one call at a time: the addon serialises its calls
  for (int img = 0; img < n; img++) {
    xp.assign((size_t)cin * plane, 0.f);
    for (int ci = 0; ci < cin; ci++)
      for (int r = 0; r < h; r++)
        std::memcpy(xp.data() + ci * plane + (size_t)(r + 1) * wp + 1, x + ((size_t)(img * cin + ci) * h + r) * w, sizeof(float) * w);
    if (bf16_active()) round_bf16_span(xp.data(), (long)cin * plane);
    float* yi = y + (size_t)img * cout * h * w;
    // Bands of 16 rows, 8 output channels at a time through each: the planes' rows are written in
    // order, 8 streams of stores instead of 64 for a row of every channel at once (conv1_1 at 512
    // 5.1-5.4 -> 3.8-4.2 ms, at 224 0.82-0.95 -> 0.70-0.77; one process, alternating).
    constexpr int BAND = 16, CHANNELS = 8;
    // nChw16c y with non-temporal stores from 4 MiB (streams_output): 3 -> 64 channels at 512 px
    // 3.58 / 3.97 -> 3.31 / 3.62 ms, at 224 px 0.76 -> 0.66 (`node` on native.conv2d, alternating call
    // by call); the style iteration and VGG19 224 as fast within their noise (305.0 / 307.0 ms, 44.1 /
    // 44.3: a 0.1-0.3 ms change is below it).
    const bool stream = blocked && streams_output(4.0 * cout * h * w, yi);
    ThreadPool::instance().parallel_for((h + BAND - 1) / BAND, [&](int b, int) {
      if (blocked) {
        rows_c16(cin, xp.data(), wp, wt, cout, bias, relu, yi, h, w, b * BAND, std::min(h, (b + 1) * BAND), stream);
        if (stream) std::atomic_thread_fence(std::memory_order_seq_cst);
      } else
        rows(cin, xp.data(), wp, wt, cout, bias, relu, yi, h, w, b * BAND, std::min(h, (b + 1) * BAND), CHANNELS);
    });
  }
}

void conv3x3_small_cin_backward_data(const float* dy, int n, int cin, int h, int w, const float* wr, int cout, float* dx,
                                     bool blocked) {
  // Bands of 32 rows (even, so row pairs never straddle two): each band copies 2 rows above and
  // below it into its ring beyond its own, 6% more copying, for bands enough to keep both threads
  // busy.
  constexpr int BAND = 32;
  const int bands = (h + BAND - 1) / BAND;
  // An nChw16c dy (the gradient to VGG19's relu1_1, left channel-blocked by conv1_2's) is read in
  // place, the kernel's values for a block's 16 channels side by side.
  std::vector<float> w16;
  if (blocked) {
    w16.resize((size_t)cout * 9 * cin);
    for (int c = 0; c < cout; c++)
      for (int t = 0; t < 9; t++)
        for (int ci = 0; ci < cin; ci++) w16[(((size_t)(c / 16) * 9 + t) * cin + ci) * 16 + c % 16] = wr[((size_t)c * 9 + t) * cin + ci];
  }
  const int wp = w + 2 + 16;
  for (int img = 0; img < n; img++) {
    const float* dyi = dy + (size_t)img * cout * h * w;
    float* dxi = dx + (size_t)img * cin * h * w;
    ThreadPool::instance().parallel_for(bands, [&](int b, int) {
      const int r0 = b * BAND, r1 = std::min(h, (b + 1) * BAND);
      if (blocked) return simd_kernels().conv3x3_few_out_rows_c16(cin, dyi, cout, h, w, w16.data(), dxi, r0, r1);
      thread_local std::vector<float> ring;
      ring.resize((size_t)std::min(cout, FEW_OUT_GROUP) * 4 * wp);
      simd_kernels().conv3x3_few_out_rows(cin, dyi, cout, h, w, wr, dxi, r0, r1, ring.data(), wp);
    });
  }
}

// fn(lo, len) over [0, n) in chunks of `chunk` elements, spread over the threads.
template <class F>
static void over_chunks(long n, long chunk, F fn) {
  ThreadPool::instance().parallel_for((int)((n + chunk - 1) / chunk), [&](int t, int) {
    const long lo = (long)t * chunk;
    fn(lo, std::min(chunk, n - lo));
  });
}

// `count` sums over the chunks: fn(lo, len, part) writes its chunk's into part[0 .. count), and
// out[j] adds the chunks' j-th in a fixed order whatever the thread count.
template <class F>
static void sums_over_chunks(long n, long chunk, int count, F fn, double* out) {
  const long chunks = (n + chunk - 1) / chunk;
  std::vector<double> parts((size_t)chunks * count);
  over_chunks(n, chunk, [&](long lo, long len) { fn(lo, len, parts.data() + lo / chunk * count); });
  for (int j = 0; j < count; j++) {
    out[j] = 0;
    for (long t = 0; t < chunks; t++) out[j] += parts[(size_t)t * count + j];
  }
}

// The sum of fn(lo, len) over the chunks, in that fixed order.
template <class F>
static double sum_over_chunks(long n, long chunk, F fn) {
  double sum;
  sums_over_chunks(n, chunk, 1, [&](long lo, long len, double* part) { *part = fn(lo, len); }, &sum);
  return sum;
}

// Element-wise floats in chunks of 65536; L-BFGS's sweeps in chunks of 32768 values (q's doubles
// 256 KiB, the history's floats 128 KiB): whole 4 KiB pages, and enough of them for both threads.
constexpr long CHUNK = 1 << 16;
constexpr long SWEEP_CHUNK = 1 << 15;

void add_scaled(const float* a, const float* b, float alpha, float* y, long n) {
  auto triad = simd_kernels().triad_span;
  over_chunks(n, CHUNK, [&](long lo, long len) { triad(y + lo, a + lo, b + lo, alpha, len); });
}

void scale(const float* x, float alpha, float* y, long n) {
  auto span = simd_kernels().scale_span;
  over_chunks(n, CHUNK, [&](long lo, long len) { span(x + lo, alpha, y + lo, len); });
}

double sum_of_squares(const float* x, long n) {
  auto span = simd_kernels().sum_squares_span;
  return sum_over_chunks(n, CHUNK, [&](long lo, long len) { return span(x + lo, len); });
}

void sweep_f32_f64(double* q, const double* c, const float* const* v, int nv, double scale, const float* const* u, int nu,
                   long n, double* out) {
  auto span = simd_kernels().sweep_f32_f64_span;
  sums_over_chunks(n, SWEEP_CHUNK, nu, [&](long lo, long len, double* part) {
    const float* vs[2] = {nv > 0 ? v[0] + lo : nullptr, nv > 1 ? v[1] + lo : nullptr};
    const float* us[2] = {nu > 0 ? u[0] + lo : nullptr, nu > 1 ? u[1] + lo : nullptr};
    span(q + lo, c, vs, nv, scale, us, nu, len, part);
  }, out);
}

void padded_row(const float* plane, int h, int w, int pad, bool reflect, int r, float* dst, int width, int up, bool bf16) {
  const int H = h * up, W = w * up;  // the (upsampled) image the row belongs to
  if (reflect && r < 0 && r >= -pad) r = -r;                             // -1 -> 1
  if (reflect && r >= H && r < H + pad) r = 2 * (H - 1) - r;             // H -> H - 2
  if (r < 0 || r >= H) {
    std::memset(dst, 0, sizeof(float) * width);
    return;
  }
  const float* row = plane + (size_t)(r / up) * w;
  if (up == 1) {
    std::memcpy(dst + pad, row, sizeof(float) * w);
  } else {
    float* d = dst + pad;
    for (int j = 0; j < w; j++)
      for (int f = 0; f < up; f++) *d++ = row[j];
  }
  for (int i = 1; i <= pad; i++) {
    dst[pad - i] = reflect ? row[i / up] : 0.f;
    dst[pad + W - 1 + i] = reflect ? row[(W - 1 - i) / up] : 0.f;
  }
  std::memset(dst + W + 2 * pad, 0, sizeof(float) * (width - W - 2 * pad));
  if (bf16) round_bf16_span(dst, W + 2 * pad);
}

void reflection_pad(const float* x, int planes, int h, int w, int pad, float* y) {
  const int hp = h + 2 * pad, wp = w + 2 * pad;
  ThreadPool::instance().parallel_for(planes, [&](int p, int) {
    for (int oh = 0; oh < hp; oh++) padded_row(x + (size_t)p * h * w, h, w, pad, true, oh - pad, y + ((size_t)p * hp + oh) * wp, wp);
  });
}

void upsample_nearest(const float* x, int planes, int h, int w, int factor, float* y) {
  const int wo = w * factor;
  ThreadPool::instance().parallel_for(planes, [&](int p, int) {
    for (int ih = 0; ih < h; ih++) {
      const float* row = x + ((size_t)p * h + ih) * w;
      float* first = y + ((size_t)p * h * factor + (size_t)ih * factor) * wo;
      for (int iw = 0; iw < w; iw++)
        for (int f = 0; f < factor; f++) first[iw * factor + f] = row[iw];
      for (int f = 1; f < factor; f++) std::memcpy(first + (size_t)f * wo, first, sizeof(float) * wo);
    }
  });
}

void instance_norm(const float* x, int n, int c, long m, const float* w, const float* b, float eps, bool relu, float* y) {
  auto plane = simd_kernels().instance_norm_plane;
  ThreadPool::instance().parallel_for(n * c, [&](int p, int) { plane(x + p * m, m, w[p % c], b[p % c], eps, relu, y + p * m); });
}

void instance_norm_backward(const float* dy, const float* x, const float* relu_out, int n, int c, long m, const float* w,
                            float eps, float* dx, float* dw, float* db) {
  auto plane = simd_kernels().instance_norm_backward_plane;
  std::vector<double> sg(n * c), sgx(n * c);
  ThreadPool::instance().parallel_for(n * c, [&](int p, int) {
    plane(dy + p * m, x + p * m, relu_out ? relu_out + p * m : nullptr, m, w[p % c], eps, dx + p * m, &sg[p], &sgx[p]);
  });
  // Over the batch in a fixed order: the same bits for any thread count.
  for (int ch = 0; ch < c; ch++) {
    double g = 0, gx = 0;
    for (int i = 0; i < n; i++) g += sg[i * c + ch], gx += sgx[i * c + ch];
    db[ch] = (float)g;
    dw[ch] = (float)gx;
  }
}

void conv2d_direct(const float* x, int n, int cin, int h, int w, const float* wt, int cout, int k, int pad,
                   bool reflect, const float* bias, bool relu, float* y) {
  auto rows = simd_kernels().conv_direct_rows;
  const int ho = h + 2 * pad - k + 1, wo = w + 2 * pad - k + 1;
  // Zero-padded planes with room for a whole (widest) vector past the last column a row reads.
  const int hp = h + 2 * pad, wp = w + 2 * pad + 16;
  const size_t plane = (size_t)hp * wp;
  static std::vector<float> xp;  // one call at a time: the addon serialises its calls
  if (xp.size() < (size_t)cin * plane) xp.resize((size_t)cin * plane);
  for (int img = 0; img < n; img++) {
    ThreadPool::instance().parallel_for(cin, [&](int ci, int) {
      for (int r = 0; r < hp; r++)
        padded_row(x + (size_t)(img * cin + ci) * h * w, h, w, pad, reflect, r - pad, xp.data() + ci * plane + (size_t)r * wp, wp, 1,
                   bf16_active());
    });
    float* yi = y + (size_t)img * cout * ho * wo;
    ThreadPool::instance().parallel_for(ho, [&](int oh, int) { rows(xp.data(), wp, hp, cin, k, wt, cout, bias, relu, yi, ho, wo, oh, oh + 1); });
  }
}

void conv2d(const float* x, int n, int cin, int h, int w, const float* wt, int cout, int k, int pad, int stride,
            const float* bias, bool relu_, float* y, const float* wino, int wino_tile, bool reflect, int up,
            bool pool2x2, int blocked) {
  if (wino) {
    conv3x3_winograd(x, n, cin, h, w, wino, wino_tile, cout, pad, bias, relu_, y, nullptr, nullptr, reflect, up, pool2x2,
                     winograd_c16(cin, cout, wino_tile), blocked);
    return;
  }
  const Geometry g{cin, h, w, k, pad, stride, (h + 2 * pad - k) / stride + 1, (w + 2 * pad - k) / stride + 1};
  const int hw = g.ho * g.wo;
  for (int img = 0; img < n; img++) {
    float* yi = y + (size_t)img * cout * hw;
    conv_gemm(x + (size_t)img * cin * h * w, g, wt, cout, yi);
    // Bias (and ReLU) in one pass over the output.
    auto bias_relu = simd_kernels().bias_relu_span;
    ThreadPool::instance().parallel_for(cout, [&](int co, int) { bias_relu(yi + (size_t)co * hw, hw, bias[co], relu_); });
  }
}

// dx = (dx + add) * (mask > 0) over `size` elements, either operand optional.
static void add_and_mask(float* dx, const float* add, const float* mask, long size);

void conv2d_backward_data(const float* dy, int n, int cin, int h, int w, const float* wt, int cout, int k, int pad,
                          int stride, float* dx, const float* wino, int wino_tile, const float* add, const float* mask, bool c16,
                          int blocked) {
  const int ho = (h + 2 * pad - k) / stride + 1, wo = (w + 2 * pad - k) / stride + 1;
  if (wino) {
    // dx is the full correlation of dy with the weights turned by 180 degrees and Cin/Cout
    // swapped: again a 3x3 stride-1 convolution, with padding 2 - pad.
    conv3x3_winograd(dy, n, cout, ho, wo, wino, wino_tile, cin, 2 - pad, nullptr, false, dx, add, mask, false, 1, false,
                     c16 && winograd_c16(cout, cin, wino_tile), blocked);
    return;
  }
  const Geometry g{cin, h, w, k, pad, stride, ho, wo};
  const int hw = ho * wo, rows = cin * k * k, step = positions_per_chunk(g);
  std::memset(dx, 0, sizeof(float) * (size_t)n * cin * h * w);
  for (int img = 0; img < n; img++) {
    for (int p0 = 0; p0 < hw; p0 += step) {
      const int len = std::min(step, hw - p0);
      float* cols = cols_buffer((size_t)rows * len);
      // dcols [rows, range] = W [rows, Cout] * dY [Cout, range]
      sgemm(rows, len, cout, Operand{wt, cout, false}, Operand{dy + (size_t)img * cout * hw + p0, hw, false}, cols, len,
            false);
      col2im_add(cols, g, p0, len, dx + (size_t)img * cin * h * w);
    }
  }
  if (add || mask) add_and_mask(dx, add, mask, (long)n * cin * h * w);
}

void conv2d_backward_params(const float* dy, const float* x, int n, int cin, int h, int w, int cout, int k, int pad,
                            int stride, float* dw, float* db) {
  const Geometry g{cin, h, w, k, pad, stride, (h + 2 * pad - k) / stride + 1, (w + 2 * pad - k) / stride + 1};
  const int hw = g.ho * g.wo, rows = cin * k * k, step = positions_per_chunk(g);
  std::memset(dw, 0, sizeof(float) * (size_t)rows * cout);
  for (int img = 0; img < n; img++) {
    for (int p0 = 0; p0 < hw; p0 += step) {
      const int len = std::min(step, hw - p0);
      float* cols = cols_buffer((size_t)rows * len);
      im2col(x + (size_t)img * cin * h * w, g, p0, len, cols);
      // dW [rows, Cout] += cols [rows, range] * dY^T [range, Cout]
      sgemm(rows, cout, len, Operand{cols, len, false}, Operand{dy + (size_t)img * cout * hw + p0, hw, true}, dw, cout,
            true);
    }
  }
  for (int co = 0; co < cout; co++) {
    double s = 0;
    for (int img = 0; img < n; img++) {
      const float* p = dy + ((size_t)img * cout + co) * hw;
      for (int i = 0; i < hw; i++) s += p[i];
    }
    db[co] = (float)s;
  }
}

// First maximum of each window; padded cells never win; NaN wins (as in the reference).
static inline int window_argmax(const float* plane, int h, int w, int k, int stride, int pad, int oh, int ow) {
  const int h0 = oh * stride - pad, w0 = ow * stride - pad;
  const int h1 = std::min(h0 + k, h), w1 = std::min(w0 + k, w);
  int best = -1;
  float bv = 0.f;
  for (int ih = std::max(h0, 0); ih < h1; ih++)
    for (int iw = std::max(w0, 0); iw < w1; iw++) {
      const float v = plane[ih * w + iw];
      if (best < 0 || v > bv || (v != v && bv == bv)) {
        best = ih * w + iw;
        bv = v;
      }
    }
  return best;
}

void max_pool2d(const float* x, int planes, int h, int w, int k, int stride, int pad, float* y, int ho, int wo) {
  ThreadPool::instance().parallel_for(planes, [&](int p, int) {
    const float* plane = x + (size_t)p * h * w;
    float* out = y + (size_t)p * ho * wo;
    if (k == 2 && stride == 2 && pad == 0) {
      // Whole vectors of windows in the vectorised kernel; the rest of each row too, through a
      // vector's worth of copied windows (one window at a time in scalar code, the tails of
      // VGG19's 28- and 14-px pools took 0.7 ms, most of them: `node` on the op alone).
      const SimdKernels& simd = simd_kernels();
      const int vec_end = wo / simd.lanes * simd.lanes, rest = wo - vec_end;
      for (int oh = 0; oh < ho; oh++) {
        const float* r0 = plane + (size_t)(2 * oh) * w;
        const float* r1 = r0 + w;
        simd.pool2x2_forward_span(r0, r1, out + (size_t)oh * wo, vec_end);
        if (rest == 0) continue;
        alignas(64) float t0[32] = {}, t1[32] = {}, to[16];
        std::memcpy(t0, r0 + 2 * vec_end, sizeof(float) * 2 * rest);
        std::memcpy(t1, r1 + 2 * vec_end, sizeof(float) * 2 * rest);
        simd.pool2x2_forward_span(t0, t1, to, simd.lanes);
        std::memcpy(out + (size_t)oh * wo + vec_end, to, sizeof(float) * rest);
      }
      return;
    }
    for (int oh = 0; oh < ho; oh++)
      for (int ow = 0; ow < wo; ow++) out[oh * wo + ow] = plane[window_argmax(plane, h, w, k, stride, pad, oh, ow)];
  });
}

void max_pool2d_backward(const float* dy, const float* x, int planes, int h, int w, int k, int stride, int pad, float* dx,
                         int ho, int wo, bool relu_mask) {
  ThreadPool::instance().parallel_for(planes, [&](int p, int) {
    const float* plane = x + (size_t)p * h * w;
    float* d = dx + (size_t)p * h * w;
    const float* g = dy + (size_t)p * ho * wo;
    if (k == 2 && stride == 2 && pad == 0) {
      // Windows tile the plane: every cell is written once, no clearing pass. Whole vectors of
      // windows go to the vectorised kernel, the rest of each row too through copied windows (as
      // in max_pool2d). With relu_mask this is also the backward of the ReLU whose output x is.
      const SimdKernels& simd = simd_kernels();
      const int vec_end = wo / simd.lanes * simd.lanes, rest = wo - vec_end;
      for (int oh = 0; oh < ho; oh++) {
        const float* r0 = plane + (size_t)(2 * oh) * w;
        const float* r1 = r0 + w;
        float* d0 = d + (size_t)(2 * oh) * w;
        float* d1 = d0 + w;
        simd.pool2x2_backward_span(r0, r1, g + (size_t)oh * wo, d0, d1, vec_end, relu_mask);
        if (rest > 0) {
          alignas(64) float t0[32] = {}, t1[32] = {}, tg[16] = {}, u0[32], u1[32];
          std::memcpy(t0, r0 + 2 * vec_end, sizeof(float) * 2 * rest);
          std::memcpy(t1, r1 + 2 * vec_end, sizeof(float) * 2 * rest);
          std::memcpy(tg, g + (size_t)oh * wo + vec_end, sizeof(float) * rest);
          simd.pool2x2_backward_span(t0, t1, tg, u0, u1, simd.lanes, relu_mask);
          std::memcpy(d0 + 2 * vec_end, u0, sizeof(float) * 2 * rest);
          std::memcpy(d1 + 2 * vec_end, u1, sizeof(float) * 2 * rest);
        }
        if (w > 2 * wo) d0[w - 1] = d1[w - 1] = 0.f;  // odd width: the last column is in no window
      }
      if (h > 2 * ho) std::memset(d + (size_t)(h - 1) * w, 0, sizeof(float) * w);  // odd height
      return;
    }
    std::memset(d, 0, sizeof(float) * (size_t)h * w);
    for (int oh = 0; oh < ho; oh++)
      for (int ow = 0; ow < wo; ow++) {
        const int at = window_argmax(plane, h, w, k, stride, pad, oh, ow);
        if (!relu_mask || plane[at] > 0.f) d[at] += g[oh * wo + ow];
      }
  });
}

// f(b, r) for every output row r < ho of every 16-channel block b < blocks, in tasks of several
// consecutive rows, about 256 KB of input (two rows of w pixels of 64 bytes each a row): a task a
// row (1024 of them for pool1 at 512 px, 32 KB rows) paid the threads' shared counter on every row
// and broke each thread's read into pieces (the pools at 512 px 0.37 -> 0.23 ms at 512 channels,
// 1.58 -> 1.42 at 64; stand-alone, the two alternating).
template <class F>
static void pool_rows_c16(int blocks, int ho, int w, F f, bool streamed = false) {
  const long per = std::max(1, (256 << 10) / (2 * std::max(1, w) * 64));
  over_chunks((long)blocks * ho, per, [&](long lo, long len) {
    for (long i = lo; i < lo + len; i++) f((int)(i / ho), (int)(i % ho));
    if (streamed) std::atomic_thread_fence(std::memory_order_seq_cst);  // the rows' non-temporal stores, before the join
  });
}

void max_pool2x2_c16(const float* x, int n, int c, int h, int w, float* y) {
  const int ho = h / 2, wo = w / 2, blocks = n * c / 16;
  const SimdKernels& simd = simd_kernels();
  pool_rows_c16(blocks, ho, w, [&](int b, int r) {
    const float* x0 = x + ((size_t)b * h + 2 * r) * w * 16;
    simd.pool2x2_c16_forward_row(x0, x0 + (size_t)w * 16, y + ((size_t)b * ho + r) * wo * 16, wo);
  });
}

// An odd last row or column is in no window, and zeroed here: every cell of dx is written once.
void max_pool2x2_c16_backward(const float* dy, const float* x, int n, int c, int h, int w, float* dx, bool relu_mask) {
  const int ho = h / 2, wo = w / 2, blocks = n * c / 16;
  if (ho == 0 || wo == 0) {
    std::memset(dx, 0, sizeof(float) * n * c * h * w);
    return;
  }
  const SimdKernels& simd = simd_kernels();
  // dx of 4 MiB or more with non-temporal stores (streams_output): 64 channels at 512 px 2.11 / 2.35
  // -> 1.72 / 2.07 ms, 128 at 256 px 1.03 -> 0.85, 64 at 224 px 0.30 -> 0.20 (`node` on
  // maxPool2dBackward, alternating call by call); the style iteration at 256 px 80.6 -> 79.7 ms, at
  // 512 px 284.4 -> 284.2 (the bench's runner, alternating in one process).
  const bool stream = streams_output(4.0 * n * c * h * w, dx);
  pool_rows_c16(blocks, ho, w, [&](int b, int r) {
    const size_t row = (size_t)w * 16, at = ((size_t)b * h + 2 * r) * row;
    float* d0 = dx + at;
    simd.pool2x2_c16_backward_row(x + at, x + at + row, dy + ((size_t)b * ho + r) * wo * 16, d0, d0 + row, wo, relu_mask, stream);
    if (w > 2 * wo) {  // odd width
      std::memset(d0 + row - 16, 0, sizeof(float) * 16);
      std::memset(d0 + 2 * row - 16, 0, sizeof(float) * 16);
    }
    if (h > 2 * ho && r == ho - 1) std::memset(d0 + 2 * row, 0, sizeof(float) * row);  // odd height: the last row
  }, stream);
}

// y += a[0] x[0] + ... + a[3] x[3] over n floats: four weight rows per pass over y, so that y's
// loads and stores (an eighth of a row's bytes each for fp32) are paid once per four rows; also
// prefetches the four rows to come (`next`) over the same span, so that the stream of weight rows
// never waits for memory. W: fp32 rows, or bf16 ones (--precision bf16, AVX-512 only: half the
// bytes), each 16 values widened to fp32 by a shift into the high half.
constexpr int ROWS = 4;
static inline float widen(float v) { return v; }
static inline float widen(uint16_t v) { return from_bf16(v); }
#if defined(__x86_64__)
__attribute__((target("avx512f"))) static inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
__attribute__((target("avx512f"))) static inline __m512 load16(const uint16_t* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}

template <class W>
__attribute__((target("avx512f"))) static void axpy4_avx512(const float* a, const W* const* x, float* y, int n, const W* const* next) {
  const __m512 a0 = _mm512_set1_ps(a[0]), a1 = _mm512_set1_ps(a[1]), a2 = _mm512_set1_ps(a[2]), a3 = _mm512_set1_ps(a[3]);
  int j = 0;
  for (; j + 16 <= n; j += 16) {
    if (next && j % (64 / sizeof(W)) == 0)
      for (int q = 0; q < ROWS; q++) _mm_prefetch(reinterpret_cast<const char*>(next[q] + j), _MM_HINT_T0);
    __m512 acc = _mm512_fmadd_ps(a0, load16(x[0] + j), _mm512_loadu_ps(y + j));
    acc = _mm512_fmadd_ps(a1, load16(x[1] + j), acc);
    acc = _mm512_fmadd_ps(a2, load16(x[2] + j), acc);
    _mm512_storeu_ps(y + j, _mm512_fmadd_ps(a3, load16(x[3] + j), acc));
  }
  for (; j < n; j++)
    for (int q = 0; q < ROWS; q++) y[j] += a[q] * widen(x[q][j]);
}

__attribute__((target("avx2,fma"))) static void axpy4_avx2(const float* a, const float* const* x, float* y, int n, const float* const* next) {
  const __m256 a0 = _mm256_set1_ps(a[0]), a1 = _mm256_set1_ps(a[1]), a2 = _mm256_set1_ps(a[2]), a3 = _mm256_set1_ps(a[3]);
  int j = 0;
  for (; j + 8 <= n; j += 8) {
    if (next && j % 16 == 0)
      for (int q = 0; q < ROWS; q++) _mm_prefetch(reinterpret_cast<const char*>(next[q] + j), _MM_HINT_T0);
    __m256 acc = _mm256_fmadd_ps(a0, _mm256_loadu_ps(x[0] + j), _mm256_loadu_ps(y + j));
    acc = _mm256_fmadd_ps(a1, _mm256_loadu_ps(x[1] + j), acc);
    acc = _mm256_fmadd_ps(a2, _mm256_loadu_ps(x[2] + j), acc);
    _mm256_storeu_ps(y + j, _mm256_fmadd_ps(a3, _mm256_loadu_ps(x[3] + j), acc));
  }
  for (; j < n; j++)
    for (int q = 0; q < ROWS; q++) y[j] += a[q] * x[q][j];
}
#endif

template <class W>
static void axpy4(const float* a, const W* const* x, float* y, int n, const W* const* next) {
#if defined(__x86_64__)
  if (active_isa() == Isa::Avx512) return axpy4_avx512(a, x, y, n, next);
  if constexpr (std::is_same_v<W, float>)
    if (active_isa() == Isa::Avx2) return axpy4_avx2(a, x, y, n, next);
#endif
  for (int j = 0; j < n; j++) {
    if (next && j % 16 == 0)
      for (int q = 0; q < ROWS; q++) __builtin_prefetch(next[q] + j);
    for (int q = 0; q < ROWS; q++) y[j] += a[q] * widen(x[q][j]);
  }
}

// y [m, n] += x [m, k] w [k, n] for a few rows of x: this streams the weights (fc6: 411 MB) and is
// bound by memory. Weight rows whose inputs are all zero (after a ReLU, about half) are skipped;
// the others are split over the threads as whole rows, read contiguously and prefetched a row
// ahead, each thread summing into its own accumulator. (Columns split over threads, hopping 8 KB
// at a time, reached half the memory bandwidth.) With `Round`, the fp32 rows are rounded to
// bfloat16 as they are read, four at a time into a copy in cache.
template <class W, bool Round = false>
static void linear_streamed(const float* x, int m, int k, const W* w, int n, float* y) {
  static std::vector<int> live;  // one call at a time: the addon serialises its calls
  live.clear();
  for (int p = 0; p < k; p++)
    for (int i = 0; i < m; i++)
      if (x[(size_t)i * k + p] != 0.f) {
        live.push_back(p);
        break;
      }
  ThreadPool& pool = ThreadPool::instance();
  const int t = pool.threads();
  static std::vector<float> acc;
  acc.assign((size_t)t * m * n, 0.f);
  static std::vector<W> zero;
  zero.assign(n, W(0));
  pool.parallel_for(t, [&](int ti, int) {
    const size_t r0 = live.size() * ti / t, r1 = live.size() * (ti + 1) / t;
    float* yt = acc.data() + (size_t)ti * m * n;
    // Four live rows at a time; past the thread's last row, a zero row with coefficient 0.
    const auto row = [&](size_t r) { return r < r1 ? w + (size_t)live[r] * n : zero.data(); };
    thread_local std::vector<float> rounded;
    if constexpr (Round) rounded.resize((size_t)ROWS * n);
    for (size_t r = r0; r < r1; r += ROWS) {
      const W* rows[ROWS] = {row(r), row(r + 1), row(r + 2), row(r + 3)};
      if constexpr (Round)
        for (int q = 0; q < ROWS && r + q < r1; q++) {
          round_bf16_span(rows[q], rounded.data() + (size_t)q * n, n);
          rows[q] = rounded.data() + (size_t)q * n;
        }
      const W* ahead[ROWS] = {row(r + 4), row(r + 5), row(r + 6), row(r + 7)};
      const W* const* next = r + ROWS < r1 ? ahead : nullptr;
      for (int i = 0; i < m; i++) {
        float a[ROWS];
        for (int q = 0; q < ROWS; q++) a[q] = r + q < r1 ? x[(size_t)i * k + live[r + q]] : 0.f;
        if (a[0] == 0.f && a[1] == 0.f && a[2] == 0.f && a[3] == 0.f) continue;
        axpy4(a, rows, yt + (size_t)i * n, n, next);
        next = nullptr;  // once per group
      }
    }
  });
  for (int ti = 0; ti < t; ti++) {
    const float* yt = acc.data() + (size_t)ti * m * n;
    for (size_t j = 0; j < (size_t)m * n; j++) y[j] += yt[j];
  }
}

void linear(const float* x, int m, int k, const float* w, int n, const float* b, float* y) {
  for (int i = 0; i < m; i++) std::memcpy(y + (size_t)i * n, b, sizeof(float) * n);
  if (m > 4)
    sgemm(m, n, k, Operand{x, k, false}, Operand{w, n, false}, y, n, true);
  else
    linear_streamed(x, m, k, w, n, y);
}

// x rounded too: both operands bf16. The weights as bf16 bits, or as fp32 rounded as they are read.
template <class W>
static void linear_bf16_of(const float* x, int m, int k, const W* w, int n, const float* b, float* y) {
  for (int i = 0; i < m; i++) std::memcpy(y + (size_t)i * n, b, sizeof(float) * n);
  static std::vector<float> xr;
  xr.assign(x, x + (size_t)m * k);
  round_bf16_span(xr.data(), (long)m * k);
  linear_streamed<W, std::is_same_v<W, float>>(xr.data(), m, k, w, n, y);
}

void linear_bf16(const float* x, int m, int k, const uint16_t* w, int n, const float* b, float* y) { linear_bf16_of(x, m, k, w, n, b, y); }
void linear_bf16(const float* x, int m, int k, const float* w, int n, const float* b, float* y) { linear_bf16_of(x, m, k, w, n, b, y); }

void channels_last(const float* x, int n, int c, int hw, float* y) {
  for (int i = 0; i < n; i++) {
    const float* xi = x + (size_t)i * c * hw;
    float* yi = y + (size_t)i * c * hw;
    for (int p = 0; p < hw; p++)
      for (int ch = 0; ch < c; ch++) yi[(size_t)p * c + ch] = xi[(size_t)ch * hw + p];
  }
}

void relu(const float* x, float* y, long size) {
  auto span = simd_kernels().relu_span;
  for_chunks(size, [&](long i0, long i1) { span(x + i0, y + i0, i1 - i0); });
}

void relu_backward(const float* dy, const float* x, float* dx, long size) {
  auto span = simd_kernels().relu_backward_span;
  for_chunks(size, [&](long i0, long i1) { span(dy + i0, x + i0, dx + i0, i1 - i0); });
}

void add_and_mask_span(float* dst, const float* add, const float* mask, long n) {
  simd_kernels().add_and_mask_span(dst, add, mask, n);
}

static void add_and_mask(float* dx, const float* add, const float* mask, long size) {
  for_chunks(size, [&](long i0, long i1) {
    add_and_mask_span(dx + i0, add ? add + i0 : nullptr, mask ? mask + i0 : nullptr, i1 - i0);
  });
}

}  // namespace pastiche
