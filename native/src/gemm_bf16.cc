// bf16 GEMM for `--precision bf16`: the operands rounded to bfloat16 (8 bits of mantissa, fp32's
// exponent), the products accumulated in fp32 by AVX512-BF16's vdpbf16ps, which multiplies pairs
// along K: acc[j] += a[2p] b[2p][j] + a[2p+1] b[2p+1][j], 32 products per instruction where an
// fp32 FMA does 16. The packed panels therefore interleave K in pairs: an A panel is
// [k/2][MR][2], a B panel [k/2][NR][2] (an odd K gets a zero partner).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "gemm.h"
#include "threadpool.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace pastiche {

namespace {

bool g_bf16 = false;

#if defined(__x86_64__)
// R x 32 of C from one A panel and two adjacent B panels, kp pairs of K.
template <int R>
__attribute__((target("avx512f,avx512bf16"))) void kernel_bf16(int kp, const uint16_t* a, const uint16_t* b0,
                                                               const uint16_t* b1, float* c, int ldc, bool add) {
  __m512 acc[R][2];
  for (int i = 0; i < R; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (int p = 0; p < kp; p++) {
    if ((p & 7) == 0) _mm_prefetch(reinterpret_cast<const char*>(a + (p + 64) * MR * 2), _MM_HINT_T0);
    const __m512bh x0 = (__m512bh)_mm512_loadu_si512(b0 + p * NR * 2);
    const __m512bh x1 = (__m512bh)_mm512_loadu_si512(b1 + p * NR * 2);
    for (int i = 0; i < R; i++) {
      int32_t pair;
      std::memcpy(&pair, a + (p * MR + i) * 2, sizeof pair);
      const __m512bh ai = (__m512bh)_mm512_set1_epi32(pair);
      acc[i][0] = _mm512_dpbf16_ps(acc[i][0], ai, x0);
      acc[i][1] = _mm512_dpbf16_ps(acc[i][1], ai, x1);
    }
  }
  store_tiles<R, 2>(acc, c, ldc, add);
}

// MR x 16 into a tile buffer (row stride NR): the last panel of columns and partial corners.
__attribute__((target("avx512f,avx512bf16"))) void kernel_bf16_tile(int kp, const uint16_t* a, const uint16_t* b,
                                                                    float* tile) {
  __m512 acc[MR];
  for (int i = 0; i < MR; i++) acc[i] = _mm512_setzero_ps();
  for (int p = 0; p < kp; p++) {
    const __m512bh x = (__m512bh)_mm512_loadu_si512(b + p * NR * 2);
    for (int i = 0; i < MR; i++) {
      int32_t pair;
      std::memcpy(&pair, a + (p * MR + i) * 2, sizeof pair);
      acc[i] = _mm512_dpbf16_ps(acc[i], (__m512bh)_mm512_set1_epi32(pair), x);
    }
  }
  for (int i = 0; i < MR; i++) _mm512_storeu_ps(tile + i * NR, acc[i]);
}

// Two rows of 16 floats -> 16 pairs of bf16 (r0[j], r1[j]): both rounded by one vcvtne2ps2bf16
// (round to nearest even, as to_bf16), then interleaved by one vpermw. r1 null: zeros.
__attribute__((target("avx512f,avx512bw,avx512bf16"))) inline void pair16_bf16(const float* r0, const float* r1,
                                                                                uint16_t* dst) {
  alignas(64) static const uint16_t order[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                                 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512 a = _mm512_loadu_ps(r0), b = r1 ? _mm512_loadu_ps(r1) : _mm512_setzero_ps();
  const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(b, a);  // r0 in the low 16 lanes, r1 above
  _mm512_storeu_si512(dst, _mm512_permutexvar_epi16(_mm512_load_si512(order), both));
}

// 32 consecutive floats -> 32 bf16 in the same order.
__attribute__((target("avx512f,avx512bf16"))) inline void run32_bf16(const float* src, uint16_t* dst) {
  const __m512i v = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + 16), _mm512_loadu_ps(src));
  _mm512_storeu_si512(dst, v);
}

// 16 floats rounded to bf16 and widened back: the low 16 bits cleared, as to_bf16 then from_bf16.
__attribute__((target("avx512f,avx512bf16"))) void round16_bf16(const float* x, float* y, int n) {
  const __mmask16 m = (__mmask16)((1u << n) - 1);
  const __m256i h = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, x));
  _mm512_mask_storeu_ps(y, m, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
}

