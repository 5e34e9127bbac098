#include "gemm.h"

#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "threadpool.h"
#include "winograd_kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace pastiche {

namespace {
constexpr size_t kHugePage = (size_t)2 << 20;

// madvise(advice) over the whole 2 MiB pages inside [p, p + bytes): a hint, ignored (or refused,
// as MADV_COLLAPSE before Linux 6.1) where the kernel cannot follow it.
void advise_interior(void* p, size_t bytes, int advice) {
#if defined(__linux__)
  const uintptr_t lo = ((uintptr_t)p + kHugePage - 1) / kHugePage * kHugePage;
  const uintptr_t hi = ((uintptr_t)p + bytes) / kHugePage * kHugePage;
  if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, advice);
#else
  (void)p;
  (void)bytes;
  (void)advice;
#endif
}

size_t whole_huge_pages(size_t bytes) { return (bytes + kHugePage - 1) / kHugePage * kHugePage; }
}  // namespace

// `bytes` (whole 2 MiB pages on Linux) from a 2 MiB boundary, advised as huge before anything
// touches them, zeros (below 2 MiB: 64-byte aligned zeros from the heap); nullptr without memory;
// given back by free_huge. On Linux a mapping of its own: from the heap, the block could be memory
// that an earlier allocation had already touched (tune_malloc keeps freed memory for reuse), which
// stays on 4 KiB pages whatever the advice. So it went once onnxruntime had built a session in the
// process: none of hugeBuffer's memory then came on huge pages (AnonHugePages), and in `bench
// --sections vgg,style --peers` native's style iteration took 557-680 ms against 390-410 in
// `--sections style --peers` (2026-12-03).
void* alloc_huge_zeroed(size_t bytes) {
  if (bytes < kHugePage) {
    // No whole huge page to gain: 64-byte aligned heap memory (whole cache lines for the kernels'
    // vector loads), rather than a mapping that would take a whole huge page.
    void* p = nullptr;
    if (posix_memalign(&p, 64, bytes ? bytes : 1) != 0) return nullptr;
    std::memset(p, 0, bytes);
    return p;
  }
#if defined(__linux__)
  const size_t len = whole_huge_pages(bytes);
  void* raw = mmap(nullptr, len + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  // The 2 MiB-aligned part of it, the rest (before and after) unmapped again.
  const uintptr_t r = reinterpret_cast<uintptr_t>(raw), p = (r + kHugePage - 1) / kHugePage * kHugePage;
  if (p > r) munmap(raw, p - r);
  munmap(reinterpret_cast<void*>(p + len), r + kHugePage - p);
  advise_huge(reinterpret_cast<void*>(p), len);
  return reinterpret_cast<void*>(p);
#else
  void* p = nullptr;
  if (posix_memalign(&p, kHugePage, bytes ? bytes : 1) != 0) return nullptr;
  std::memset(p, 0, bytes);
  return p;
#endif
}

void free_huge(void* p, size_t bytes) {
  if (!p) return;
#if defined(__linux__)
  if (bytes >= kHugePage) {
    munmap(p, whole_huge_pages(bytes));
    return;
  }
  std::free(p);
#else
  (void)bytes;
  std::free(p);
#endif
}

void* HugeScratch::bytes(size_t n) {
  if (n <= size_) return data_;
  const size_t rounded = whole_huge_pages(n);
  free_huge(data_, size_);
  data_ = alloc_huge_zeroed(rounded);
  if (!data_) std::abort();  // as std::vector does without exceptions (the addon is built without them)
  size_ = rounded;
  return data_;
}

void advise_huge(void* p, size_t bytes) {
#if defined(MADV_HUGEPAGE)
  advise_interior(p, bytes, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

HugeScratch::~HugeScratch() { free_huge(data_, size_); }

void collapse_huge(void* p, size_t bytes) { advise_interior(p, bytes, 25 /* MADV_COLLAPSE */); }

namespace {

void micro_kernel_portable(int k, const float* a, const float* b, float* acc) {
  float t[MR][NR] = {};
  for (int p = 0; p < k; p++) {
    const float* ap = a + p * MR;
    const float* bp = b + p * NR;
    for (int i = 0; i < MR; i++)
      for (int j = 0; j < NR; j++) t[i][j] += ap[i] * bp[j];
  }
  std::memcpy(acc, t, sizeof t);
}

#if defined(__x86_64__)
// PREFETCH_A: the A panel comes from memory (Winograd's U streamed at 512 channels): fetch ahead
// along it. Where A is a block already in L2 (every other caller) the prefetches only cost: without
// them the GEMM stage of 64-128-channel Winograd layers took 3-10% less time and sgemm 1024^3 13%
// less, while the streamed U at 512 x 14 px took 16-19% more (with and without alternating in one
// process, 2 rounds each, this AVX2 VM).
template <bool PREFETCH_A>
__attribute__((target("avx2,fma"))) void micro_kernel_avx2(int k, const float* a, const float* b, float* c, int ldc,
                                                             bool add) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (int p = 0; p < k; p++) {
    if (PREFETCH_A && (p & 7) == 0)  // as in micro_kernel_avx512 below
      for (int l = 0; l < 3; l++) _mm_prefetch(reinterpret_cast<const char*>(a + 768 + 16 * l), _MM_HINT_T0);
    const __m256 b0 = _mm256_loadu_ps(b);
    const __m256 b1 = _mm256_loadu_ps(b + 8);
    __m256 ai = _mm256_broadcast_ss(a);
    c00 = _mm256_fmadd_ps(ai, b0, c00); c01 = _mm256_fmadd_ps(ai, b1, c01);
    ai = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(ai, b0, c10); c11 = _mm256_fmadd_ps(ai, b1, c11);
    ai = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(ai, b0, c20); c21 = _mm256_fmadd_ps(ai, b1, c21);
    ai = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(ai, b0, c30); c31 = _mm256_fmadd_ps(ai, b1, c31);
    ai = _mm256_broadcast_ss(a + 4);
    c40 = _mm256_fmadd_ps(ai, b0, c40); c41 = _mm256_fmadd_ps(ai, b1, c41);
    ai = _mm256_broadcast_ss(a + 5);
    c50 = _mm256_fmadd_ps(ai, b0, c50); c51 = _mm256_fmadd_ps(ai, b1, c51);
    a += MR;
    b += NR;
  }
  __m256 r[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  for (int i = 0; i < MR; i++) {
    float* ci = c + (size_t)i * ldc;
    if (add) {
      _mm256_storeu_ps(ci, _mm256_add_ps(_mm256_loadu_ps(ci), r[i][0]));
      _mm256_storeu_ps(ci + 8, _mm256_add_ps(_mm256_loadu_ps(ci + 8), r[i][1]));
    } else {
      _mm256_storeu_ps(ci, r[i][0]);
      _mm256_storeu_ps(ci + 8, r[i][1]);
    }
  }
}

__attribute__((target("avx2,fma"))) void micro_kernel_avx2_tile(int k, const float* a, const float* b, float* acc) {
  micro_kernel_avx2<false>(k, a, b, acc, NR, false);
}
#endif

#if defined(__x86_64__)
// R x 16 NP of C (R <= 6) from one A panel and NP adjacent B panels (`b_panel_stride` apart): R NP
// zmm accumulators, each broadcast of A feeding NP FMAs. gemm_packed takes the columns 32 at a time
// (NP = 2), an odd count of whole panels as one 48 (NP = 3) and 32s rather than 32s and one 16:
// NP = 1 has only R FMA chains, too few to keep the FMA units busy (GEMM stage of 512 channels at
// 28 px, 49 columns: 48 + 1 2.9-3.0 ms, 32 + 16 + 1 3.1-3.4; for 64 columns 48 + 16 was slower than
// 32 + 32). The rows past a GEMM's last multiple of 6 take R < 6 here rather than the 8-wide tile
// kernel through a buffer (the last 4 of 64 output channels: 6% of a stride-2 layer's rows).
template <int R, int NP>
__attribute__((target("avx512f"))) void micro_kernel_avx512(int k, const float* a, const float* b, size_t b_panel_stride,
                                                              float* c, int ldc, int mode) {
  __m512 acc[R][NP];
  for (int i = 0; i < R; i++)
    for (int h = 0; h < NP; h++) acc[i][h] = _mm512_setzero_ps();
  for (int p = 0; p < k; p++) {
    // A panels often stream from memory (Winograd's U is read once per pass): prefetch 3 KB ahead,
    // past this panel into the next. The hardware prefetcher alone left the kernel at 2/3 of its
    // cached speed there (measured 156-173 -> 236-240 GFLOP/s on one core; conv5_x, 16 columns of
    // tiles at 14x14, 2.7-2.9 -> 1.75-2.2 ms).
    if ((p & 7) == 0)
      for (int l = 0; l < 3; l++) _mm_prefetch(reinterpret_cast<const char*>(a + p * MR + 768 + 16 * l), _MM_HINT_T0);
    __m512 x[NP];
    for (int h = 0; h < NP; h++) x[h] = _mm512_loadu_ps(b + h * b_panel_stride + p * NR);
    for (int i = 0; i < R; i++) {
      const __m512 ai = _mm512_set1_ps(a[p * MR + i]);
      for (int h = 0; h < NP; h++) acc[i][h] = _mm512_fmadd_ps(ai, x[h], acc[i][h]);
    }
  }
  store_tiles<R, NP>(acc, c, ldc, mode);
}

using Avx512Kernel = void (*)(int, const float*, const float*, size_t, float*, int, int);
// By rows (1-6) for NP panels.
template <int NP>
constexpr Avx512Kernel AVX512_KERNELS[MR + 1] = {nullptr,
                                                 micro_kernel_avx512<1, NP>,
                                                 micro_kernel_avx512<2, NP>,
                                                 micro_kernel_avx512<3, NP>,
                                                 micro_kernel_avx512<4, NP>,
                                                 micro_kernel_avx512<5, NP>,
                                                 micro_kernel_avx512<6, NP>};

// One step of k for leftover_columns below: the P panels' 6-row vectors times the R columns' values.
// 8 floats from a 6-float row: the panel's last row would read 2 floats past it, so it masks.
template <int P, int R, bool LAST>
__attribute__((target("avx2,fma"), always_inline)) inline void leftover_step(__m256 (&acc)[P][R], const float* a, size_t a_panel_stride,
                                                                           const float* b) {
  __m256 bj[R];
#pragma GCC unroll 4
  for (int j = 0; j < R; j++) bj[j] = _mm256_broadcast_ss(b + j);
#pragma GCC unroll 8
  for (int q = 0; q < P; q++) {
    const float* ap = a + q * a_panel_stride;
    const __m256 av = LAST ? _mm256_maskload_ps(ap, _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0)) : _mm256_loadu_ps(ap);
#pragma GCC unroll 4
    for (int j = 0; j < R; j++) acc[q][j] = _mm256_fmadd_ps(av, bj[j], acc[q][j]);
  }
}

// The last R (1..4) columns of a GEMM whose column count is not a multiple of 16 (Winograd's 49
// tiles at 28x28, 196 at 56x56), vectorised over rows instead of columns: a 16-column kernel would
// compute 16 columns for them. P A panels at once (P 6-row vectors, lanes 6 and 7 unused), so that
// P x R FMA chains run side by side; each element is still one FMA chain in order of k from zero,
// as in the 16- and 32-column kernels, so the results are the same bits.
template <int P, int R>
__attribute__((target("avx2,fma"))) void leftover_columns(int k, const float* a, size_t a_panel_stride,
                                                           const float* b, float* c, int ldc, int rows, bool add) {
  __m256 acc[P][R];
#pragma GCC unroll 8
  for (int q = 0; q < P; q++)
#pragma GCC unroll 4
    for (int j = 0; j < R; j++) acc[q][j] = _mm256_setzero_ps();
  // The masked step after the loop rather than a choice inside it.
  for (int p = 0; p + 1 < k; p++) leftover_step<P, R, false>(acc, a + p * MR, a_panel_stride, b + p * NR);
  leftover_step<P, R, true>(acc, a + (k - 1) * MR, a_panel_stride, b + (k - 1) * NR);
  // Every accumulator stored at a constant index first (and the loops over P and R unrolled):
  // indexed at run time in the loop over rows below, the array stayed in memory, and GCC 12 stored
  // each accumulator to the stack on every step of k (8 stores beside <8, 1>'s 8 FMAs).
  alignas(32) float v[P][R][8];
#pragma GCC unroll 8
  for (int q = 0; q < P; q++)
#pragma GCC unroll 4
    for (int j = 0; j < R; j++) _mm256_store_ps(v[q][j], acc[q][j]);
  for (int q = 0; q < P; q++)
    for (int j = 0; j < R; j++)
      for (int i = 0; i < MR && q * MR + i < rows; i++) {
        float* ci = c + (size_t)(q * MR + i) * ldc + j;
        *ci = add ? *ci + v[q][j][i] : v[q][j][i];
      }
}

// Columns [jr, jr + r) (r <= 4) of all mc rows: by leftover_columns, 8 panels a call for 1
// column, 6 for 2, 4 for 3 (accumulators, the columns' values and a row vector in 16 registers:
// <8, 2> spilled), then the panels left; 4 columns by two_panels_8 below (one panel left over:
// leftover_columns<1, 4>).
using LeftoverFn = void (*)(int, const float*, size_t, const float*, float*, int, int, bool);
template <int P, int R>
constexpr LeftoverFn L = leftover_columns<P, R>;
constexpr LeftoverFn LEFTOVER[9][LEFTOVER_COLUMNS + 1] = {
    {},
    {nullptr, L<1, 1>, L<1, 2>, L<1, 3>, L<1, 4>},
    {nullptr, L<2, 1>, L<2, 2>, L<2, 3>},
    {nullptr, L<3, 1>, L<3, 2>, L<3, 3>},
    {nullptr, L<4, 1>, L<4, 2>, L<4, 3>},
    {nullptr, L<5, 1>, L<5, 2>},
    {nullptr, L<6, 1>, L<6, 2>},
    {nullptr, L<7, 1>},
    {nullptr, L<8, 1>},
};

// Two row panels (12 rows) against the first 8 columns of a 16-column B panel, for a GEMM's last 4
// columns, where leftover_columns<4, 4> needs 21 registers and spills: one B load and 12
// broadcasts per k feed 12 FMA chains. Twice the products of 4 columns at 1.7x the useful rate
// (a stand-alone loop over 96 rows, K = 256); in VGG19's conv3_x at 224 px (196 tiles, 12 panels
// + 4 columns) the leftover's share of the time beside micro_kernel_avx2's went from 8.8% to 4.8%
// (`perf record` samples, 80 runs each, 2 threads). For 3 columns leftover_columns<4, 3> was as
// fast; for 1-2 it is 2-8x fewer products. Each element is one FMA chain in order of k from zero,
// as in the other kernels: the same bits.
__attribute__((target("avx2,fma"))) void two_panels_8(int k, const float* a0, const float* a1, const float* b, float* c,
                                                       int ldc, int rows, int cols, bool add) {
  __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
  __m256 c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
  for (int p = 0; p < k; p++) {
    const __m256 bv = _mm256_loadu_ps(b + (size_t)p * NR);
    const float* x = a0 + p * MR;
    const float* y = a1 + p * MR;
    c0 = _mm256_fmadd_ps(_mm256_broadcast_ss(x), bv, c0);
    c1 = _mm256_fmadd_ps(_mm256_broadcast_ss(x + 1), bv, c1);
    c2 = _mm256_fmadd_ps(_mm256_broadcast_ss(x + 2), bv, c2);
    c3 = _mm256_fmadd_ps(_mm256_broadcast_ss(x + 3), bv, c3);
    c4 = _mm256_fmadd_ps(_mm256_broadcast_ss(x + 4), bv, c4);
    c5 = _mm256_fmadd_ps(_mm256_broadcast_ss(x + 5), bv, c5);
    c6 = _mm256_fmadd_ps(_mm256_broadcast_ss(y), bv, c6);
    c7 = _mm256_fmadd_ps(_mm256_broadcast_ss(y + 1), bv, c7);
    c8 = _mm256_fmadd_ps(_mm256_broadcast_ss(y + 2), bv, c8);
    c9 = _mm256_fmadd_ps(_mm256_broadcast_ss(y + 3), bv, c9);
    c10 = _mm256_fmadd_ps(_mm256_broadcast_ss(y + 4), bv, c10);
    c11 = _mm256_fmadd_ps(_mm256_broadcast_ss(y + 5), bv, c11);
  }
  alignas(32) float v[2 * MR][8];
  const __m256 acc[2 * MR] = {c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11};
  for (int i = 0; i < 2 * MR; i++) _mm256_store_ps(v[i], acc[i]);
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < cols; j++) {
      float* ci = c + (size_t)i * ldc + j;
      *ci = add ? *ci + v[i][j] : v[i][j];
    }
}

void leftover_block(int k, const float* pa, size_t a_panel_stride, int mc, const float* b, int r, float* c, int ldc,
                    bool add) {
  const int panels = (mc + MR - 1) / MR, most = r == 1 ? 8 : r == 2 ? 6 : 4;
  if (r == 4) {
    int q = 0;
    for (; q + 2 <= panels; q += 2)
      two_panels_8(k, pa + q * a_panel_stride, pa + (q + 1) * a_panel_stride, b, c + (size_t)q * MR * ldc, ldc,
                   std::min(2 * MR, mc - q * MR), r, add);
    if (q < panels) LEFTOVER[1][r](k, pa + q * a_panel_stride, a_panel_stride, b, c + (size_t)q * MR * ldc, ldc, mc - q * MR, add);
    return;
  }
  for (int q = 0; q < panels; q += most)
    LEFTOVER[std::min(most, panels - q)][r](k, pa + q * a_panel_stride, a_panel_stride, b, c + (size_t)q * MR * ldc, ldc,
                                            mc - q * MR, add);
}

#endif

Isa best_isa() { return cpu_has_avx512() ? Isa::Avx512 : cpu_has_avx2() ? Isa::Avx2 : Isa::Portable; }
Isa g_isa = best_isa();

}  // namespace

bool cpu_has_avx2() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

bool cpu_has_avx512() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && cpu_has_avx2();
#else
  return false;
#endif
}

