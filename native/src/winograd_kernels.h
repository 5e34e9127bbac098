// The vectorised Winograd transforms (winograd_transforms.inc), compiled twice by
// winograd_{avx2,portable}.cc.
#pragma once
#include <cstddef>

namespace pastiche {

struct WinogradTransforms {
  // B^T d B for the 16 tiles of a GEMM panel, into it (16 floats a plane; `stream`: with
  // non-temporal stores). side_by_side[h]: tiles 8h..8h+7 lie in one tile row (F(4x4)'s gather).
  void (*input16)(const float* xpad, int wp, const int* base, const bool* side_by_side, float* dst, size_t dst_stride, bool stream);
  // A^T m A (+ bias, ReLU) for 8 tiles at once.
  void (*output8)(const float* m, size_t m_stride, float bias, bool relu, float* out);
  // The same for F(6x6,3x3): 8x8 windows, 64 planes, 6x6 outputs per tile.
  void (*input16_f6)(const float* xpad, int wp, const int* base, const bool* side_by_side, float* dst, size_t dst_stride, bool stream);
  void (*output8_f6)(const float* m, size_t m_stride, float bias, bool relu, float* out);
  // 8 q x q tiles in output8's layout into the image: tile l's first rows[l] x cols[l] at dst[l].
  void (*store8)(const float* o, int q, float* const* dst, const int* rows, const int* cols, size_t ld);
  // The 2x2 stride-2 max-pool of 8 m x m tiles in output8's layout (m even) into m/2 x m/2 tiles.
  void (*pool8)(const float* o, int m, float* out);
};

namespace avx2 { extern const WinogradTransforms winograd; }
namespace portable { extern const WinogradTransforms winograd; }

}  // namespace pastiche
