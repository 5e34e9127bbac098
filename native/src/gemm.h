// Single-precision matrix multiply: a packed, cache-blocked GEMM (Goto/BLIS layout) whose 6x16
// micro-kernel is AVX2/FMA where the CPU has it and portable C++ elsewhere.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace pastiche {

constexpr int MR = 6;   // rows of C per micro-kernel call
constexpr int NR = 16;  // columns of C per micro-kernel call (two 8-float AVX registers)
constexpr int KC = 256;  // depth of a packed slice: an A panel (6x256) and a B panel (256x16) fit L1
constexpr int NC = 4096; // columns of B per block: 256x4096 floats = 4 MiB, in L3
constexpr int MC = 96;   // rows of A per block: 96x256 floats = 96 KiB, in L2
// A GEMM's last 1-4 columns go through a kernel vectorised over rows rather than a whole 16-column
// panel (gemm_packed): the same FMA chains per element, so the same bits.
constexpr int LEFTOVER_COLUMNS = 4;

// K in equal slices of at most KC: 288 (a 3x3 layer on 32 channels) as 144 + 144, not 256 + 32,
// whose short second pass would read and write all of C for 32 products per element.
inline int k_slice(int k) {
  const int slices = (k + KC - 1) / KC;
  return (k + slices - 1) / slices;
}
// The same rounded up to even, for the bf16 GEMM: its pairs along K never straddle two slices.
inline int k_slice_bf16(int k) { return (k_slice(k) + 1) / 2 * 2; }

// A scratch buffer that grows and is kept, in 2 MiB pages where the kernel allows (transparent
// huge pages in "madvise" mode, as on these VMs; "always" gives them anyway): Winograd's V and M
// are megabytes written and read in 36-64 planes at once, and with 4 KiB pages nearly every tile
// panel of every plane is a TLB miss (the input transform took twice as long: `bench --sections
// layers`' stage table).
class HugeScratch {
 public:
  template <class T>
  T* get(size_t count) { return static_cast<T*>(bytes(count * sizeof(T))); }
  HugeScratch() = default;
  HugeScratch(const HugeScratch&) = delete;
  HugeScratch& operator=(const HugeScratch&) = delete;
  ~HugeScratch();

 private:
  void* bytes(size_t n);
  void* data_ = nullptr;
  size_t size_ = 0;
};

// Asks for huge pages for the 2 MiB-aligned part of [p, p + bytes) that is not yet touched (only
// pages faulted in after the advice become huge; those touched before stay 4 KiB).
void advise_huge(void* p, size_t bytes);

// Gathers the 4 KiB pages already mapped under the whole 2 MiB pages of [p, p + bytes) into huge
// pages now (MADV_COLLAPSE: Linux 6.1 on; a no-op before). For arrays touched before any advice.
void collapse_huge(void* p, size_t bytes);

// `bytes` of zeros for hugeBuffer (addon.cc) and HugeScratch: from 2 MiB on, whole 2 MiB pages never
// touched before and advised as huge, so that they come on huge pages as they are first written;
// below, 64-byte aligned heap memory. nullptr without memory. Given back with free_huge(p, bytes).
void* alloc_huge_zeroed(size_t bytes);
void free_huge(void* p, size_t bytes);

enum class Isa { Portable, Avx2, Avx512 };
Isa active_isa();
bool cpu_has_avx2();
bool cpu_has_avx512();
// Selects the kernels; falls back to the best the CPU supports below `wanted`. Returns the ISA now active.
Isa set_isa(Isa wanted);

// Strided matrix operand: element (r, c) of op(X) is data[trans ? c * ld + r : r * ld + c].
struct Operand {
  const float* data;
  int ld;
  bool trans;
  float at(int r, int c) const { return trans ? data[(size_t)c * ld + r] : data[(size_t)r * ld + c]; }
};

// C[m x n] (row stride ldc) = (accumulate ? C : 0) + op(A)[m x k] * op(B)[k x n].
// Uses the thread pool when the problem is large enough; bf16 products while set_bf16 is on.
void sgemm(int m, int n, int k, Operand a, Operand b, float* c, int ldc, bool accumulate);
// The same on the calling thread only.
void sgemm_serial(int m, int n, int k, Operand a, Operand b, float* c, int ldc, bool accumulate);

// G[c x c] = F F^T for a row-major F [c x k] (a Gram matrix): the tiles on and right of the diagonal
// only, K split over the threads, the rest mirrored. sgemm where bf16 is on or the product is small.
void gram(const float* f, int c, int k, float* g);
// G's parts from threads 1.. (`partial`: parts - 1 matrices of c x c, their upper triangles) added
// to part 0 in g in a fixed order, then g's upper triangle mirrored into its lower one.
void sum_parts_and_mirror(float* g, const float* partial, int parts, int c);
// The same Gram matrix, and the product y = d^T x over the channels (d c x c), for an nChw16c x
// of c channels (a multiple of 16) and hw pixels, y in the same layout (blocked.cc).
void gram_c16(const float* x, int c, int hw, float* g);
void mix_channels_c16(const float* d, int c, const float* x, int hw, float* y);
// NCHW y from nChw16c x: `blocks` 16-channel blocks (images x C / 16) of hw pixels.
void from_nchw16c(const float* x, int blocks, int hw, float* y);

