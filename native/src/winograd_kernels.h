// The vectorised Winograd transforms, compiled twice (AVX2/FMA and portable).
#pragma once
#include <cstddef>

namespace pastiche {
namespace avx2 {
void input_transform8(const float* xpad, int wp, const int* base, float* dst, size_t dst_stride);
void output_transform8(const float* m, size_t m_stride, float bias, bool relu, float* out);
}  // namespace avx2
namespace portable {
void input_transform8(const float* xpad, int wp, const int* base, float* dst, size_t dst_stride);
void output_transform8(const float* m, size_t m_stride, float bias, bool relu, float* out);
}  // namespace portable
}  // namespace pastiche