// 16 floats -> their bf16 bits.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void bits16_bf16(const float* x, uint16_t* y, int n) {
  const __mmask16 m = (__mmask16)((1u << n) - 1);
  _mm256_mask_storeu_epi16(y, m, (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, x)));
}

using KernelBf16 = void (*)(int, const uint16_t*, const uint16_t*, const uint16_t*, float*, int, bool);
constexpr KernelBf16 KERNELS_BF16[MR + 1] = {nullptr,         kernel_bf16<1>, kernel_bf16<2>, kernel_bf16<3>,
                                             kernel_bf16<4>, kernel_bf16<5>, kernel_bf16<6>};
#endif

}  // namespace

bool cpu_has_bf16() {
#if defined(__x86_64__)
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") && cpu_has_avx512();
  }();
  return has;
#else
  return false;
#endif
}

void set_bf16(bool on) { g_bf16 = on && cpu_has_bf16() && active_isa() == Isa::Avx512; }
bool bf16_active() { return g_bf16; }

uint16_t to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40);  // NaN stays a (quiet) NaN
  if ((bits & 0x7f800000u) == 0) return (uint16_t)(bits >> 16 & 0x8000);              // subnormals to zero, as vcvtneps2bf16
  bits += 0x7fffu + ((bits >> 16) & 1u);  // round to nearest, ties to even
  return (uint16_t)(bits >> 16);
}