Isa active_isa() { return g_isa; }

Isa set_isa(Isa wanted) {
  if (wanted == Isa::Avx512 && !cpu_has_avx512()) wanted = Isa::Avx2;
  if (wanted == Isa::Avx2 && !cpu_has_avx2()) wanted = Isa::Portable;
  g_isa = wanted;
  return g_isa;
}

// A share of `bytes` from `next` into L2 before row panel `call` of `calls` (gemm_packed's look-ahead
// over B): spread over the calls, so that each is a few lines.
static inline void prefetch_share(const float* next, size_t bytes, int call, int calls) {
  const char* p = reinterpret_cast<const char*>(next);
  for (size_t o = bytes * call / calls & ~(size_t)63, e = bytes * (call + 1) / calls; o < e; o += 64) __builtin_prefetch(p + o, 0, 2);
}

void gemm_packed(int k, const float* pa, size_t a_panel_stride, int mc, const float* pb, size_t b_panel_stride, int nc,
                 float* c, int ldc, bool add, bool b_from_memory, bool a_from_memory, bool stream_c) {
  // Where B comes from memory (Winograd's V, written with non-temporal stores), the next column
  // panels go into L2 a share before each row panel's call, while the row panels go over the
  // current ones (with at least 4 calls, so that a share is a few lines). Where B is in cache anyway
  // (U streamed at 512 channels, V in L2) it cost 0-4%, so the caller says.
  const bool look_ahead = b_from_memory && mc >= 4 * MR;
  const size_t panel_bytes = (size_t)k * NR * sizeof(float);
  const int calls = (mc + MR - 1) / MR;
  int jr = 0;
#if defined(__x86_64__)
  if (g_isa == Isa::Avx512) {
    // Every row panel against NP column panels from jr on, the next NP whole panels fetched on the
    // way: Winograd's GEMM stage at 64 channels 224 px 2.67 -> 2.28 ms, 64 x 512 13.6 -> 11.6,
    // 128 x 112 2.30 -> 2.20, 128 x 256 11.9 -> 11.3, 256 x 128 alike (AVX-512 EPYC, with and
    // without, alternating in one process, 20 runs each). Its A prefetch (in the kernel) stays on
    // everywhere here: without it the same stages ran from 5% faster (64 channels) to 9% slower
    // (128-256 channels).
    const int whole = nc / NR;
    const int mode = add ? STORE_ADD : stream_c ? STORE_STREAM : STORE_SET;
    const auto tiles = [&](int np, const Avx512Kernel* kernels) {
      const int ahead = look_ahead ? std::min(np, whole - jr / NR - np) : 0;
      for (int ir = 0; ir < mc; ir += MR) {
        for (int q = 0; q < ahead; q++) prefetch_share(pb + (size_t)(jr / NR + np + q) * b_panel_stride, panel_bytes, ir / MR, calls);
        kernels[std::min(MR, mc - ir)](k, pa + (size_t)(ir / MR) * a_panel_stride, pb + (size_t)(jr / NR) * b_panel_stride,
                                       b_panel_stride, c + (size_t)ir * ldc + jr, ldc, mode);
      }
      jr += np * NR;
    };
    if ((nc / NR) % 2 == 1 && nc >= 3 * NR) tiles(3, AVX512_KERNELS<3>);
    while (jr + 2 * NR <= nc) tiles(2, AVX512_KERNELS<2>);
    if (jr + NR <= nc) tiles(1, AVX512_KERNELS<1>);
  }
#endif
  for (; jr < nc; jr += NR) {
    const int nr = std::min(NR, nc - jr);
    const float* b = pb + (size_t)(jr / NR) * b_panel_stride;
#if defined(__x86_64__)
    // A last panel of 1-4 columns by rows (AVX2 code, which every x86 ISA but portable has).
    if (nr <= LEFTOVER_COLUMNS && g_isa != Isa::Portable) {
      leftover_block(k, pa, a_panel_stride, mc, b, nr, c + jr, ldc, add);
      return;
    }
#endif
    // The look-ahead on AVX2: Winograd's GEMM stage over V from memory 7-12% faster at 64 channels
    // 224 px, 5-8% at 64 x 512, 3-6% at 128 x 112 to 256 x 128 and 256 x 56, the layers 0-5%
    // (with and without, alternating in one process, 2-3 rounds each; AVX2-only EPYC).
    const float* next = look_ahead && jr + NR < nc ? b + b_panel_stride : nullptr;
    for (int ir = 0; ir < mc; ir += MR) {
      if (next) prefetch_share(next, panel_bytes, ir / MR, calls);
      const float* a = pa + (size_t)(ir / MR) * a_panel_stride;
      float* ct = c + (size_t)ir * ldc + jr;
#if defined(__x86_64__)
      // Whole tiles straight to the kernel, here rather than in micro_kernel: that call sets up an
      // aligned stack frame for partial tiles, and a VGG19 pass spent 0.9% of its samples in it.
      // With the leftover kernels above, the GEMMs' time beside micro_kernel_avx2's went from 7.7%
      // to 5.0% (`perf record` of `bench --sections vgg -b native -r 80`, before and after).
      if (nr == NR && ir + MR <= mc && g_isa != Isa::Portable) {
        (a_from_memory ? micro_kernel_avx2<true> : micro_kernel_avx2<false>)(k, a, b, ct, ldc, add);
        continue;
      }
#endif
      micro_kernel(k, a, b, ct, ldc, std::min(MR, mc - ir), nr, add);
    }
  }
}

