// The Winograd transforms for the portable path (see winograd_isa.inc).
#include "winograd_kernels.h"

#define PASTICHE_ISA portable
#include "winograd_isa.inc"