float from_bf16(uint16_t h) {
  const uint32_t bits = (uint32_t)h << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// y = x rounded, over [0, n) on the calling thread (y may be x).
static void round_span(const float* x, float* y, long n) {
  static const bool vector = cpu_has_bf16();
#if defined(__x86_64__)
  if (vector) {
    for (long j = 0; j < n; j += 16) round16_bf16(x + j, y + j, (int)std::min(16L, n - j));
    return;
  }
#endif
  for (long j = 0; j < n; j++) y[j] = from_bf16(to_bf16(x[j]));
}

void round_bf16(const float* x, float* y, long n) {
  for_chunks(n, [&](long i0, long i1) { round_span(x + i0, y + i0, i1 - i0); });
}

void round_bf16_span(float* x, long n) { round_span(x, x, n); }
void round_bf16_span(const float* x, float* y, long n) { round_span(x, y, n); }

void to_bf16_bits(const float* x, uint16_t* y, long n) {
  static const bool vector = cpu_has_bf16();
  for_chunks(n, [&](long i0, long i1) {
#if defined(__x86_64__)
    if (vector) {
      for (long j = i0; j < i1; j += 16) bits16_bf16(x + j, y + j, (int)std::min(16L, i1 - j));
      return;
    }
#endif
    for (long j = i0; j < i1; j++) y[j] = to_bf16(x[j]);
  });
}

void pack_a_bf16(Operand a, int i0, int m, int p0, int k, uint16_t* out) {
  const int kp = (k + 1) / 2;
  for (int ir = 0; ir < m; ir += MR) {
    const int mr = std::min(MR, m - ir);
#if defined(__x86_64__)
    if (g_bf16 && !a.trans) {
      // Rows of A are contiguous in K: 16 pairs of a row rounded at once, each pair (32 bits) put
      // at its place [p][i] of the panel; the rest element by element.
      uint32_t* out32 = reinterpret_cast<uint32_t*>(out);
      for (int i = 0; i < MR; i++) {
        int p = 0;
        if (i < mr) {
          const float* row = a.data + (size_t)(i0 + ir + i) * a.ld + p0;
          for (; 2 * p + 32 <= k; p += 16) {
            uint32_t pairs[16];
            run32_bf16(row + 2 * p, reinterpret_cast<uint16_t*>(pairs));
            for (int j = 0; j < 16; j++) out32[(p + j) * MR + i] = pairs[j];
          }
        }
        for (; p < kp; p++) {
          const uint16_t lo = i < mr ? to_bf16(a.at(i0 + ir + i, p0 + 2 * p)) : 0;
          const uint16_t hi = i < mr && 2 * p + 1 < k ? to_bf16(a.at(i0 + ir + i, p0 + 2 * p + 1)) : 0;
          out32[p * MR + i] = (uint32_t)lo | (uint32_t)hi << 16;
        }
      }
      out += (size_t)kp * MR * 2;
      continue;
    }
#endif
    for (int p = 0; p < kp; p++)
      for (int i = 0; i < MR; i++)
        for (int q = 0; q < 2; q++) {
          const int kk = 2 * p + q;
          *out++ = i < mr && kk < k ? to_bf16(a.at(i0 + ir + i, p0 + kk)) : 0;
        }
  }
}

void pack_b_bf16(Operand b, int p0, int k, int j0, int n, uint16_t* out) {
  const int kp = (k + 1) / 2;
  for (int jr = 0; jr < n; jr += NR) {
    const int nr = std::min(NR, n - jr);
    for (int p = 0; p < kp; p++) {
      const int k0 = 2 * p, k1 = 2 * p + 1;
#if defined(__x86_64__)
      if (g_bf16 && !b.trans && nr == NR) {
        const float* r0 = b.data + (size_t)(p0 + k0) * b.ld + j0 + jr;
        pair16_bf16(r0, k1 < k ? r0 + b.ld : nullptr, out);
        out += NR * 2;
        continue;
      }
#endif
      if (!b.trans && nr == NR) {
        const float* r0 = b.data + (size_t)(p0 + k0) * b.ld + j0 + jr;
        const float* r1 = k1 < k ? r0 + b.ld : nullptr;
        for (int j = 0; j < NR; j++) {
          *out++ = to_bf16(r0[j]);
          *out++ = r1 ? to_bf16(r1[j]) : 0;
        }
        continue;
      }
      for (int j = 0; j < NR; j++) {
        *out++ = j < nr ? to_bf16(b.at(p0 + k0, j0 + jr + j)) : 0;
        *out++ = j < nr && k1 < k ? to_bf16(b.at(p0 + k1, j0 + jr + j)) : 0;
      }
    }
  }
}

void gemm_packed_bf16(int k, const uint16_t* pa, size_t a_panel_stride, int mc, const uint16_t* pb,
                      size_t b_panel_stride, int nc, float* c, int ldc, bool add) {
#if defined(__x86_64__)
  const int kp = (k + 1) / 2;
  int jr = 0;
  for (; jr + 2 * NR <= nc; jr += 2 * NR) {
    const uint16_t* b0 = pb + (size_t)(jr / NR) * b_panel_stride;
    for (int ir = 0; ir < mc; ir += MR)
      KERNELS_BF16[std::min(MR, mc - ir)](kp, pa + (size_t)(ir / MR) * a_panel_stride, b0, b0 + b_panel_stride,
                                          c + (size_t)ir * ldc + jr, ldc, add);
  }
  for (; jr < nc; jr += NR) {
    const int nr = std::min(NR, nc - jr);
    const uint16_t* b = pb + (size_t)(jr / NR) * b_panel_stride;
    for (int ir = 0; ir < mc; ir += MR) {
      alignas(64) float tile[MR * NR];
      kernel_bf16_tile(kp, pa + (size_t)(ir / MR) * a_panel_stride, b, tile);
      for (int i = 0; i < std::min(MR, mc - ir); i++) {
        float* ci = c + (size_t)(ir + i) * ldc + jr;
        for (int j = 0; j < nr; j++) ci[j] = add ? ci[j] + tile[i * NR + j] : tile[i * NR + j];
      }
    }
  }
#else
  (void)k, (void)pa, (void)a_panel_stride, (void)mc, (void)pb, (void)b_panel_stride, (void)nc, (void)c, (void)ldc, (void)add;
#endif
}

void convert_panels_bf16(const float* src, int k, int panels, uint16_t* dst) {
  const int kp = (k + 1) / 2;
#if defined(__x86_64__)
  if (g_bf16) {
    for (int panel = 0; panel < panels; panel++)
      for (int p = 0; p < kp; p++) {
        const float* s = src + ((size_t)panel * k + 2 * p) * NR;
        pair16_bf16(s, 2 * p + 1 < k ? s + NR : nullptr, dst + ((size_t)panel * kp + p) * NR * 2);
      }
    return;
  }
#endif
  for (int panel = 0; panel < panels; panel++) {
    const float* s = src + (size_t)panel * k * NR;
    uint16_t* d = dst + (size_t)panel * kp * NR * 2;
    for (int p = 0; p < kp; p++)
      for (int j = 0; j < NR; j++) {
        d[(p * NR + j) * 2] = to_bf16(s[2 * p * NR + j]);
        d[(p * NR + j) * 2 + 1] = 2 * p + 1 < k ? to_bf16(s[(2 * p + 1) * NR + j]) : 0;
      }
  }
}

void sgemm_bf16_serial(int m, int n, int k, Operand a, Operand b, float* c, int ldc, bool accumulate) {
  gemm_blocked<Bf16Panels>(m, n, k, a, b, c, ldc, accumulate);
}

}  // namespace pastiche