void micro_kernel(int k, const float* a, const float* b, float* c, int ldc, int mr, int nr, bool add) {
  alignas(32) float acc[MR * NR];
#if defined(__x86_64__)
  if (g_isa != Isa::Portable)
    micro_kernel_avx2_tile(k, a, b, acc);
  else
#endif
    micro_kernel_portable(k, a, b, acc);
  for (int i = 0; i < mr; i++) {
    float* ci = c + (size_t)i * ldc;
    for (int j = 0; j < nr; j++) ci[j] = add ? ci[j] + acc[i * NR + j] : acc[i * NR + j];
  }
}

void pack_a(Operand a, int i0, int m, int p0, int k, float* out) {
  for (int ir = 0; ir < m; ir += MR) {
    const int mr = std::min(MR, m - ir);
    if (!a.trans) {
      for (int p = 0; p < k; p++)
        for (int i = 0; i < MR; i++) *out++ = i < mr ? a.data[(size_t)(i0 + ir + i) * a.ld + p0 + p] : 0.f;
    } else {
      // A stored transposed: a row of op(A) is a column; consecutive i are contiguous.
      for (int p = 0; p < k; p++) {
        const float* src = a.data + (size_t)(p0 + p) * a.ld + i0 + ir;
        for (int i = 0; i < MR; i++) *out++ = i < mr ? src[i] : 0.f;
      }
    }
  }
}

