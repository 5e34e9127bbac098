// The hand-vectorised direct kernels for the avx2 path (see simd_isa.inc).
#include <cmath>

#include "simd_kernels.h"

#if defined(__x86_64__)
#pragma GCC target("avx2,fma")
#endif

#define PASTICHE_ISA avx2
#define LANES 8
#include "simd_isa.inc"