// Packing into micro-kernel order, also used by Winograd to pre-pack its operands.
// A: rows [0, m) x k -> ceil(m/MR) panels of k x MR (zero-padded rows).
void pack_a(Operand a, int i0, int m, int p0, int k, float* out);
// B: k x cols [0, n) -> ceil(n/NR) panels of k x NR (zero-padded columns).
void pack_b(Operand b, int p0, int k, int j0, int n, float* out);

// All tiles of C (mc x nc, row stride ldc) from packed A (ceil(mc/MR) panels of k x MR,
// `a_panel_stride` floats apart) and packed B (ceil(nc/NR) panels of k x NR, `b_panel_stride`
// apart), with the widest kernel the ISA has. C += the product when `add`, else C = it.
// `b_from_memory`: B's panels are not in cache (Winograd's V, written with non-temporal stores):
// the next panels are fetched into L2 while the row panels go over the current ones (AVX2 and
// AVX-512). `a_from_memory`: A's panels stream from memory (Winograd's U at 512 channels): the AVX2
// kernel fetches ahead along them only then (elsewhere A is a block in L2); the AVX-512 kernel
// always does. `stream_c` (without `add`): the AVX-512 kernels store C's whole 16-column tiles
// with non-temporal stores (C 64-byte aligned, ldc a multiple of 16; the caller fences before C is
// read on another thread); the other kernels store plainly.
void gemm_packed(int k, const float* pa, size_t a_panel_stride, int mc, const float* pb, size_t b_panel_stride, int nc,
                 float* c, int ldc, bool add, bool b_from_memory = false, bool a_from_memory = false, bool stream_c = false);

// bf16 products (gemm_bf16.cc), for `--precision bf16`: operands rounded to bfloat16, fp32 sums.
bool cpu_has_bf16();
// Turns the bf16 GEMM on for the following calls (only where the CPU has AVX512-BF16 and AVX-512
// is the active ISA): sgemm and conv2d's im2col GEMM follow it, Winograd and the direct kernels
// round their input rows (padded_row) and multiply in fp32.
void set_bf16(bool on);
bool bf16_active();
uint16_t to_bf16(float f);  // round to nearest, ties to even; subnormals to zero (as vcvtneps2bf16)
float from_bf16(uint16_t h);
// As pack_a / pack_b, K interleaved in pairs: A panels [ceil(k/2)][MR][2], B panels [ceil(k/2)][NR][2].
void pack_a_bf16(Operand a, int i0, int m, int p0, int k, uint16_t* out);
void pack_b_bf16(Operand b, int p0, int k, int j0, int n, uint16_t* out);
// As gemm_packed on bf16 panels of K = k (panel strides in uint16 elements).
void gemm_packed_bf16(int k, const uint16_t* pa, size_t a_panel_stride, int mc, const uint16_t* pb,
                      size_t b_panel_stride, int nc, float* c, int ldc, bool add);
void sgemm_bf16_serial(int m, int n, int k, Operand a, Operand b, float* c, int ldc, bool accumulate);
// fp32 B panels [k][NR] (pack_b's layout) -> bf16 panels [ceil(k/2)][NR][2] (pack_b_bf16's).
void convert_panels_bf16(const float* src, int k, int panels, uint16_t* dst);
// y = x rounded to the nearest bfloat16 (ties to even; NaN stays NaN), kept in fp32: the operands
// of the kernels that multiply in fp32 under --precision bf16 (Winograd, the direct kernels).
void round_bf16(const float* x, float* y, long n);
// The same on the calling thread (inside a kernel's own copy of its input): in place, or into y.
void round_bf16_span(float* x, long n);
void round_bf16_span(const float* x, float* y, long n);
// y = the bf16 bits of x (the fully connected layers' weights under --precision bf16: half the bytes).
void to_bf16_bits(const float* x, uint16_t* y, long n);

#if defined(__x86_64__)
// How a kernel stores its tile of C: C = acc, C += acc, or C = acc with non-temporal stores (whole
// lines not read first; C 64-byte aligned, its rows a multiple of 16 floats apart).
enum StoreMode { STORE_SET = 0, STORE_ADD = 1, STORE_STREAM = 2 };