void pack_b(Operand b, int p0, int k, int j0, int n, float* out) {
  for (int jr = 0; jr < n; jr += NR) {
    const int nr = std::min(NR, n - jr);
    if (!b.trans) {
      for (int p = 0; p < k; p++) {
        const float* src = b.data + (size_t)(p0 + p) * b.ld + j0 + jr;
        if (nr == NR) {
          std::memcpy(out, src, NR * sizeof(float));
          out += NR;
        } else {
          for (int j = 0; j < NR; j++) *out++ = j < nr ? src[j] : 0.f;
        }
      }
    } else {
      // Row by row of B^T: each read stream is contiguous, the writes stay in the panel (in L1).
      // Gram matrices of 64 and 128 rows of 1 MB and 256 KB: 9.6 -> 8.5 and 5.9 -> 5.5 ms against
      // element by element down the columns (the larger ones even; gram() now packs with register
      // transposes instead: pack_f_transposed). The same for A's rows measured 15% slower, so
      // pack_a keeps its order.
      for (int j = 0; j < NR; j++) {
        const float* src = j < nr ? b.data + (size_t)(j0 + jr + j) * b.ld + p0 : nullptr;
        for (int p = 0; p < k; p++) out[(size_t)p * NR + j] = src ? src[p] : 0.f;
      }
      out += (size_t)k * NR;
    }
  }
}

