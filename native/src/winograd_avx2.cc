// The Winograd transforms for the avx2 path (see winograd_isa.inc).
#include "winograd_kernels.h"

#if defined(__x86_64__)
#pragma GCC target("avx2,fma")
#endif

#define PASTICHE_ISA avx2
#define C16_LANES 8
#include "winograd_isa.inc"
