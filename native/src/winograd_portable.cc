// The Winograd transforms for the portable path (see winograd_isa.inc).
#include "winograd_kernels.h"

#define PASTICHE_ISA portable
#define C16_LANES 4  // SSE2, or NEON's 128 bits
#include "winograd_isa.inc"
