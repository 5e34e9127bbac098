// Single-precision matrix multiply: a packed, cache-blocked GEMM (Goto/BLIS layout) whose 6x16
// micro-kernel is AVX2/FMA where the CPU has it and portable C++ elsewhere.
#pragma once
#include <cstddef>

namespace pastiche {

constexpr int MR = 6;   // rows of C per micro-kernel call
constexpr int NR = 16;  // columns of C per micro-kernel call (two 8-float AVX registers)
constexpr int KC = 256;  // depth of a packed slice: an A panel (6x256) and a B panel (256x16) fit L1
constexpr int NC = 4096; // columns of B per block: 256x4096 floats = 4 MiB, in L3

// K in equal slices of at most KC: 288 (a 3x3 layer on 32 channels) as 144 + 144, not 256 + 32,
// whose short second pass would read and write all of C for 32 products per element.
inline int k_slice(int k) {
  const int slices = (k + KC - 1) / KC;
  return (k + slices - 1) / slices;
}

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
// Uses the thread pool when the problem is large enough.
void sgemm(int m, int n, int k, Operand a, Operand b, float* c, int ldc, bool accumulate);
// The same on the calling thread only.
void sgemm_serial(int m, int n, int k, Operand a, Operand b, float* c, int ldc, bool accumulate);

// Packing into micro-kernel order, also used by Winograd to pre-pack its operands.
// A: rows [0, m) x k -> ceil(m/MR) panels of k x MR (zero-padded rows).
void pack_a(Operand a, int i0, int m, int p0, int k, float* out);
// B: k x cols [0, n) -> ceil(n/NR) panels of k x NR (zero-padded columns).
void pack_b(Operand b, int p0, int k, int j0, int n, float* out);

// All tiles of C (mc x nc, row stride ldc) from packed A (ceil(mc/MR) panels of k x MR,
// `a_panel_stride` floats apart) and packed B (ceil(nc/NR) panels of k x NR, `b_panel_stride`
// apart), with the widest kernel the ISA has. C += the product when `add`, else C = it.
void gemm_packed(int k, const float* pa, size_t a_panel_stride, int mc, const float* pb, size_t b_panel_stride, int nc,
                 float* c, int ldc, bool add);

// One MR x NR tile: acc = sum_p a[p*MR + i] * b[p*NR + j]; then C (row stride ldc) += acc over
// the valid mr x nr corner, or = acc when !add.
void micro_kernel(int k, const float* a, const float* b, float* c, int ldc, int mr, int nr, bool add);

}  // namespace pastiche