// R rows of a 16 NP-column tile of C (row stride ldc) from the AVX-512 kernels' NP accumulators
// per row, fp32 and bf16 alike, as `mode` says (a bool `add`: STORE_ADD or STORE_SET).
template <int R, int NP>
__attribute__((target("avx512f"))) inline void store_tiles(const __m512 (&acc)[R][NP], float* c, int ldc, int mode) {
  for (int i = 0; i < R; i++) {
    float* ci = c + (size_t)i * ldc;
    for (int h = 0; h < NP; h++) {
      if (mode == STORE_STREAM)
        _mm512_stream_ps(ci + 16 * h, acc[i][h]);
      else
        _mm512_storeu_ps(ci + 16 * h, mode == STORE_ADD ? _mm512_add_ps(_mm512_loadu_ps(ci + 16 * h), acc[i][h]) : acc[i][h]);
    }
  }
}
#endif

// One MR x NR tile through a buffer: acc = sum_p a[p*MR + i] * b[p*NR + j]; then C (row stride
// ldc) += acc over the valid mr x nr corner, or = acc when !add. For partial tiles and the portable
// ISA: gemm_packed sends whole AVX2 tiles straight to their kernel.
void micro_kernel(int k, const float* a, const float* b, float* c, int ldc, int mr, int nr, bool add);

// A GEMM's operand panels, fp32 as they are or bf16 in pairs along K: what the blocked drivers
// (gemm_blocked here, conv2d's im2col GEMM) need to know of each.
struct Fp32Panels {
  using T = float;
  static int slice(int k) { return k_slice(k); }
  static int depth(int k) { return k; }  // elements a panel holds per row (A) or column (B) for K = k
  static void pack_a(Operand a, int i0, int m, int p0, int k, T* out) { pastiche::pack_a(a, i0, m, p0, k, out); }
  static void pack_b(Operand b, int p0, int k, int j0, int n, T* out) { pastiche::pack_b(b, p0, k, j0, n, out); }
  static void gemm(int k, const T* pa, size_t as, int mc, const T* pb, size_t bs, int nc, float* c, int ldc, bool add) {
    gemm_packed(k, pa, as, mc, pb, bs, nc, c, ldc, add);
  }
  // B panels built in fp32 (pack_b's layout), as this type's panels.
  static const T* from_fp32(const float* pb, int, int, std::vector<T>&) { return pb; }
};

struct Bf16Panels {
  using T = uint16_t;
  static int slice(int k) { return k_slice_bf16(k); }
  static int depth(int k) { return (k + 1) / 2 * 2; }
  static void pack_a(Operand a, int i0, int m, int p0, int k, T* out) { pack_a_bf16(a, i0, m, p0, k, out); }
  static void pack_b(Operand b, int p0, int k, int j0, int n, T* out) { pack_b_bf16(b, p0, k, j0, n, out); }
  static void gemm(int k, const T* pa, size_t as, int mc, const T* pb, size_t bs, int nc, float* c, int ldc, bool add) {
    gemm_packed_bf16(k, pa, as, mc, pb, bs, nc, c, ldc, add);
  }
  static const T* from_fp32(const float* pb, int k, int panels, std::vector<T>& scratch) {
    scratch.resize((size_t)panels * depth(k) * NR);
    convert_panels_bf16(pb, k, panels, scratch.data());
    return scratch.data();
  }
};

// C[m x n] = (accumulate ? C : 0) + op(A) op(B) on the calling thread, blocked as Goto and BLIS do:
// a slice of B [KC x NC] packed once, blocks of A [MC x KC] packed within it; K in equal slices
// (P::slice), the first of which writes C (no clearing pass) unless accumulating.
template <class P>
void gemm_blocked(int m, int n, int k, Operand a, Operand b, float* c, int ldc, bool accumulate) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    if (!accumulate)
      for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) c[(size_t)i * ldc + j] = 0.f;
    return;
  }
  const int kslice = P::slice(k);
  thread_local std::vector<typename P::T> pa;
  thread_local HugeScratch pb_scratch;  // 4 MiB, its panels read by every micro-kernel call
  if (pa.size() < (size_t)MC * (KC + 2)) pa.resize((size_t)MC * (KC + 2));
  typename P::T* const pb = pb_scratch.get<typename P::T>((size_t)(KC + 2) * (NC + NR));
  for (int jc = 0; jc < n; jc += NC) {
    const int nc = n - jc < NC ? n - jc : NC;
    for (int pc = 0; pc < k; pc += kslice) {
      const int kc = k - pc < kslice ? k - pc : kslice, depth = P::depth(kc);
      P::pack_b(b, pc, kc, jc, nc, pb);
      for (int ic = 0; ic < m; ic += MC) {
        const int mc = m - ic < MC ? m - ic : MC;
        P::pack_a(a, ic, mc, pc, kc, pa.data());
        P::gemm(kc, pa.data(), (size_t)MR * depth, mc, pb, (size_t)NR * depth, nc, c + (size_t)ic * ldc + jc, ldc,
                accumulate || pc > 0);
      }
    }
  }
}

}  // namespace pastiche
