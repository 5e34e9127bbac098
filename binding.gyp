{
  "targets": [
    {
      "target_name": "pastiche_native",
      "sources": [
        "native/src/addon.cc",
        "native/src/threadpool.cc",
        "native/src/gemm.cc",
        "native/src/gemm_bf16.cc",
        "native/src/winograd.cc",
        "native/src/blocked.cc",
        "native/src/winograd_avx512.cc",
        "native/src/winograd_avx2.cc",
        "native/src/winograd_portable.cc",
        "native/src/simd_avx512.cc",
        "native/src/simd_avx2.cc",
        "native/src/simd_portable.cc",
        "native/src/conv.cc",
        "native/src/machine.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_DISABLE_CPP_EXCEPTIONS", "NAPI_VERSION=8"],
      "cflags_cc": ["-O3", "-std=c++17", "-fno-math-errno", "-Wall", "-Wno-unused-parameter", "-Wno-psabi"],
      "xcode_settings": { "OTHER_CPLUSPLUSFLAGS": ["-O3", "-std=c++17"] }
    }
  ]
}