void sgemm_serial(int m, int n, int k, Operand a, Operand b, float* c, int ldc, bool accumulate) {
  gemm_blocked<Fp32Panels>(m, n, k, a, b, c, ldc, accumulate);
}

void sgemm(int m, int n, int k, Operand a, Operand b, float* c, int ldc, bool accumulate) {
  ThreadPool& pool = ThreadPool::instance();
  const int t = pool.threads();
  const double work = (double)m * n * k;
  const auto serial = bf16_active() ? sgemm_bf16_serial : sgemm_serial;
  if (t == 1 || work < 2e6) {
    serial(m, n, k, a, b, c, ldc, accumulate);
    return;
  }
  // Split the larger output dimension into one contiguous range per thread (aligned to the
  // micro-kernel), each a serial GEMM with its own packing buffers.
  if (n >= m || m < MR * t) {
    const int chunk = ((n + t - 1) / t + NR - 1) / NR * NR;
    pool.parallel_for(t, [&](int i, int) {
      const int j0 = i * chunk, j1 = std::min(n, j0 + chunk);
      if (j0 >= j1) return;
      Operand bi = b;
      bi.data = b.trans ? b.data + (size_t)j0 * b.ld : b.data + j0;
      serial(m, j1 - j0, k, a, bi, c + j0, ldc, accumulate);
    });
  } else {
    const int chunk = ((m + t - 1) / t + MR - 1) / MR * MR;
    pool.parallel_for(t, [&](int i, int) {
      const int i0 = i * chunk, i1 = std::min(m, i0 + chunk);
      if (i0 >= i1) return;
      Operand ai = a;
      ai.data = a.trans ? a.data + i0 : a.data + (size_t)i0 * a.ld;
      serial(i1 - i0, n, k, ai, b, c + (size_t)i0 * ldc, ldc, accumulate);
    });
  }
}

