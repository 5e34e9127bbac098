// Node-API bindings. Arrays arrive as Float32Arrays owned by JavaScript (outputs are allocated
// there too), so no data is copied across the boundary.
#include <napi.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <unordered_map>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#if !defined(_WIN32)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

#include "gemm.h"
#include "kernels.h"
#include "machine.h"
#include "threadpool.h"

using namespace pastiche;

namespace {

// The kernels share process-wide scratch buffers and one thread pool: calls from several
// JavaScript threads (worker_threads) are serialised here.
std::mutex g_calls;

// The precision the calling JavaScript thread asked for (precision()): each call applies its own
// caller's, so a bf16 backend and an fp32 one may share the addon, in one thread or several.
thread_local bool t_bf16 = false;

// Every call: the lock, then the caller's precision for the kernels it runs.
struct Call {
  std::lock_guard<std::mutex> lock{g_calls};
  Call() { set_bf16(t_bf16); }
};

float* F(const Napi::CallbackInfo& info, int i) {
  if (info[i].IsNull() || info[i].IsUndefined()) return nullptr;
  return info[i].As<Napi::Float32Array>().Data();
}
int I(const Napi::CallbackInfo& info, int i) { return info[i].As<Napi::Number>().Int32Value(); }
bool B(const Napi::CallbackInfo& info, int i) { return info[i].As<Napi::Boolean>().Value(); }
// A Winograd output tile: 6 for F(6x6,3x3), else 4.
int Tile(const Napi::CallbackInfo& info, int i) { return info[i].IsNumber() && I(info, i) == 6 ? 6 : 4; }

Napi::Value IsaFn(const Napi::CallbackInfo& info) {
  Call call;
  if (info.Length() > 0 && info[0].IsString()) {
    const std::string want = info[0].As<Napi::String>();
    set_isa(want == "portable" ? Isa::Portable : want == "avx2" ? Isa::Avx2 : Isa::Avx512);
  }
  const pastiche::Isa isa = active_isa();
  return Napi::String::New(info.Env(), isa == Isa::Avx512 ? "avx512" : isa == Isa::Avx2 ? "avx2" : "portable");
}

// precision("bf16" | "fp32") for this thread's following calls; returns the one now in force
// ("bf16" only where the CPU has AVX512-BF16 and AVX-512 is the active instruction set).
Napi::Value PrecisionFn(const Napi::CallbackInfo& info) {
  if (info.Length() > 0 && info[0].IsString()) t_bf16 = info[0].As<Napi::String>().Utf8Value() == "bf16";
  Call call;
  return Napi::String::New(info.Env(), bf16_active() ? "bf16" : "fp32");
}

// roundBf16(x, y): y = x rounded to bfloat16 (kept in fp32), the operands of --precision bf16.
Napi::Value RoundBf16(const Napi::CallbackInfo& info) {
  Call call;
  auto x = info[0].As<Napi::Float32Array>();
  round_bf16(x.Data(), F(info, 1), (long)x.ElementLength());
  return info.Env().Undefined();
}

// toBf16Bits(x, y: Uint16Array)
Napi::Value ToBf16Bits(const Napi::CallbackInfo& info) {
  Call call;
  auto x = info[0].As<Napi::Float32Array>();
  to_bf16_bits(x.Data(), info[1].As<Napi::Uint16Array>().Data(), (long)x.ElementLength());
  return info.Env().Undefined();
}

Napi::Value Threads(const Napi::CallbackInfo& info) {
  Call call;
  if (info.Length() > 0 && info[0].IsNumber()) ThreadPool::instance().set_threads(I(info, 0));
  return Napi::Number::New(info.Env(), ThreadPool::instance().threads());
}

// sgemm(m, n, k, a, aOff, lda, transA, b, bOff, ldb, transB, c, cOff, ldc, accumulate)
Napi::Value Sgemm(const Napi::CallbackInfo& info) {
  Call call;
  sgemm(I(info, 0), I(info, 1), I(info, 2), Operand{F(info, 3) + I(info, 4), I(info, 5), B(info, 6)},
        Operand{F(info, 7) + I(info, 8), I(info, 9), B(info, 10)}, F(info, 11) + I(info, 12), I(info, 13), B(info, 14));
  return info.Env().Undefined();
}

// sweepF32F64(q, c: number[], v: Float32Array[], scale, u: Float32Array[]) -> number[]: q = (q +
// c[0] v[0] + c[1] v[1]) * scale, then u[j].q (at most 2 v and 2 u; the backend checks their lengths)
Napi::Value SweepF32F64(const Napi::CallbackInfo& info) {
  Call call;
  auto q = info[0].As<Napi::Float64Array>();
  auto ca = info[1].As<Napi::Array>(), va = info[2].As<Napi::Array>(), ua = info[4].As<Napi::Array>();
  const int nv = (int)va.Length(), nu = (int)ua.Length();
  if (nv > 2 || nu > 2 || (int)ca.Length() != nv) {
    Napi::Error::New(info.Env(), "sweepF32F64: at most 2 v, as many coefficients, and 2 u").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  double c[2] = {0, 0}, out[2] = {0, 0};
  const float* v[2] = {nullptr, nullptr};
  const float* u[2] = {nullptr, nullptr};
  for (int j = 0; j < nv; j++) {
    c[j] = ca.Get(j).As<Napi::Number>().DoubleValue();
    v[j] = va.Get(j).As<Napi::Float32Array>().Data();
  }
  for (int j = 0; j < nu; j++) u[j] = ua.Get(j).As<Napi::Float32Array>().Data();
  sweep_f32_f64(q.Data(), c, v, nv, info[3].As<Napi::Number>().DoubleValue(), u, nu, (long)q.ElementLength(), out);
  auto result = Napi::Array::New(info.Env(), nu);
  for (int j = 0; j < nu; j++) result.Set(j, Napi::Number::New(info.Env(), out[j]));
  return result;
}

// gram(f, c, k, g): G = F F^T, F [c x k]
Napi::Value Gram(const Napi::CallbackInfo& info) {
  Call call;
  gram(F(info, 0), I(info, 1), I(info, 2), F(info, 3));
  return info.Env().Undefined();
}

// gramC16(x, c, hw, g), mixChannelsC16(d, c, x, hw, y): the same for an nChw16c x (c a multiple of 16), y nChw16c
Napi::Value GramC16(const Napi::CallbackInfo& info) {
  Call call;
  gram_c16(F(info, 0), I(info, 1), I(info, 2), F(info, 3));
  return info.Env().Undefined();
}

Napi::Value MixChannelsC16(const Napi::CallbackInfo& info) {
  Call call;
  mix_channels_c16(F(info, 0), I(info, 1), F(info, 2), I(info, 3), F(info, 4));
  return info.Env().Undefined();
}

// fromNchw16c(x, blocks, hw, y): NCHW y from nChw16c x (Tensor.data of a channel-blocked tensor)
Napi::Value FromNchw16c(const Napi::CallbackInfo& info) {
  Call call;
  from_nchw16c(F(info, 0), I(info, 1), I(info, 2), F(info, 3));
  return info.Env().Undefined();
}

// conv2d(x, n, cin, h, w, wt, cout, k, pad, stride, bias, relu, y, wino|null, winoTile, reflect, upsample, pool, blocked)
// (pool: with wino only, y the 2x2 stride-2 max-pool of the output; the backend checks both.
// blocked: X_BLOCKED | Y_BLOCKED, on the channel-blocked path only, refused elsewhere)
Napi::Value Conv2d(const Napi::CallbackInfo& info) {
  Call call;
  const bool pool = info.Length() > 17 && info[17].IsBoolean() && B(info, 17) && F(info, 13);
  const int blocked = info.Length() > 18 && info[18].IsNumber() ? I(info, 18) : 0;
  const bool c16 = F(info, 13) && winograd_c16(I(info, 2), I(info, 6), Tile(info, 14));
  if (blocked && (!c16 || ((blocked & X_BLOCKED) && (B(info, 15) || I(info, 16) != 1)))) {
    Napi::Error::New(info.Env(), "conv2d: nChw16c operands need the channel-blocked Winograd path").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  conv2d(F(info, 0), I(info, 1), I(info, 2), I(info, 3), I(info, 4), F(info, 5), I(info, 6), I(info, 7), I(info, 8),
         I(info, 9), F(info, 10), B(info, 11), F(info, 12), F(info, 13), Tile(info, 14), B(info, 15), I(info, 16), pool, blocked);
  return info.Env().Undefined();
}

// conv2dBackwardData(dy, n, cin, h, w, wt, cout, k, pad, stride, dx, wino|null, winoTile, add|null, mask|null, c16, blocked)
// (c16: wino in the channel-blocked layout, taking that path; blocked: X_BLOCKED (dy) | Y_BLOCKED
// (dx, add and mask), on that path only, as conv2d)
Napi::Value Conv2dBackwardData(const Napi::CallbackInfo& info) {
  Call call;
  const bool c16 = info.Length() > 15 && info[15].IsBoolean() && B(info, 15) && F(info, 11) && winograd_c16(I(info, 6), I(info, 2), Tile(info, 12));
  const int blocked = info.Length() > 16 && info[16].IsNumber() ? I(info, 16) : 0;
  if (blocked && !c16) {
    Napi::Error::New(info.Env(), "conv2dBackwardData: nChw16c operands need the channel-blocked Winograd path").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  conv2d_backward_data(F(info, 0), I(info, 1), I(info, 2), I(info, 3), I(info, 4), F(info, 5), I(info, 6), I(info, 7),
                       I(info, 8), I(info, 9), F(info, 10), F(info, 11), Tile(info, 12), F(info, 13), F(info, 14), c16, blocked);
  return info.Env().Undefined();
}

// winogradWeightsSize(cin, cout, tile) -> floats; winogradWeights(wt, wcin, wcout, rotate, tile, out, c16?, round?)
// (c16: rotated ones in the channel-blocked layout too, for conv2dBackwardData with c16; round: of
// the weights rounded to bfloat16)
Napi::Value WinogradWeightsSize(const Napi::CallbackInfo& info) {
  Call call;
  return Napi::Number::New(info.Env(), (double)winograd_weights_size(I(info, 0), I(info, 1), Tile(info, 2)));
}

Napi::Value WinogradWeights(const Napi::CallbackInfo& info) {
  Call call;
  const auto flag = [&](size_t i) { return info.Length() > i && info[i].IsBoolean() && B(info, i); };
  winograd_weights(F(info, 0), I(info, 1), I(info, 2), B(info, 3), Tile(info, 4), F(info, 5), flag(6), flag(7));
  return info.Env().Undefined();
}

// winogradC16(cin, cout, tile) -> whether a forward convolution takes the channel-blocked path.
Napi::Value WinogradC16(const Napi::CallbackInfo& info) {
  Call call;
  return Napi::Boolean::New(info.Env(), winograd_c16(I(info, 0), I(info, 1), Tile(info, 2)));
}

// winogradStages(reset) -> [input ms, GEMM ms, output ms, GEMM GFLOP, input MB, output MB, fused tiles,
// streamed tiles] since the last reset.
Napi::Value WinogradStagesFn(const Napi::CallbackInfo& info) {
  Call call;
  WinogradStages& s = winograd_stages();
  auto out = Napi::Float64Array::New(info.Env(), 8);
  const double v[8] = {s.input_s * 1e3, s.gemm_s * 1e3, s.output_s * 1e3, s.gemm_flops / 1e9, s.input_bytes / 1e6, s.output_bytes / 1e6, s.fused_tiles, s.streamed_tiles};
  for (int i = 0; i < 8; i++) out[i] = v[i];
  if (info.Length() > 0 && info[0].IsBoolean() && info[0].As<Napi::Boolean>().Value()) s = WinogradStages{};
  return out;
}

// conv2dBackwardParams(dy, x, n, cin, h, w, cout, k, pad, stride, dw, db)
Napi::Value Conv2dBackwardParams(const Napi::CallbackInfo& info) {
  Call call;
  conv2d_backward_params(F(info, 0), F(info, 1), I(info, 2), I(info, 3), I(info, 4), I(info, 5), I(info, 6), I(info, 7),
                         I(info, 8), I(info, 9), F(info, 10), F(info, 11));
  return info.Env().Undefined();
}

// maxPool2d(x, planes, h, w, k, stride, pad, y, ho, wo)
Napi::Value MaxPool2d(const Napi::CallbackInfo& info) {
  Call call;
  max_pool2d(F(info, 0), I(info, 1), I(info, 2), I(info, 3), I(info, 4), I(info, 5), I(info, 6), F(info, 7), I(info, 8),
             I(info, 9));
  return info.Env().Undefined();
}

// conv2dSmallCin(x, n, cin, h, w, wt, cout, bias, relu, y, blocked?) (blocked: y in nChw16c, cout % 16 == 0)
Napi::Value Conv2dSmallCin(const Napi::CallbackInfo& info) {
  Call call;
  const bool blocked = info.Length() > 10 && info[10].IsBoolean() && B(info, 10);
  if (blocked && I(info, 6) % 16 != 0) {
    Napi::Error::New(info.Env(), "conv2dSmallCin: nChw16c needs output channels in multiples of 16").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  conv3x3_small_cin(F(info, 0), I(info, 1), I(info, 2), I(info, 3), I(info, 4), F(info, 5), I(info, 6), F(info, 7),
                    B(info, 8), F(info, 9), blocked);
  return info.Env().Undefined();
}

// conv2dBackwardDataSmallCin(dy, n, cin, h, w, wr, cout, dx, blocked?: dy nChw16c)
Napi::Value Conv2dBackwardDataSmallCin(const Napi::CallbackInfo& info) {
  Call call;
  const bool blocked = info.Length() > 8 && info[8].IsBoolean() && B(info, 8);
  if (blocked && I(info, 6) % 16 != 0) {
    Napi::Error::New(info.Env(), "conv2dBackwardDataSmallCin: an nChw16c dy needs its channels in multiples of 16").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  conv3x3_small_cin_backward_data(F(info, 0), I(info, 1), I(info, 2), I(info, 3), I(info, 4), F(info, 5), I(info, 6),
                                  F(info, 7), blocked);
  return info.Env().Undefined();
}

// conv2dDirect(x, n, cin, h, w, wt, cout, k, pad, reflect, bias, relu, y)
Napi::Value Conv2dDirect(const Napi::CallbackInfo& info) {
  Call call;
  conv2d_direct(F(info, 0), I(info, 1), I(info, 2), I(info, 3), I(info, 4), F(info, 5), I(info, 6), I(info, 7), I(info, 8),
                B(info, 9), F(info, 10), B(info, 11), F(info, 12));
  return info.Env().Undefined();
}

// addScaled(a, b, alpha, y): y = a + alpha b
Napi::Value AddScaled(const Napi::CallbackInfo& info) {
  Call call;
  auto a = info[0].As<Napi::Float32Array>();
  add_scaled(a.Data(), F(info, 1), (float)info[2].As<Napi::Number>().DoubleValue(), F(info, 3), (long)a.ElementLength());
  return info.Env().Undefined();
}

// scale(x, alpha, y): y = alpha x
Napi::Value Scale(const Napi::CallbackInfo& info) {
  Call call;
  auto x = info[0].As<Napi::Float32Array>();
  scale(x.Data(), (float)info[1].As<Napi::Number>().DoubleValue(), F(info, 2), (long)x.ElementLength());
  return info.Env().Undefined();
}

// sumOfSquares(x): the sum of x^2, as a double
Napi::Value SumOfSquares(const Napi::CallbackInfo& info) {
  Call call;
  auto x = info[0].As<Napi::Float32Array>();
  return Napi::Number::New(info.Env(), sum_of_squares(x.Data(), (long)x.ElementLength()));
}

// reflectionPad(x, planes, h, w, pad, y), upsampleNearest(x, planes, h, w, factor, y)
Napi::Value ReflectionPad(const Napi::CallbackInfo& info) {
  Call call;
  reflection_pad(F(info, 0), I(info, 1), I(info, 2), I(info, 3), I(info, 4), F(info, 5));
  return info.Env().Undefined();
}

Napi::Value UpsampleNearest(const Napi::CallbackInfo& info) {
  Call call;
  upsample_nearest(F(info, 0), I(info, 1), I(info, 2), I(info, 3), I(info, 4), F(info, 5));
  return info.Env().Undefined();
}

// instanceNorm(x, n, c, m, w, b, eps, relu, y)
Napi::Value InstanceNorm(const Napi::CallbackInfo& info) {
  Call call;
  instance_norm(F(info, 0), I(info, 1), I(info, 2), I(info, 3), F(info, 4), F(info, 5), (float)info[6].As<Napi::Number>().DoubleValue(),
                B(info, 7), F(info, 8));
  return info.Env().Undefined();
}

// instanceNormBackward(dy, x, reluOut | null, n, c, m, w, eps, dx, dw, db)
Napi::Value InstanceNormBackward(const Napi::CallbackInfo& info) {
  Call call;
  instance_norm_backward(F(info, 0), F(info, 1), info[2].IsNull() ? nullptr : F(info, 2), I(info, 3), I(info, 4), I(info, 5),
                         F(info, 6), (float)info[7].As<Napi::Number>().DoubleValue(), F(info, 8), F(info, 9), F(info, 10));
  return info.Env().Undefined();
}

// maxPool2dBackward(dy, x, planes, h, w, k, stride, pad, dx, ho, wo, reluMask)
Napi::Value MaxPool2dBackward(const Napi::CallbackInfo& info) {
  Call call;
  max_pool2d_backward(F(info, 0), F(info, 1), I(info, 2), I(info, 3), I(info, 4), I(info, 5), I(info, 6), I(info, 7),
                      F(info, 8), I(info, 9), I(info, 10), B(info, 11));
  return info.Env().Undefined();
}

// maxPool2dC16(x, n, c, h, w, y): 2x2 stride 2, x and y nChw16c (c % 16 == 0)
Napi::Value MaxPool2dC16(const Napi::CallbackInfo& info) {
  Call call;
  max_pool2x2_c16(F(info, 0), I(info, 1), I(info, 2), I(info, 3), I(info, 4), F(info, 5));
  return info.Env().Undefined();
}

// maxPool2dC16Backward(dy, x, n, c, h, w, dx, reluMask): all nChw16c
Napi::Value MaxPool2dC16Backward(const Napi::CallbackInfo& info) {
  Call call;
  max_pool2x2_c16_backward(F(info, 0), F(info, 1), I(info, 2), I(info, 3), I(info, 4), I(info, 5), F(info, 6), B(info, 7));
  return info.Env().Undefined();
}

// linear(x, m, k, w, n, b, y)
Napi::Value Linear(const Napi::CallbackInfo& info) {
  Call call;
  linear(F(info, 0), I(info, 1), I(info, 2), F(info, 3), I(info, 4), F(info, 5), F(info, 6));
  return info.Env().Undefined();
}

// channelsLast(x, n, c, hw, y)
Napi::Value ChannelsLast(const Napi::CallbackInfo& info) {
  Call call;
  channels_last(F(info, 0), I(info, 1), I(info, 2), I(info, 3), F(info, 4));
  return info.Env().Undefined();
}

// linearBf16(x, m, k, w: Uint16Array of bf16 bits, or Float32Array rounded as it is read, n, b, y)
Napi::Value LinearBf16(const Napi::CallbackInfo& info) {
  Call call;
  if (info[3].As<Napi::TypedArray>().TypedArrayType() == napi_float32_array)
    linear_bf16(F(info, 0), I(info, 1), I(info, 2), F(info, 3), I(info, 4), F(info, 5), F(info, 6));
  else
    linear_bf16(F(info, 0), I(info, 1), I(info, 2), info[3].As<Napi::Uint16Array>().Data(), I(info, 4), F(info, 5), F(info, 6));
  return info.Env().Undefined();
}

// relu(x, y), reluBackward(dy, x, dx)
Napi::Value Relu(const Napi::CallbackInfo& info) {
  Call call;
  auto x = info[0].As<Napi::Float32Array>();
  relu(x.Data(), F(info, 1), (long)x.ElementLength());
  return info.Env().Undefined();
}

Napi::Value ReluBackward(const Napi::CallbackInfo& info) {
  Call call;
  auto dy = info[0].As<Napi::Float32Array>();
  relu_backward(dy.Data(), F(info, 1), F(info, 2), (long)dy.ElementLength());
  return info.Env().Undefined();
}

// PASTICHE_SYSTEM_MALLOC=1: the system's memory behaviour (no tune_malloc, hugePages or hugeBuffer).
bool system_malloc() {
  static const bool set = std::getenv("PASTICHE_SYSTEM_MALLOC") != nullptr;
  return set;
}

// Large tensors are allocated and freed all the time (every layer's output). glibc serves blocks
// over 32 MiB with fresh mmap()s, so each one page-faults on first touch (tens of ms for a
// 512x512x64 activation in a VM). Serving them from the heap and keeping freed memory for reuse
// avoids that; the price is that the process keeps its peak heap. PASTICHE_SYSTEM_MALLOC=1 opts out.
void tune_malloc() {
#if defined(__GLIBC__)
  if (system_malloc()) return;
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 0x7fffffff);
#endif
}

// Other native libraries in the process (Dawn and the Vulkan loader, when WebGPU starts) write
// their diagnostics straight to file descriptor 2, below Node. captureStderr(true) points fd 2
// at an anonymous temporary file; captureStderr(false) restores it and returns what was written,
// so the CLI can keep its one-line output and show that text only when asked (PASTICHE_DEBUG).
struct StderrCapture {
  int saved = -1;
  std::FILE* sink = nullptr;
};
StderrCapture g_capture;

// Maps the pages of [p, p + bytes) for reading now (see MapFile); a hint, harmless on any memory.
void populate_read(void* p, size_t bytes) {
#if defined(__linux__)
#if defined(MADV_POPULATE_READ)
  constexpr int kPopulateRead = MADV_POPULATE_READ;
#else
  constexpr int kPopulateRead = 22;
#endif
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  const uintptr_t lo = (uintptr_t)p / page * page;
  madvise(reinterpret_cast<void*>(lo), (uintptr_t)p + bytes - lo, kPopulateRead);
#else
  (void)p;
  (void)bytes;
#endif
}

// populatePages(view): the pages under a typed array mapped now, as mapFile does for a whole file.
Napi::Value PopulatePages(const Napi::CallbackInfo& info) {
  if (info.Length() >= 1 && info[0].IsTypedArray()) {
    auto a = info[0].As<Napi::TypedArray>();
    auto* base = static_cast<uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset();
    if (a.ByteLength() > 0) populate_read(base, a.ByteLength());
  }
  return info.Env().Undefined();
}

// A whole file as an ArrayBuffer over a private mapping of it: the kernel maps the page cache's
// pages instead of copying 575 MB of converted weights (0.4-0.7 s as a read on these VMs). The
// mapping is copy-on-write, so a write never reaches the file; it is unmapped when the buffer is
// collected. null when the file cannot be mapped: the caller reads it instead. mapFile(path, false)
// leaves the pages to be mapped when touched or by populatePages: a reader that keeps part of a
// file (stylize needs VGG19's 80 MB of convolutions, not the 494 MB of fc6-fc8) maps only that.
Napi::Value MapFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
#if defined(_WIN32)
  return env.Null();
#else
  if (info.Length() < 1 || !info[0].IsString()) return env.Null();
  const std::string path = info[0].As<Napi::String>();
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return env.Null();
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0) {
    close(fd);
    return env.Null();
  }
  const size_t length = static_cast<size_t>(st.st_size);
  void* p = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  close(fd);  // the mapping keeps the file
  if (p == MAP_FAILED) return env.Null();
  // Map every page now, for reading: MAP_POPULATE would fault a writable private mapping for
  // writing, i.e. copy all of it (measured: 450 ms, no faster than a read); MADV_POPULATE_READ
  // (Linux 5.14) maps the page cache's pages as they are (20-45 ms warm). A write still copies the
  // page it touches. Older kernels fault the pages in on first use instead.
  if (info.Length() < 2 || info[1].ToBoolean()) populate_read(p, length);
  return Napi::ArrayBuffer::New(env, p, length, [](Napi::Env, void* data, size_t* hint) {
    munmap(data, *hint);
    delete hint;
  }, new size_t(length));
#endif
}

// hugePages(array): asks for transparent huge pages under the array's whole 2 MiB pages, and for
// those already mapped to be gathered into huge ones now (MADV_COLLAPSE, Linux 6.1; a no-op on
// older kernels). For the large tensors (the pool's fresh arrays): on these VMs (a paravirtualised
// hypervisor, PVM, which shadows the guest's page tables) touching a 4 KiB page whose mapping the
// hypervisor has dropped costs a trip to it, and a style iteration at 512 px walks ~1.5 GB of them.
// JavaScript's arrays come zeroed by calloc, i.e. touched before any madvise: THP had left them on
// 4 KiB pages (AnonHugePages in /proc/self/smaps_rollup: 20 MB of a VGG19 process, the transformed
// weights included). Inside a 512 px style iteration the max-pool's backward at 64 channels took
// 17-50 ms at its first call, 4.5 ms when called again at once, 5-6 ms on huge pages. The array
// stays V8's own, freed by its collector as before. PASTICHE_SYSTEM_MALLOC=1 opts out of this too
// (tune_malloc above).
Napi::Value HugePages(const Napi::CallbackInfo& info) {
  if (system_malloc()) return info.Env().Undefined();
  auto a = info[0].As<Napi::Float32Array>();
  advise_huge(a.Data(), a.ByteLength());
  collapse_huge(a.Data(), a.ByteLength());
  return info.Env().Undefined();
}

// misalignment(array) -> the floats from the array's start to the next 64-byte boundary (0-15).
Napi::Value Misalignment(const Napi::CallbackInfo& info) {
  const auto p = reinterpret_cast<uintptr_t>(info[0].As<Napi::Float32Array>().Data());
  return Napi::Number::New(info.Env(), (double)(((64 - (p & 63)) & 63) / sizeof(float)));
}

// hugeBuffer(floats) -> a zeroed ArrayBuffer of `floats` floats on huge pages from its first
// touch (below 2 MiB: 64-byte aligned, no huge page), or null (then the caller takes an ordinary
// array) without memory. For the transformed weights, made once per weight tensor and kept:
// hugePages on a fresh JavaScript array costs a calloc's memset and then MADV_COLLAPSE's copy, and
// a first `classify` of the full-size VGG19 took 0.3-0.8 s longer that way (its forward pass
// 1.3-1.6 s -> 1.6-2.5 s). The memory (alloc_huge_zeroed: from 2 MiB a mapping of its own) goes
// back when a finalizer runs after the collector, on a later turn of the event loop (not for
// arrays made and dropped by the thousand), or at once with releaseHugeBuffer.
struct HugeBlock {
  size_t bytes;
  bool released = false;
};
// The live ones, by address: worker threads (the server's jobs) make and release them too.
std::unordered_map<void*, HugeBlock*> g_huge_blocks;
std::mutex g_huge_mutex;

Napi::Value HugeBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
#if defined(__linux__)
  if (system_malloc()) return env.Null();
  const size_t bytes = static_cast<size_t>(info[0].As<Napi::Number>().DoubleValue()) * sizeof(float);
  void* p = alloc_huge_zeroed(bytes);
  if (!p) return env.Null();
  Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(bytes));
  auto* block = new HugeBlock{bytes};
  {
    std::lock_guard<std::mutex> lock(g_huge_mutex);
    g_huge_blocks[p] = block;
  }
  return Napi::ArrayBuffer::New(env, p, bytes, [](Napi::Env e, void* data, HugeBlock* b) {
    bool release;
    {
      std::lock_guard<std::mutex> lock(g_huge_mutex);
      release = !b->released;
      if (release) g_huge_blocks.erase(data);
    }
    if (release) {
      free_huge(data, b->bytes);
      Napi::MemoryManagement::AdjustExternalMemory(e, -static_cast<int64_t>(b->bytes));
    }
    delete b;
  }, block);
#else
  return env.Null();
#endif
}

// releaseHugeBuffer(buffer) -> whether `buffer` was a live hugeBuffer, now detached (it and every
// view of it have length 0) and its memory given back: a scratch buffer replaced by a larger one
// need not wait for the collector. Any other ArrayBuffer is left as it is.
Napi::Value ReleaseHugeBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArrayBuffer()) return Napi::Boolean::New(env, false);
  auto buffer = info[0].As<Napi::ArrayBuffer>();
  void* data = buffer.Data();
  size_t bytes;
  {
    std::lock_guard<std::mutex> lock(g_huge_mutex);
    const auto it = g_huge_blocks.find(data);
    if (!data || it == g_huge_blocks.end()) return Napi::Boolean::New(env, false);
    // The finalizer may run inside Detach or later: marked released first, it frees nothing.
    bytes = it->second->bytes;
    it->second->released = true;
    g_huge_blocks.erase(it);
  }
  buffer.Detach();
  free_huge(data, bytes);
  Napi::MemoryManagement::AdjustExternalMemory(env, -static_cast<int64_t>(bytes));
  return Napi::Boolean::New(env, true);
}

