// The hand-vectorised direct kernels for the avx512 path (see simd_isa.inc).
#include <cmath>

#include "simd_kernels.h"

#if defined(__x86_64__)
#pragma GCC target("avx512f,avx2,fma")
#endif

#define PASTICHE_ISA avx512
#define LANES 16
#include "simd_isa.inc"