// pack_b of F^T for the Gram matrix: each panel's 16 rows of F interleaved by the active instruction
// set's 16 x 16 register transposes (winograd_c16.inc's), whole vectors of K, the rest one by one;
// rows past c read as zeros. The same bits as pack_b's row-by-row copy, and the Gram matrices at 64 x
// 262144, 128 x 65536, 256 x 16384 8.5-9.0 -> 7.0-7.4, 5.3-5.4 -> 5.0-5.1, 3.9-4.2 -> 3.6-3.7 ms
// (`node` on the op, the two in alternating processes, twice); 512 rows alike.
static void pack_f_transposed(const float* f, int c, int k, int p0, int kc, float* out) {
  const WinogradC16& k16 = active_winograd_c16();
  const int whole = kc / 16 * 16;
  static thread_local std::vector<float> zeros;
  zeros.assign((size_t)kc + 16, 0.f);
  for (int jr = 0; jr < c; jr += NR, out += (size_t)kc * NR) {
    const float* rows[16];
    for (int j = 0; j < 16; j++) rows[j] = jr + j < c ? f + (size_t)(jr + j) * k + p0 : zeros.data();
    if (whole > 0) k16.interleave(rows, whole, out);
    for (int p = whole; p < kc; p++)
      for (int j = 0; j < 16; j++) out[(size_t)p * NR + j] = rows[j][p];
  }
}