Napi::Value CaptureStderr(const Napi::CallbackInfo& info) {
  const bool begin = info.Length() > 0 && info[0].ToBoolean().Value();
#if defined(_WIN32)
  (void)begin;
  return info.Env().Undefined();
#else
  std::fflush(stderr);
  if (begin) {
    if (g_capture.sink) return Napi::Boolean::New(info.Env(), false);  // already capturing
    std::FILE* sink = std::tmpfile();
    if (!sink) return Napi::Boolean::New(info.Env(), false);
    const int saved = dup(2);
    if (saved < 0 || dup2(fileno(sink), 2) < 0) {
      if (saved >= 0) close(saved);
      std::fclose(sink);
      return Napi::Boolean::New(info.Env(), false);
    }
    g_capture = {saved, sink};
    return Napi::Boolean::New(info.Env(), true);
  }
  if (!g_capture.sink) return Napi::String::New(info.Env(), "");
  dup2(g_capture.saved, 2);
  close(g_capture.saved);
  std::string text;
  std::rewind(g_capture.sink);
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, g_capture.sink)) > 0 && text.size() < (1u << 20);) text.append(buf, n);
  std::fclose(g_capture.sink);
  g_capture = {};
  return Napi::String::New(info.Env(), text);
#endif
}

// probeMachine("fma", iterations) -> GFLOP/s; probeMachine("read" | "triad", floats) -> GB/s.
Napi::Value ProbeMachine(const Napi::CallbackInfo& info) {
  Call call;
  const std::string what = info[0].As<Napi::String>();
  const long n = (long)info[1].As<Napi::Number>().Int64Value();
  if (n < 1) return Napi::Number::New(info.Env(), 0);
  const double v = what == "fma" ? probe_fma_gflops(n) : probe_bandwidth_gbs(what == "triad", n);
  return Napi::Number::New(info.Env(), v);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  tune_malloc();
  exports.Set("probeMachine", Napi::Function::New(env, ProbeMachine));
  exports.Set("captureStderr", Napi::Function::New(env, CaptureStderr));
  exports.Set("mapFile", Napi::Function::New(env, MapFile));
  exports.Set("populatePages", Napi::Function::New(env, PopulatePages));
  exports.Set("hugePages", Napi::Function::New(env, HugePages));
  exports.Set("misalignment", Napi::Function::New(env, Misalignment));
  exports.Set("hugeBuffer", Napi::Function::New(env, HugeBuffer));
  exports.Set("releaseHugeBuffer", Napi::Function::New(env, ReleaseHugeBuffer));
  exports.Set("isa", Napi::Function::New(env, IsaFn));
  exports.Set("cpuHasAvx2", Napi::Boolean::New(env, cpu_has_avx2()));
  exports.Set("cpuHasAvx512", Napi::Boolean::New(env, cpu_has_avx512()));
  exports.Set("cpuHasBf16", Napi::Boolean::New(env, cpu_has_bf16()));
  exports.Set("precision", Napi::Function::New(env, PrecisionFn));
  exports.Set("roundBf16", Napi::Function::New(env, RoundBf16));
  exports.Set("toBf16Bits", Napi::Function::New(env, ToBf16Bits));
  exports.Set("threads", Napi::Function::New(env, Threads));
  exports.Set("sgemm", Napi::Function::New(env, Sgemm));
  exports.Set("conv2d", Napi::Function::New(env, Conv2d));
  exports.Set("conv2dSmallCin", Napi::Function::New(env, Conv2dSmallCin));
  exports.Set("conv2dBackwardDataSmallCin", Napi::Function::New(env, Conv2dBackwardDataSmallCin));
  exports.Set("conv2dDirect", Napi::Function::New(env, Conv2dDirect));
  exports.Set("instanceNorm", Napi::Function::New(env, InstanceNorm));
  exports.Set("reflectionPad", Napi::Function::New(env, ReflectionPad));
  exports.Set("addScaled", Napi::Function::New(env, AddScaled));
  exports.Set("scale", Napi::Function::New(env, Scale));
  exports.Set("gram", Napi::Function::New(env, Gram));
  exports.Set("gramC16", Napi::Function::New(env, GramC16));
  exports.Set("mixChannelsC16", Napi::Function::New(env, MixChannelsC16));
  exports.Set("fromNchw16c", Napi::Function::New(env, FromNchw16c));
  exports.Set("sweepF32F64", Napi::Function::New(env, SweepF32F64));
  exports.Set("sumOfSquares", Napi::Function::New(env, SumOfSquares));
  exports.Set("upsampleNearest", Napi::Function::New(env, UpsampleNearest));
  exports.Set("instanceNormBackward", Napi::Function::New(env, InstanceNormBackward));
  exports.Set("conv2dBackwardData", Napi::Function::New(env, Conv2dBackwardData));
  exports.Set("conv2dBackwardParams", Napi::Function::New(env, Conv2dBackwardParams));
  exports.Set("winogradWeightsSize", Napi::Function::New(env, WinogradWeightsSize));
  exports.Set("winogradC16", Napi::Function::New(env, WinogradC16));
  exports.Set("winogradWeights", Napi::Function::New(env, WinogradWeights));
  exports.Set("maxPool2d", Napi::Function::New(env, MaxPool2d));
  exports.Set("maxPool2dBackward", Napi::Function::New(env, MaxPool2dBackward));
  exports.Set("maxPool2dC16", Napi::Function::New(env, MaxPool2dC16));
  exports.Set("maxPool2dC16Backward", Napi::Function::New(env, MaxPool2dC16Backward));
  exports.Set("linear", Napi::Function::New(env, Linear));
  exports.Set("linearBf16", Napi::Function::New(env, LinearBf16));
  exports.Set("channelsLast", Napi::Function::New(env, ChannelsLast));
  exports.Set("winogradStages", Napi::Function::New(env, WinogradStagesFn));
  exports.Set("relu", Napi::Function::New(env, Relu));
  exports.Set("reluBackward", Napi::Function::New(env, ReluBackward));
  return exports;
}

}  // namespace

NODE_API_MODULE(pastiche_native, Init)
