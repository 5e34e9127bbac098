// Winograd F(4x4, 3x3) and F(6x6, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural
// Networks", 2015): each m x m output tile is A^T [ (G g G^T) .* (B^T d B) ] A over an
// (m+2) x (m+2) input tile d, i.e. 36 multiplications per 4x4 tile and channel pair (64 per 6x6)
// instead of 144 (324). The element-wise products over all channels become 36 (64) independent
// GEMMs: M[xi] (Cout x tiles) = U[xi] (Cout x Cin) V[xi] (Cin x tiles). U is computed once per
// weight tensor (the caller caches it); the input transform writes straight into the GEMM's packed
// operand layout, 8 tiles per vector; tiles go in blocks sized for the cache.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <vector>

#include "gemm.h"
#include "kernels.h"
#include "threadpool.h"
#include "winograd_kernels.h"

namespace pastiche {

namespace {

#include "winograd_lines.inc"  // g_transform, shared with the vector kernels

int round_up(int v, int to) { return (v + to - 1) / to * to; }

WinogradStages g_stages;

double seconds_now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// A tile block's stages into winograd_stages, the output stage ending now (s0, s1, s2: when the
// input stage, the GEMMs and the output stage began): the GEMMs' useful products; each transform's
// bytes as the tiles' pixels read or written once and V or M written or read once.
void count_stages(double s0, double s1, double s2, int m, int cin, int cout, int nt, bool pool2x2, bool fused = false, bool streamed = false) {
  const double s3 = seconds_now(), area = (double)nt * m * m * 4, planes = (m + 2) * (m + 2);
  g_stages.input_s += s1 - s0;
  g_stages.gemm_s += s2 - s1;
  g_stages.output_s += s3 - s2;
  g_stages.gemm_flops += 2.0 * planes * cout * cin * nt;
  g_stages.input_bytes += cin * (area + 4.0 * planes * nt);
  g_stages.output_bytes += cout * ((pool2x2 ? area / 4 : area) + 4.0 * planes * nt);
  if (fused) g_stages.fused_tiles += nt;
  if (streamed) g_stages.streamed_tiles += nt;
}

// Distance between the planes of U, V and M. The transforms touch every plane for every tile;
// planes a multiple of 4 KiB apart would all fall into the same L1 set and evict each other (and
// alias in the store buffer): one cache line more per plane measured 4x faster transforms.
size_t plane_stride(size_t floats) { return floats + 16; }

// Tiles a block: V and M for a block take about 12 MiB, within L3; a multiple of NR. Every block
// streams all of U, so where U itself is large (512 channels: 38 MB) blocks are made 4x larger:
// reading U 4x less often saves more than V and M spilling from L3 costs (measured at 64x64x512:
// 32 -> 22 ms; smaller U measured no better). `cout`: as U holds it (rounded up to its panels).
int tile_block(int tiles, int planes, int cin, int cout) {
  const double u_bytes = 4.0 * planes * cin * cout;
  const double budget = (u_bytes >= 16.0 * 1024 * 1024 ? 48.0 : 12.0) * 1024 * 1024;
  const int budget_tiles = (int)(budget / (4.0 * planes * (cin + cout)));
  return std::max(NR, std::min(round_up(tiles, NR), budget_tiles / NR * NR));
}

// Whether V for `tiles` tiles is written with non-temporal stores: where it is megabytes (beyond
// L2), a whole cache line a store, since a plain store first reads the line it writes from memory.
// Measured per layer on the stage timers (alternating processes): 64 channels at 224 px 2.2 -> 1.6
// ms, 256 at 56 px 0.9 -> 0.65, 512 at 28 px 0.57 -> 0.45, the GEMMs that read V next no slower;
// at 14 px (1.2 MB) 0.18 -> 0.20, so small blocks keep plain stores.
bool streams_v(int planes, int cin, int tiles) { return 4.0 * planes * cin * tiles > 2.0 * 1024 * 1024; }

// Scratch reused across calls: no allocation once warmed up.
HugeScratch g_vp, g_m;

// The fused channel-blocked path (conv3x3_winograd_c16_fused): for U up to 4 MiB (64 and 128
// channels); a task's V and M up to 4 MiB, i.e. a whole tile row at VGG19's sizes.
constexpr double FUSED_U_BYTES = 4.0 * 1024 * 1024, FUSED_VM_BYTES = 4.0 * 1024 * 1024;

}  // namespace

// Not on AVX2-only CPUs: there its AVX2 build measured at best even with the 8-lane path (whole
// layers, the two alternating in processes on an AVX2-only EPYC, 21 runs x 3 rounds, 8-lane vs
// this path with U^T in 16-column blocks for its 6 x 16 tiles: 256 ch at 56 px 7.0-7.3 ms vs
// 6.7-7.2, 512 at 28 px 6.4-6.5 vs 6.4-7.4, 512 at 14 px 1.9-2.0 vs 2.8-5.1; with 64-column
// blocks, or K in slices of 128 or 256, its GEMMs were slower still): the GEMMs there are
// compute-bound at ~82% of the FMA peak, and what the transforms save is smaller than on AVX-512.
//
// F(6x6) as well as F(4x4) since its GEMMs store M^T with non-temporal stores (c16_tile): before,
// at 64 and 128 input channels they ran 9-40% slower than the 8-lane path's packed GEMMs; now each
// F(6x6) layer takes 0.81-1.00x the 8-lane path's time (64 -> 64 channels at 224 px pooled 0.90x,
// 128 -> 128 at 112 px 0.91x, 256 -> 256 at 56 px 0.90x, 128 -> 128 at 256 px pooled 0.81x), the
// one exception 64 -> 64 at 512 px unpooled (1.03x); each layer alone, the variants alternating run
// by run in one process, 6-30 runs (stop 33's note).
const WinogradC16& active_winograd_c16() {
  return active_isa() == Isa::Avx512 ? avx512::winograd_c16 : active_isa() == Isa::Avx2 ? avx2::winograd_c16 : portable::winograd_c16;
}

bool winograd_c16(int cin, int cout, int m) { return (m == 4 || m == 6) && cin % 16 == 0 && cout % 16 == 0 && cpu_has_avx512(); }

size_t winograd_weights_size(int cin, int cout, int m) {
  return (size_t)(m + 2) * (m + 2) * plane_stride((size_t)round_up(cout, MR) * cin);
}

void winograd_weights(const float* wt, int wcin, int wcout, bool rotate, int m, float* up, bool c16_layout, bool round) {
  if (round) {
    // A rounded copy of the layer's weights (9.4 MB at most in VGG19) for the transform alone: the
    // network's 80 MB were kept rounded beside the fp32 ones before, and rounding them took ~105 ms.
    static HugeScratch rounded;
    const long size = 9L * wcin * wcout;
    float* r = rounded.get<float>(size);
    round_bf16(wt, r, size);
    wt = r;
  }
  // Forward: a conv from wcin to wcout channels with g[kh][kw] = w[ci][kh][kw][co].
  // Rotated (for the gradient to the data): from wcout to wcin channels with the kernel turned by
  // 180 degrees, g'[kh][kw] for (in = co, out = ci) = w[ci][2-kh][2-kw][co].
  const int cin = rotate ? wcout : wcin, cout = rotate ? wcin : wcout;
  // The channel-blocked path's GEMMs (M^T = V^T U^T) read U^T in blocks of C16_BLOCK output
  // channels (the last one narrower), each row-major: a contiguous stream.
  const bool c16 = (c16_layout || !rotate) && winograd_c16(cin, cout, m);
  const int coutp = round_up(cout, c16 ? 16 : MR);
  const int t = m + 2, planes = t * t;
  const size_t up_stride = plane_stride((size_t)coutp * cin);
  advise_huge(up, winograd_weights_size(cin, cout, m) * sizeof(float));
  if (c16) {
    // 16 output channels a vector (c16_weights), as this layout keeps them side by side: the
    // scalar loop's arithmetic and bits, a full-size VGG19's forward transforms 115 -> 26 ms and its
    // rotated ones 77 -> 35 (`node` on the addon's winogradWeights, every layer, its pages already
    // mapped; mapping them first costs more than either: the first forward pass 349 -> 318 ms).
    const auto weights16 = active_winograd_c16().weights;
    ThreadPool::instance().parallel_for(cout / 16, [&](int block, int) {
      const int co0 = block * 16, b0 = co0 / C16_BLOCK * C16_BLOCK, bw = std::min(C16_BLOCK, cout - b0);
      weights16(wt, wcin, wcout, rotate, m, co0, cin, up + (size_t)b0 * cin + co0 - b0, bw, up_stride);
    });
    return;
  }
  // Packed as GEMM A panels [xi][co panel][ci][MR], one weight at a time.
  ThreadPool::instance().parallel_for(coutp / MR, [&](int panel, int) {
    for (int ci = 0; ci < cin; ci++) {
      for (int r = 0; r < MR; r++) {
        const int co = panel * MR + r;
        float u[64];
        if (co < cout) {
          float g[9];
          for (int kh = 0; kh < 3; kh++)
            for (int kw = 0; kw < 3; kw++)
              g[kh * 3 + kw] = rotate ? wt[((size_t)(co * 3 + 2 - kh) * 3 + 2 - kw) * wcout + ci]
                                      : wt[((size_t)(ci * 3 + kh) * 3 + kw) * wcout + co];
          float tmp[24];  // G g, column kw in tmp[kw*t .. kw*t+t-1]
          for (int kw = 0; kw < 3; kw++) g_transform(m, g + kw, 3, tmp + kw * t);
          for (int i = 0; i < t; i++) {
            const float row[3] = {tmp[i], tmp[t + i], tmp[2 * t + i]};
            g_transform(m, row, 1, u + i * t);
          }
        } else {
          std::fill(u, u + planes, 0.f);
        }
        for (int xi = 0; xi < planes; xi++) up[xi * up_stride + (size_t)panel * MR * cin + (size_t)ci * MR + r] = u[xi];
      }
    }
  });
}

namespace {

// Where U is small and x and y are both nChw16c (an inference pass, or a gradient to the data
// between channel-blocked layers, its epilogue in the output stage's store), a task takes one tile row
// through the three stages on one thread: V and M stay in its caches instead of going to memory
// and back (at 64 channels 224 px they are 24 MB each), the only joins are the layer's ends, and
// the GEMMs get a whole row of tiles at once. Against the phased path below, same bits, the two
// alternating call by call in one process (node on native.conv2d, 21 runs): 64 -> 64 channels at
// 224 px pooled 3.81 -> 3.38-3.49 ms, 64 -> 128 at 112 px 1.83-1.86 -> 1.64-1.68, 128 -> 128 at
// 112 px pooled 2.82-2.85 -> 2.78-2.86, 64 -> 64 at 512 px 20.1-22.0 -> 17.6-19.5. Runs of half a
// row, V and M within L2, were slower (a shorter GEMM), and so was 256 channels (16.7 MB of U read
// from memory once per tile row: 2.88 -> 3.27 ms at 56 px); U up to 4 MiB stays in cache.
bool fuses_stages(int planes, int cin, int cout, int blocked) {
  return blocked == (X_BLOCKED | Y_BLOCKED) && 4.0 * planes * cin * cout <= FUSED_U_BYTES;
}

// Pixels [px, px + count) of row r of one nChw16c block (hs x ws pixels of 16 floats), zero
// outside the picture, into dst (bf16-rounded with `bf16`, as padded_row does): a band row of
// either channel-blocked path (the whole padded row, or the fused path's run of it).
void blocked_segment(const float* block, int hs, int ws, int r, int px, int count, float* dst, bool bf16) {
  if (r < 0 || r >= hs) {
    std::memset(dst, 0, sizeof(float) * 16 * count);
    return;
  }
  const int lo = std::clamp(-px, 0, count), hi = std::clamp(ws - px, lo, count);
  std::memset(dst, 0, sizeof(float) * 16 * lo);
  if (hi > lo) std::memcpy(dst + 16 * lo, block + ((size_t)r * ws + px + lo) * 16, sizeof(float) * 16 * (hi - lo));
  std::memset(dst + 16 * hi, 0, sizeof(float) * 16 * (count - hi));
  if (bf16) round_bf16_span(dst + 16 * lo, 16L * (hi - lo));
}

void conv3x3_winograd_c16_fused(const WinogradC16& k16, const float* x, int n, int cin, int h, int w, const float* up, int m,
                                int cout, int pad, const float* bias, bool relu, float* y, bool pool2x2, const float* add,
                                const float* mask) {
  ThreadPool& pool = ThreadPool::instance();
  const auto input = m == 4 ? k16.input : k16.input6;
  const auto output = m == 4 ? k16.output : k16.output6;
  const bool bf16 = bf16_active();
  const int t6 = m + 2, planes = t6 * t6;
  const int ho = h + 2 * pad - 2, wo = w + 2 * pad - 2;
  const int th = (ho + m - 1) / m, tw = (wo + m - 1) / m;
  const int hq = pool2x2 ? ho / 2 : ho, wq = pool2x2 ? wo / 2 : wo, q = pool2x2 ? m / 2 : m;
  const int cbi = cin / 16, cbo = cout / 16;
  const size_t up_stride = plane_stride((size_t)cout * cin);
  // A tile row a task, or runs of it as even as they go where its V and M would pass FUSED_VM_BYTES.
  const int most = std::max(1, (int)(FUSED_VM_BYTES / (4.0 * planes * (cin + cout))));
  const int runs = (tw + most - 1) / most, longest = (tw + runs - 1) / runs;
  const size_t vs = plane_stride((size_t)longest * cin), ms = plane_stride((size_t)longest * cout);
  const int bw = longest * m + 2;  // a band row: the padded pixels under a run
  const std::vector<float> no_bias(bias ? 0 : cout);
  std::vector<double> busy((size_t)pool.threads() * 3);
  // y with non-temporal stores from 4 MiB (streams_output). Each layer alone, the two alternating
  // call by call (`node` on native.conv2d, 30-80 runs): 64 -> 64 channels at 512 px 19.5-20.0 ->
  // 18.0-18.4 ms (the output stage 4.7 -> 3.2), at 224 px 4.26 -> 3.94, 128 -> 128 at 256 px 15.9 ->
  // 14.9; the style iteration at 256 px 88.2 -> 85.7 ms, at 512 px 307.8 -> 303.4 (`node` on the
  // bench's runner, alternating). In the phased path (256 channels up) the same measured no faster
  // (512 px 311 -> 308 ms, 256 px 83.3 -> 85.5); VGG19 224's inference pass, whose fused layers are
  // pooled (3.2 MB), is as fast.
  const bool stream_y = streams_output(4.0 * n * cout * hq * wq, y);
  for (int img = 0; img < n; img++) {
    const float* x_img = x + (size_t)img * cin * h * w;
    float* y_img = y + (size_t)img * cout * hq * wq;
    const float* add_img = add ? add + (size_t)img * cout * hq * wq : nullptr;
    const float* mask_img = mask ? mask + (size_t)img * cout * hq * wq : nullptr;
    pool.parallel_for(th * runs, [&](int task, int thread) {
      const int ty = task / runs, run = task % runs;
      const int t0 = tw * run / runs, nt = tw * (run + 1) / runs - t0;
      // V and M in 2 MiB pages, as the phased path's. From the heap (std::vector) they were on
      // 4 KiB pages: VGG19 224 41.85-41.99 -> 41.03-41.14 ms with these, conv1_2 3.69-3.75 ->
      // 3.43-3.58 (per-layer timers, the two alternating pass by pass, 36 pairs, twice).
      thread_local std::vector<float> band;
      thread_local HugeScratch v_scratch, m_scratch;
      band.resize((size_t)t6 * bw * 16);
      float* v = v_scratch.get<float>(planes * vs);
      float* mt = m_scratch.get<float>(planes * ms);
      const double s0 = seconds_now();
      for (int cb = 0; cb < cbi; cb++) {
        const float* block = x_img + (size_t)cb * 16 * h * w;
        for (int i = 0; i < t6; i++) blocked_segment(block, h, w, ty * m + i - pad, t0 * m - pad, nt * m + 2, band.data() + (size_t)i * bw * 16, bf16);
        for (int t = 0; t < nt; t++) input(band.data() + (size_t)t * m * 16, (size_t)bw * 16, v + (size_t)t * cin + cb * 16, vs, false);
      }
      const double s1 = seconds_now();
      for (int xi = 0; xi < planes; xi++) k16.gemm_cached(cin, v + xi * vs, cin, nt, up + xi * up_stride, cout, mt + xi * ms, cout);
      const double s2 = seconds_now();
      const int y0 = ty * q, x0 = t0 * q, rows = std::min(q, hq - y0), cols = std::min(nt * q, wq - x0);
      if (rows > 0 && cols > 0)
        for (int cb = 0; cb < cbo; cb++) {
          const size_t at = (size_t)cb * 16 * hq * wq + ((size_t)y0 * wq + x0) * 16;
          // With the gradient epilogue as the output is stored: the gradients to relu1_1 and
          // relu2_1 of a style iteration come this way (64 channels at 512 px from and to nChw16c
          // 23.8 -> 21.4 ms alone against the phased path; the 512 px iteration 321 / 315 -> 318 /
          // 312 ms, `node` on the op and on the bench's runner, the two paths alternating; the
          // epilogue in the store rather than over the rows just written, 23.0 -> 19.8 ms alone).
          output(mt + cb * 16, cout, ms, nt, (bias ? bias : no_bias.data()) + cb * 16, relu, pool2x2, y_img + at,
                 (size_t)hq * wq, (size_t)wq * 16, rows, cols, true, stream_y, add_img ? add_img + at : nullptr, mask_img ? mask_img + at : nullptr);
        }
      if (stream_y) std::atomic_thread_fence(std::memory_order_seq_cst);
      const double s3 = seconds_now();
      busy[thread * 3] += s1 - s0;
      busy[thread * 3 + 1] += s2 - s1;
      busy[thread * 3 + 2] += s3 - s2;
    });
  }
  // The stage timers get each stage's thread time over the threads: the stages overlap here.
  double st[3] = {0, 0, 0};
  for (size_t i = 0; i < busy.size(); i++) st[i % 3] += busy[i] / pool.threads();
  const double now = seconds_now();
  count_stages(now - st[0] - st[1] - st[2], now - st[1] - st[2], now - st[2], m, cin, cout, n * th * tw, pool2x2, true, stream_y);
}

// The channel-blocked path (winograd_c16.inc): F(4x4) or F(6x6) with cin and cout multiples of 16
// and U in winograd_weights' c16 layout; the gradient epilogue (add, mask: laid out as y) in its
// output stage (as an nChw16c y is stored; over the rows just written for NCHW). Where fuses_stages
// holds, the fused path above; else per tile block:
// V^T ([planes][tile][cin]) from the input rows interleaved 16 channels at a time (their border and
// upsampling by padded_row, as below; rows of an nChw16c x are copied as they are), M^T = V^T U^T
// ([planes][tile][cout]), then the output rows (NCHW, or nChw16c ones as the transform leaves them).
void conv3x3_winograd_c16(const float* x, int n, int cin, int h, int w, const float* up, int m, int cout, int pad,
                          const float* bias, bool relu, float* y, const float* add, const float* mask, bool reflect, int upsample,
                          bool pool2x2, int blocked) {
  ThreadPool& pool = ThreadPool::instance();
  const WinogradC16& k16 = active_winograd_c16();
  const int t6 = m + 2, planes = t6 * t6;
  if (fuses_stages(planes, cin, cout, blocked))
    return conv3x3_winograd_c16_fused(k16, x, n, cin, h, w, up, m, cout, pad, bias, relu, y, pool2x2, add, mask);
  const auto input = m == 4 ? k16.input : k16.input6;
  const auto output = m == 4 ? k16.output : k16.output6;
  const bool bf16 = bf16_active();
  const int ho = h + 2 * pad - 2, wo = w + 2 * pad - 2;
  const int th = (ho + m - 1) / m, tw = (wo + m - 1) / m, tiles = th * tw;
  const int hq = pool2x2 ? ho / 2 : ho, wq = pool2x2 ? wo / 2 : wo, q = pool2x2 ? m / 2 : m;
  const int wp = tw * m + 2;  // the padded rows every tile's window lies in
  const int cbi = cin / 16, cbo = cout / 16;
  const size_t up_stride = plane_stride((size_t)cout * cin);
  const int tb = tile_block(tiles, planes, cin, cout);
  const size_t vs = plane_stride((size_t)tb * cin), ms = plane_stride((size_t)tb * cout);
  float* vp = g_vp.get<float>(planes * vs);
  float* mb = g_m.get<float>(planes * ms);
  const std::vector<float> no_bias(bias ? 0 : cout);
  for (int img = 0; img < n; img++) {
    const int hs = h / upsample, ws = w / upsample;
    const float* x_img = x + (size_t)img * cin * hs * ws;
    float* y_img = y + (size_t)img * cout * hq * wq;
    const float* add_img = add ? add + (size_t)img * cout * hq * wq : nullptr;
    const float* mask_img = mask ? mask + (size_t)img * cout * hq * wq : nullptr;
    for (int t0 = 0; t0 < tiles; t0 += tb) {
      const int nt = std::min(tb, tiles - t0), tr0 = t0 / tw, tr1 = (t0 + nt - 1) / tw;
      const bool stream_v = streams_v(planes, cin, nt);
      const double s0 = seconds_now();
      // 16 channels and a range of tile rows a task (the ranges only where there are too few
      // 16-channel groups for the threads), a tile row at a time: the m + 2 padded rows under it
      // interleaved into a band (in L1 at VGG19's sizes; the next tile row reuses the last 2), then
      // its tiles transformed.
      const int rows_in = tr1 - tr0 + 1, ranges = std::min(rows_in, (2 * pool.threads() + cbi - 1) / cbi);
      pool.parallel_for(cbi * ranges, [&](int task, int) {
        const int cb = task % cbi, range = task / cbi;
        const int ty0 = tr0 + rows_in * range / ranges, ty1 = tr0 + rows_in * (range + 1) / ranges;
        const int width = round_up(wp, 16);
        thread_local std::vector<float> rows16, band;
        rows16.resize((size_t)16 * width);
        band.resize((size_t)t6 * wp * 16);
        const float* planes16 = x_img + (size_t)cb * 16 * hs * ws;  // for nChw16c: the block's rows
        const float* rows[16];
        for (int l = 0; l < 16; l++) rows[l] = rows16.data() + (size_t)l * width;
        // Padded row lr (input row lr - pad) of the 16 channels into band row i.
        auto interleave = [&](int lr, int i) {
          const int ahead = (lr - pad + 4) / upsample;
          if (ahead >= 0 && ahead < hs)
            for (int l = 0; l < 16; l++) {
              const char* src = reinterpret_cast<const char*>(planes16 + (size_t)l * hs * ws + (size_t)ahead * ws);
              for (size_t o = 0; o < ws * sizeof(float); o += 64) __builtin_prefetch(src + o, 0, 3);
            }
          for (int l = 0; l < 16; l++)
            padded_row(planes16 + (size_t)l * hs * ws, hs, ws, pad, reflect, lr - pad, rows16.data() + (size_t)l * width, wp, upsample, bf16);
          k16.interleave(rows, wp, band.data() + (size_t)i * wp * 16);
        };
        // The same from an nChw16c x (no reflect, no upsample): its row, already interleaved.
        auto copy_row = [&](int lr, int i) { blocked_segment(planes16, hs, ws, lr - pad, -pad, wp, band.data() + (size_t)i * wp * 16, bf16); };
        for (int ty = ty0; ty < ty1; ty++) {
          int from = 0;
          if (ty > ty0) {
            std::memcpy(band.data(), band.data() + (size_t)m * wp * 16, sizeof(float) * 2 * wp * 16);
            from = 2;
          }
          for (int i = from; i < t6; i++) (blocked & X_BLOCKED) ? copy_row(ty * m + i, i) : interleave(ty * m + i, i);
          const int ta = std::max(t0, ty * tw), tz = std::min(t0 + nt, (ty + 1) * tw);
          for (int t = ta; t < tz; t++)
            input(band.data() + (size_t)(t - ty * tw) * m * 16, (size_t)wp * 16, vp + (size_t)(t - t0) * cin + cb * 16, vs, stream_v);
        }
        if (stream_v) std::atomic_thread_fence(std::memory_order_seq_cst);
      });
      const double s1 = seconds_now();
      // M^T[xi] (nt x cout) = V^T[xi] (nt x cin) U^T[xi], all of K at once: a column block of U^T is
      // 64 KB at 256 channels, past L1 whatever the slice, and at 512 channels one pass beat two
      // slices of 256 (36 planes on 2 threads, stand-alone: 3.16 -> 2.92 ms for 49 tiles, 1.41 ->
      // 1.29 for 16; the layer's GEMM stage at 14 px 1.57-1.80 -> 1.35-1.64 ms).
      pool.parallel_for(planes, [&](int xi, int) {
        k16.gemm(cin, vp + xi * vs, cin, nt, up + xi * up_stride, cout, mb + xi * ms, cout);
        std::atomic_thread_fence(std::memory_order_seq_cst);  // M^T's non-temporal stores, before the output stage reads them
      });
      const double s2 = seconds_now();
      // A task is a tile row's tiles in this block for 16 channels: tasks that split a row between
      // threads wrote the same cache lines from both (a 64-byte row segment straddles two lines where
      // rows are not aligned), and the output stage took 2-3x its time.
      pool.parallel_for((tr1 - tr0 + 1) * cbo, [&](int task, int) {
        const int ty = tr0 + task / cbo, cb = task % cbo;
        const int first = std::max(t0, ty * tw), last = std::min(t0 + nt, (ty + 1) * tw);
        const int y0 = ty * q, x0 = (first - ty * tw) * q;
        const int rows = std::min(q, hq - y0), cols = std::min((last - first) * q, wq - x0);
        if (rows <= 0 || cols <= 0) return;
        const bool yb = blocked & Y_BLOCKED;
        const size_t at = (size_t)cb * 16 * hq * wq + ((size_t)y0 * wq + x0) * (yb ? 16 : 1);
        // An nChw16c y takes the gradient epilogue as it is stored, reading add and mask in the
        // same 16-channel vectors (the 512 px style iteration 321 / 331 -> 314 / 327 ms against a
        // pass over the rows just written, `node` on the bench's runner, the two alternating).
        output(mb + (size_t)(first - t0) * cout + cb * 16, cout, ms, last - first, (bias ? bias : no_bias.data()) + cb * 16, relu,
               pool2x2, y_img + at, (size_t)hq * wq, (size_t)wq * (yb ? 16 : 1), rows, cols, yb, false,
               yb && add_img ? add_img + at : nullptr, yb && mask_img ? mask_img + at : nullptr);
        if ((!add_img && !mask_img) || yb) return;
        // NCHW planes: the epilogue over the rows just written (still in cache), a contiguous span
        // each: inside the transform's stores, 16 planes of each operand read at once, the gradient
        // of 64 channels at 512 px from an nChw16c dy took 30.7 ms, so 28.4-28.9 (`node` on the op).
        for (int r = 0; r < rows; r++)
          for (int l = 0; l < 16; l++) {
            const size_t from = at + (size_t)l * hq * wq + (size_t)r * wq;
            add_and_mask_span(y_img + from, add_img ? add_img + from : nullptr, mask_img ? mask_img + from : nullptr, cols);
          }
      });
      count_stages(s0, s1, s2, m, cin, cout, nt, pool2x2);
    }
  }
}

}  // namespace

void conv3x3_winograd(const float* x, int n, int cin, int h, int w, const float* up, int m, int cout, int pad,
                      const float* bias, bool relu, float* y, const float* add, const float* mask, bool reflect,
                      int upsample, bool pool2x2, bool c16, int blocked) {
  if (c16) return conv3x3_winograd_c16(x, n, cin, h, w, up, m, cout, pad, bias, relu, y, add, mask, reflect, upsample, pool2x2, blocked);
  ThreadPool& pool = ThreadPool::instance();
  const WinogradTransforms& transforms = active_isa() != Isa::Portable ? avx2::winograd : portable::winograd;
  const auto input16 = m == 4 ? transforms.input16 : transforms.input16_f6;
  static_assert(NR == 16, "the transforms fill and read one 16-tile GEMM panel at a time");
  const bool bf16 = bf16_active();  // --precision bf16: the input rounded as its rows are copied; products in fp32
  const int t6 = m + 2, planes = t6 * t6;  // window side and transformed planes: 6 and 36, or 8 and 64
  const int ho = h + 2 * pad - 2, wo = w + 2 * pad - 2;
  const int th = (ho + m - 1) / m, tw = (wo + m - 1) / m, tiles = th * tw;
  // `pool2x2`: y is the 2x2 max-pool of the output, hq x wq (floor), pooled tile by tile (m is
  // even) into q x q tiles; otherwise the output itself, q = m.
  const int hq = pool2x2 ? ho / 2 : ho, wq = pool2x2 ? wo / 2 : wo, q = pool2x2 ? m / 2 : m;
  const int coutp = round_up(cout, MR);
  const size_t up_stride = plane_stride((size_t)coutp * cin);
  // Width of the zero-padded input rows every tile's window lies in.
  const int wp = tw * m + 2;

  const int tb = tile_block(tiles, planes, cin, coutp);
  const size_t vp_stride = plane_stride((size_t)tb * cin), m_stride = plane_stride((size_t)coutp * tb);
  float* vp = g_vp.get<float>(planes * vp_stride);
  float* mb = g_m.get<float>(planes * m_stride);

  for (int img = 0; img < n; img++) {
    // The planes as stored: h x w, or their size before the nearest upsampling read into xpad.
    const int hs = h / upsample, ws = w / upsample;
    const float* x_img = x + (size_t)img * cin * hs * ws;
    float* y_img = y + (size_t)img * cout * hq * wq;
    const size_t img_off = (size_t)img * cout * ho * wo;
    for (int t0 = 0; t0 < tiles; t0 += tb) {
      const int nt = std::min(tb, tiles - t0), ntp = round_up(nt, NR);
      // Phase 1: V = B^T d B for every (ci, tile), into packed B panels [xi][tile panel][ci][NR].
      // Each channel's windows come from a zero-padded copy of just the rows this block's tiles
      // cover (clearing the whole padded plane for every block cost more than the transform).
      const int tr0 = t0 / tw, tr1 = (t0 + nt - 1) / tw, rows = (tr1 - tr0) * m + t6;  // the block's first and last tile rows
      // A panel's 16 tiles are a whole line of each plane of V (streams_v).
      const bool stream_v = streams_v(planes, cin, ntp);
      const double s0 = seconds_now();
      pool.parallel_for(cin, [&](int ci, int) {
        thread_local std::vector<float> xpad;
        xpad.resize((size_t)rows * wp + 8);  // + 8: input16's side-by-side loads read past a row
        const float* plane = x_img + (size_t)ci * hs * ws;
        // Row lr holds input row tr0 m + lr - pad, its border zero or mirrored (`reflect`: the style
        // network's ReflectionPad2d fused here, which saved its own pass over every activation).
        for (int lr = 0; lr < rows; lr++)
          padded_row(plane, hs, ws, pad, reflect, tr0 * m + lr - pad, xpad.data() + (size_t)lr * wp, wp, upsample, bf16);
        std::memset(xpad.data() + (size_t)rows * wp, 0, sizeof(float) * 8);
        // The rows of the channel this thread likely takes next, fetched into L2 a slice per tile
        // group: the row copies above otherwise wait on memory (memmove was 5% of a 256-channel
        // layer, `perf`). Input stage 1.64-1.73 -> 1.40-1.44 ms at 64 channels 224 px, 0.90-0.99 ->
        // 0.80-0.82 at 128 x 112, 0.65-0.76 -> 0.58-0.60 at 256 x 56 (stage timers, alternating processes).
        const int nci = ci + pool.threads();
        const int src0 = std::max(0, (tr0 * m - pad) / upsample), src1 = std::min(hs, (tr0 * m - pad + rows + upsample - 1) / upsample);
        const char* pf = nci < cin && src1 > src0 ? reinterpret_cast<const char*>(x_img + (size_t)nci * hs * ws + (size_t)src0 * ws) : nullptr;
        const size_t pf_bytes = pf ? (size_t)(src1 - src0) * ws * sizeof(float) : 0;
        for (int t = 0; t < ntp; t += NR) {
          if (pf)
            for (size_t o = pf_bytes * t / ntp & ~(size_t)63, e = pf_bytes * (t + NR) / ntp; o < e; o += 64) __builtin_prefetch(pf + o, 0, 2);
          int base[NR];
          for (int l = 0; l < NR; l++) {
            const int tile = std::min(t0 + t + l, t0 + nt - 1);  // lanes past the end repeat a real tile
            base[l] = (tile / tw - tr0) * m * wp + (tile % tw) * m;
          }
          const bool side_by_side[2] = {(t0 + t) % tw + 8 <= tw && t + 8 <= nt, (t0 + t + 8) % tw + 8 <= tw && t + 16 <= nt};
          input16(xpad.data(), wp, base, side_by_side, vp + (size_t)t * cin + (size_t)ci * NR, vp_stride, stream_v);
        }
        // Non-temporal stores are weakly ordered: made visible before the GEMMs' threads read V.
        if (stream_v) std::atomic_thread_fence(std::memory_order_seq_cst);
      });
      // Phase 2: 36 (64) GEMMs, M[xi] (coutp x ntp) = U[xi] V[xi], on pre-packed panels.
      // K (= Cin) is split in slices of 256 so that the B panels stay in L1.
      // Where each U[xi] is large (>= 1 MiB: 512 channels) and V[xi] fits in L2, U is streamed once,
      // a 6-row panel at a time over all of V (measured 10-15% faster on VGG19's 512-channel layers);
      // elsewhere the blocked loop below, whose A block stays in L2, was as fast or faster.
      const double s1 = seconds_now();
      const bool stream_u = (size_t)coutp * cin * 4 >= (1 << 20) && (size_t)cin * ntp * 4 <= 512 * 1024;
      // 1-4 tiles past the last whole panel: the GEMMs compute just those (gemm_packed's leftover
      // kernel) instead of a 16-column panel, and M's columns past nt stay unwritten (the output
      // stage reads them into lanes it never stores). VGG19's conv4 at 224 px (49 tiles): GEMM
      // stage 3.6-3.7 -> 2.9-3.0 ms; the streamed-U loop then takes 8 panels a call, for 8 chains.
      const int ncols = active_isa() != Isa::Portable && nt % NR > 0 && nt % NR <= LEFTOVER_COLUMNS ? nt : ntp;
      // M goes out with non-temporal stores wherever all of K is one pass (the AVX-512 kernels;
      // the others store plainly), as the channel-blocked GEMMs store M^T: the gradient's GEMM
      // stage at 64 channels 512 px 12.3 -> 10.2 ms, 224 px 2.74 -> 2.29, 256 x 128 11.6 -> 10.9,
      // the output stage (M now from memory) 2-6% slower, the layers 0.95-0.98x, 512 channels
      // alike; a style iteration at 512 faster in 4 of 4 pairs, by 1.3% (the two alternating in
      // one process). The fence after each plane's GEMMs orders those stores before phase 3.
      pool.parallel_for(planes, [&](int xi, int) {
        const float* a = up + xi * up_stride;
        const float* b = vp + xi * vp_stride;
        float* c = mb + xi * m_stride;
        if (stream_u) {
          const int rows = ncols < ntp ? 8 * MR : MR;
          for (int ir = 0; ir < coutp; ir += rows)
            gemm_packed(cin, a + (size_t)ir * cin, (size_t)MR * cin, std::min(rows, coutp - ir), b, (size_t)NR * cin, ncols,
                        c + (size_t)ir * tb, tb, false, false, true, true);
          std::atomic_thread_fence(std::memory_order_seq_cst);
          return;
        }
        for (int ic = 0; ic < coutp; ic += 96) {
          const int mc = std::min(96, coutp - ic);
          for (int p0 = 0; p0 < cin; p0 += 256) {
            const int kc = std::min(256, cin - p0);
            // Panels hold all of K: a slice starts p0 rows into each panel.
            gemm_packed(kc, a + (size_t)ic * cin + (size_t)p0 * MR, (size_t)MR * cin, mc, b + (size_t)p0 * NR,
                        (size_t)NR * cin, ncols, c + (size_t)ic * tb, tb, p0 > 0, stream_v, false, kc == cin);
          }
        }
        std::atomic_thread_fence(std::memory_order_seq_cst);
      });
      const double s2 = seconds_now();
      // Phase 3: Y = A^T M A (+ bias, ReLU), the valid part of each tile (or its 2x2 max-pool).
      pool.parallel_for(cout, [&](int co, int) {
        const float bv = bias ? bias[co] : 0.f;
        float* out = y_img + (size_t)co * hq * wq;
        const float* add_c = add ? add + img_off + (size_t)co * ho * wo : nullptr;
        const float* mask_c = mask ? mask + img_off + (size_t)co * ho * wo : nullptr;
        alignas(32) float o[36 * 8], pq[9 * 8];
        // The epilogue's operands (below) for the rows this block writes, fetched into L2 a slice
        // per tile group while the tiles are transformed: output stage of a gradient with the mask
        // and a gradient to add, 16.1 -> 12.6 ms at 64 channels 512 px, 2.5 -> 1.9 at 512 x 64;
        // with the mask alone 12.0 -> 11.5 and 2.1 -> 1.8 (stage timers, one process, alternating).
        const size_t ep0 = (size_t)tr0 * m * wo, ep1 = std::min((size_t)ho * wo, (size_t)(tr1 + 1) * m * wo);
        for (int t = 0; t < nt; t += 8) {
          if (add_c || mask_c) {
            const size_t a0 = ep0 + (ep1 - ep0) * t / nt, a1 = ep0 + (ep1 - ep0) * std::min(nt, t + 8) / nt;
            for (size_t e = a0 & ~(size_t)15; e < a1; e += 16) {
              if (mask_c) __builtin_prefetch(mask_c + e, 0, 2);
              if (add_c) __builtin_prefetch(add_c + e, 0, 2);
            }
          }
          // The next 16 tiles' cache line in every plane: 36-64 streams at once are more than the
          // hardware prefetchers follow. Output stage 1.7 -> 1.5 ms at 64 channels 224 px, 0.76 ->
          // 0.57 at 256 x 56, 0.57 -> 0.48 at 512 x 28 (stage timers, 1, 2, 3 and 4 lines ahead
          // tried: one was best).
          if (t % 16 == 0 && t + 16 < nt)
            for (int xi = 0; xi < planes; xi++) __builtin_prefetch(mb + xi * m_stride + (size_t)co * tb + t + 16, 0, 3);
          // The next group's output rows, for writing, so that its stores find their lines in cache:
          // output stage 1.69-1.74 -> 1.39-1.52 ms at 64 channels 224 px, 0.48-0.53 -> 0.44-0.46 at 512 x 28.
          if (t + 8 < nt) {
            const int nx = t0 + t + 8, py = (nx / tw) * q, px = (nx % tw) * q;
            const int pr = std::min(q, hq - py), pc = std::min(8 * q, wq - px);
            for (int r = 0; r < pr; r++)
              for (int c = 0; c < pc; c += 16) __builtin_prefetch(out + (size_t)(py + r) * wq + px + c, 1, 3);
          }
          (m == 4 ? transforms.output8 : transforms.output8_f6)(mb + (size_t)co * tb + t, m_stride, bv, relu, o);
          // The tiles as stored: m x m outputs, or their q x q 2x2 max-pools in the hq x wq picture
          // (the last tile row and column may hold fewer cells of it, or none).
          const float* tiles8 = o;
          if (pool2x2) {
            transforms.pool8(o, m, pq);
            tiles8 = pq;
          }
          // Where each of the 8 tiles goes, and how much of it lies in the picture.
          float* dst[8];
          int rws[8], cls[8];
          for (int l = 0, ty = (t0 + t) / tw, tx = (t0 + t) % tw; l < 8; l++) {
            const int y0 = ty * q, x0 = tx * q;
            const bool in = t + l < nt && y0 < hq && x0 < wq;
            rws[l] = in ? std::min(q, hq - y0) : 0;
            cls[l] = in ? std::min(q, wq - x0) : 0;
            dst[l] = in ? out + (size_t)y0 * wq + x0 : nullptr;
            if (++tx == tw) tx = 0, ty++;
          }
          transforms.store8(tiles8, q, dst, rws, cls, wq);
        }
        if (!add_c && !mask_c) return;
        // The epilogue, over the row spans this block just wrote (still in cache), as contiguous
        // loops the compiler vectorises; per element inside the tile scatter it cost 2x the GEMM.
        for (int trow = tr0; trow <= tr1; trow++) {
          const int xa = trow == tr0 ? (t0 % tw) * m : 0;
          const int xb = std::min(wo, trow == tr1 ? ((t0 + nt - 1) % tw) * m + m : wo);
          for (int r = trow * m; r < std::min(ho, trow * m + m); r++) {
            const size_t at = (size_t)r * wo + xa;
            add_and_mask_span(out + at, add_c ? add_c + at : nullptr, mask_c ? mask_c + at : nullptr, xb - xa);
          }
        }
      });
      count_stages(s0, s1, s2, m, cin, cout, nt, pool2x2);
    }
  }
}

WinogradStages& winograd_stages() { return g_stages; }

}  // namespace pastiche