void gram(const float* f, int c, int k, float* g) {
  ThreadPool& pool = ThreadPool::instance();
  const int t = pool.threads();
  const Operand a{f, k, false}, b{f, k, true};  // F, and F^T as the right operand
  if (bf16_active() || (double)c * c * k < 4e6 || c < NR) {
    sgemm(c, c, k, a, b, g, c, false);
    return;
  }
  // K in one part per thread, each summed into its own c x c matrix: a Gram matrix has few rows and
  // a long K (relu1_1 at 512 px: 64 x 262144), where sgemm's split of the columns gave each thread
  // all of F to pack for half the output (175 GFLOP/s on 2 threads).
  const int parts = std::max(1, std::min(t, k / KC));
  const int per = (k / parts + 15) / 16 * 16;
  const int row_panels = (c + MR - 1) / MR, col_panels = (c + NR - 1) / NR;
  std::vector<float> partial((size_t)(parts - 1) * c * c);
  pool.parallel_for(parts, [&](int s, int) {
    const int k0 = s * per, k1 = s == parts - 1 ? k : std::min(k, k0 + per);
    float* gs = s == 0 ? g : partial.data() + (size_t)(s - 1) * c * c;
    thread_local std::vector<float> pa, pb;
    pa.resize((size_t)row_panels * MR * KC);
    pb.resize((size_t)col_panels * NR * KC);
    const int slice = k_slice(k1 - k0);
    for (int p0 = k0; p0 < k1; p0 += slice) {
      const int kc = std::min(slice, k1 - p0);
      pack_a(a, 0, c, p0, kc, pa.data());
      pack_f_transposed(f, c, k, p0, kc, pb.data());
      // G is symmetric: each row panel from the column panel holding its first row on (the tiles
      // on and right of the diagonal, 64% of them at 64 rows, 52% at 512).
      for (int ip = 0; ip < row_panels; ip++) {
        const int j0 = ip * MR / NR * NR;
        gemm_packed(kc, pa.data() + (size_t)ip * MR * kc, (size_t)MR * kc, std::min(MR, c - ip * MR),
                    pb.data() + (size_t)(j0 / NR) * NR * kc, (size_t)NR * kc, c - j0, gs + (size_t)ip * MR * c + j0, c,
                    p0 != k0);
      }
    }
  });
  sum_parts_and_mirror(g, partial.data(), parts, c);
}

