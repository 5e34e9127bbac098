// The vectorised Winograd transforms (winograd_transforms.inc), compiled twice by
// winograd_{avx2,portable}.cc.
#pragma once
#include <cstddef>

namespace pastiche {

struct WinogradTransforms {
  // B^T d B for 8 tiles at once, into packed GEMM panels.
  void (*input8)(const float* xpad, int wp, const int* base, bool side_by_side, float* dst, size_t dst_stride);
  // A^T m A (+ bias, ReLU) for 8 tiles at once.
  void (*output8)(const float* m, size_t m_stride, float bias, bool relu, float* out);
  // The same for F(6x6,3x3): 8x8 windows, 64 planes, 6x6 outputs per tile.
  void (*input8_f6)(const float* xpad, int wp, const int* base, bool side_by_side, float* dst, size_t dst_stride);
  void (*output8_f6)(const float* m, size_t m_stride, float bias, bool relu, float* out);
  // 8 q x q tiles in output8's layout into the image: tile l's first rows[l] x cols[l] at dst[l].
  void (*store8)(const float* o, int q, float* const* dst, const int* rows, const int* cols, size_t ld);
  // The 2x2 stride-2 max-pool of 8 m x m tiles in output8's layout (m even) into m/2 x m/2 tiles.
  void (*pool8)(const float* o, int m, float* out);
  // `planes` rows of 16 floats to dst + xi * stride as whole cache lines, with non-temporal stores
  // (both sides 64-byte aligned).
  void (*stream16)(const float* src, int planes, float* dst, size_t stride);
};

namespace avx2 { extern const WinogradTransforms winograd; }
namespace portable { extern const WinogradTransforms winograd; }

}  // namespace pastiche
