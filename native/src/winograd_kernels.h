// The vectorised Winograd transforms (winograd_transforms.inc), compiled twice by
// winograd_{avx2,portable}.cc, and the channel-blocked F(4x4) kernels (winograd_c16.inc), compiled
// three times (winograd_avx512.cc as well).
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

// F(4x4,3x3) and F(6x6,3x3) with 16 channels a vector (conv3x3_winograd's channel-blocked path; see
// winograd_c16.inc).
// U^T is packed in blocks of C16_BLOCK output channels (see c16_gemm).
constexpr int C16_BLOCK = 64;
// The pixels a run of the style losses' products takes (blocked_ops.inc): a Gram matrix's, and d^T X's.
constexpr int C16_GRAM_RUN = 256, C16_MIX_RUN = 96;
struct WinogradC16 {
  // 16 channels' rows (rows[l], `width` floats, readable to the next multiple of 16) -> dst[x][16].
  void (*interleave)(const float* const* rows, int width, float* dst);
  // F(4x4): B^T d B for one tile of 16 channels (pixel (r, c) at x + r * row + c * 16) -> dst + xi * stride.
  void (*input)(const float* x, size_t row, float* dst, size_t stride, bool stream);
  // F(4x4): A^T M A + bias (ReLU, 2x2 max-pool) for n tiles in a row and 16 channels -> 16 NCHW planes
  // (`plane` floats apart), or with `blocked` to one 16-channel block of nChw16c (16 floats a pixel),
  // there with the gradient epilogue as it is stored: (y + add) * (mask > 0), add and mask laid out
  // as out (either may be null; both null with NCHW).
  void (*output)(const float* m, size_t tile, size_t stride, int n, const float* bias, bool relu, bool pool, float* out,
                 size_t plane, size_t ld, int rows, int cols, bool blocked, bool stream, const float* add, const float* mask);
  // C (m x n) = A (m x k, rows lda apart) B (k x n in column blocks of C16_BLOCK: winograd_weights' c16 layout).
  void (*gemm)(int k, const float* a, int lda, int m, const float* b, int n, float* c, int ldc);
  // The same two for F(6x6): an 8 x 8 window, 64 planes, 6 x 6 outputs a tile.
  void (*input6)(const float* x, size_t row, float* dst, size_t stride, bool stream);
  void (*output6)(const float* m, size_t tile, size_t stride, int n, const float* bias, bool relu, bool pool, float* out,
                  size_t plane, size_t ld, int rows, int cols, bool blocked, bool stream, const float* add, const float* mask);
  // gemm with C stored plainly, to be read back from cache (gemm streams it to memory).
  void (*gemm_cached)(int k, const float* a, int lda, int m, const float* b, int n, float* c, int ldc);
  // The style losses' products on an nChw16c x of c channels and hw pixels (blocked_ops.inc), over
  // pixels [p0, p1): the Gram matrix's 16 x 16 blocks on and right of the diagonal into g (c x c);
  // y = d^T x over the channels (d c x c) into y, nChw16c (its blocks yhw pixels apart). gram's
  // `add`: add the sums to g instead of writing them.
  void (*gram)(const float* x, int c, size_t hw, int p0, int p1, float* g, bool add);
  void (*mix)(const float* d, int c, const float* x, size_t hw, int p0, int p1, float* y, size_t yhw);
  // interleave's inverse: src[x][16] for x < width -> 16 rows, rows[l][x].
  void (*deinterleave)(const float* src, int width, float* const* rows);
  // winograd_weights' U for output channels co0 .. co0 + 15 (of cout, for a conv from wcin to wcout
  // channels, `rotate`d for the gradient to the data) and all cin input channels: U[xi] for input
  // channel ci to dst + xi * plane + ci * ci_stride, 16 floats.
  void (*weights)(const float* wt, int wcin, int wcout, bool rotate, int m, int co0, int cin, float* dst, size_t ci_stride,
                  size_t plane);
};

namespace avx512 { extern const WinogradC16 winograd_c16; }
namespace avx2 { extern const WinogradC16 winograd_c16; }
namespace portable { extern const WinogradC16 winograd_c16; }
// The table of the instruction set active now (winograd.cc).
const WinogradC16& active_winograd_c16();

}  // namespace pastiche
