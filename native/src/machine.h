// Probes of the machine's limits (machine.cc), on the active instruction set and the pool's threads.
#pragma once

namespace pastiche {

// fp32 GFLOP/s of 12 independent FMA chains per thread for `iterations` (best of 3 runs).
double probe_fma_gflops(long iterations);
// GB/s of a read stream (triad false) or STREAM's triad over arrays of `floats` floats (best of 4).
double probe_bandwidth_gbs(bool triad, long floats);

}  // namespace pastiche
