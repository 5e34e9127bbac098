// The hand-vectorised direct kernels for the portable path (see simd_isa.inc).
#include <cmath>

#include "simd_kernels.h"

#define PASTICHE_ISA portable
#define LANES 4
#include "simd_isa.inc"