// The parts summed in a fixed order, and the upper triangle mirrored into the lower, in 32 x 32
// tiles over the threads (element by element down the columns, on one thread, the mirror of a
// 512 x 512 matrix took longer than its products from K = 1024).
void sum_parts_and_mirror(float* g, const float* partial, int parts, int c) {
  ThreadPool& pool = ThreadPool::instance();
  constexpr int T = 32;
  const int tiles = (c + T - 1) / T;
  pool.parallel_for(tiles, [&](int bi, int) {
    const int i0 = bi * T, i1 = std::min(c, i0 + T);
    for (int i = i0; i < i1; i++)
      for (int j = i; j < c; j++) {
        float v = g[(size_t)i * c + j];
        for (int s = 1; s < parts; s++) v += partial[(size_t)(s - 1) * c * c + (size_t)i * c + j];
        g[(size_t)i * c + j] = v;
      }
  });
  // Tile row bi of the lower triangle from tile column bi of the upper one, summed above.
  pool.parallel_for(tiles, [&](int bi, int) {
    const int i0 = bi * T, i1 = std::min(c, i0 + T);
    for (int j0 = 0; j0 <= i0; j0 += T)
      for (int i = i0; i < i1; i++)
        for (int j = j0; j < std::min(i, j0 + T); j++) g[(size_t)i * c + j] = g[(size_t)j * c + i];
  });
}

}  // namespace pastiche
