// OpenBLAS, loaded with dlopen at first use (GPTQ's Gram update, Cholesky, inverse and block
// update), never linked into the process.
//
// Why not linked: libopenblas.so.0 has a 60 KB PT_TLS segment. A library linked at start-up gets
// static TLS, which glibc carves from EVERY thread's stack; civetweb's small fixed worker stacks
// (the metrics server) then overflowed. A dlopen'ed module without DF_STATIC_TLS (Debian's has
// none: `readelf -d`) gets dynamic TLS instead, allocated on the heap by each thread on its first
// access, so threads that never call BLAS pay nothing (tests/quant/blas_library_test.cc).
//
// The LAPACK routines are OpenBLAS's own (dpotrf_/dpotri_, exported by libopenblas.so.0, threaded
// like its BLAS), so the one runtime package libopenblas0 is all GPTQ needs; no -dev package at
// build time. FLATFLEET_BLAS_LIBRARY names another file to load, or "none" for the scalar path.
#pragma once

#include <string>

namespace flatfleet::quant {

// The resolved entry points (CBLAS and Fortran LAPACK calling conventions; 32-bit integers, as
// Debian's libopenblas0 is built).
struct BlasLibrary {
  using Dsyrk = void (*)(int order, int uplo, int trans, int n, int k, double alpha,
                         const double* a, int lda, double beta, double* c, int ldc);
  using Dgemm = void (*)(int order, int trans_a, int trans_b, int m, int n, int k, double alpha,
                         const double* a, int lda, const double* b, int ldb, double beta, double* c,
                         int ldc);
  // Fortran: column-major; the trailing argument is gfortran's hidden length of `uplo`.
  using Dpotrx = void (*)(const char* uplo, const int* n, double* a, const int* lda, int* info,
                          unsigned long uplo_length);

  // CBLAS enumerators (cblas.h).
  static constexpr int kRowMajor = 101;
  static constexpr int kNoTrans = 111;
  static constexpr int kTrans = 112;
  static constexpr int kUpper = 121;

  Dsyrk dsyrk = nullptr;
  Dgemm dgemm = nullptr;
  Dpotrx dpotrf = nullptr;
  Dpotrx dpotri = nullptr;
  std::string path;  // the file loaded
};

// The library, loaded on the first call (thread-safe); null when it is missing or lacks a symbol,
// after one line on stderr saying so and that GPTQ falls back to its scalar loops.
const BlasLibrary* LoadedBlasLibrary();

}  // namespace flatfleet::quant
