// The Winograd transforms for the avx2 path (see winograd_transforms.inc).
#include <cstddef>

#include "winograd_kernels.h"

#if defined(__x86_64__)
#pragma GCC target("avx2,fma")
#endif

namespace pastiche {
namespace avx2 {
namespace {
#include "winograd_transforms.inc"
}  // namespace

void input_transform8(const float* xpad, int wp, const int* base, float* dst, size_t dst_stride) {
  wino_input8(xpad, wp, base, dst, dst_stride);
}
void output_transform8(const float* m, size_t m_stride, float bias, bool relu, float* out) {
  wino_output8(m, m_stride, bias, relu, out);
}
}  // namespace avx2
}  // namespace pastiche
