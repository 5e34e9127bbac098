// The channel-blocked Winograd kernels (winograd_c16.inc) for the avx512 path. The 8-lane
// transforms of the other paths run as AVX2 there (their 16-lane forms measured slower: see
// wino_input16).
#include "winograd_kernels.h"

#if defined(__x86_64__)
#pragma GCC target("avx512f,avx2,fma")
#include <immintrin.h>
#define C16_LANES 16  // floats a register (see winograd_c16.inc)
#else
#define C16_LANES 4  // never chosen off x86-64, compiled all the same
#endif
#include <algorithm>
#include <utility>

namespace pastiche {
namespace avx512 {
namespace {
#include "winograd_lines.inc"
#include "winograd_c16.inc"
#include "blocked_ops.inc"
}  // namespace

const WinogradC16 winograd_c16 = {c16_interleave, c16_input<4>, c16_output<4>, c16_gemm<true>, c16_input<6>, c16_output<6>,
                                   c16_gemm<false>, c16_gram, c16_mix, c16_deinterleave, c16_weights};
}  // namespace avx512
}  // namespace pastiche
