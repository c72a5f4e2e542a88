#include "quant/blas_library.h"

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string_view>
#include <vector>

namespace flatfleet::quant {
namespace {

std::unique_ptr<BlasLibrary> Load() {
  const char* configured = std::getenv("FLATFLEET_BLAS_LIBRARY");
  if (configured != nullptr && std::string_view(configured) == "none") {
    std::fprintf(stderr, "flatfleet: FLATFLEET_BLAS_LIBRARY=none: GPTQ uses its scalar loops\n");
    return nullptr;
  }
  std::vector<std::string> candidates;
  if (configured != nullptr && *configured != '\0') {
    candidates = {configured};
  } else {
    candidates = {"libopenblas.so.0", "libopenblas.so"};
  }
  for (const std::string& candidate : candidates) {
    // RTLD_LOCAL: the symbols stay out of the global namespace (nothing else binds to them).
    void* handle = dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) continue;
    auto library = std::make_unique<BlasLibrary>();
    library->dsyrk = reinterpret_cast<BlasLibrary::Dsyrk>(dlsym(handle, "cblas_dsyrk"));
    library->dgemm = reinterpret_cast<BlasLibrary::Dgemm>(dlsym(handle, "cblas_dgemm"));
    library->dpotrf = reinterpret_cast<BlasLibrary::Dpotrx>(dlsym(handle, "dpotrf_"));
    library->dpotri = reinterpret_cast<BlasLibrary::Dpotrx>(dlsym(handle, "dpotri_"));
    if (library->dsyrk != nullptr && library->dgemm != nullptr && library->dpotrf != nullptr &&
        library->dpotri != nullptr) {
      library->path = candidate;
      return library;
    }
    std::fprintf(stderr,
                 "flatfleet: %s lacks cblas_dsyrk/cblas_dgemm/dpotrf_/dpotri_: GPTQ uses its "
                 "scalar loops\n",
                 candidate.c_str());
    dlclose(handle);
    return nullptr;
  }
  std::fprintf(stderr,
               "flatfleet: %s not found (install libopenblas0): GPTQ uses its scalar loops, "
               "slow at 7B+ shapes\n",
               candidates.front().c_str());
  return nullptr;
}

}  // namespace

const BlasLibrary* LoadedBlasLibrary() {
  // Loaded once and never unloaded (OpenBLAS's threads outlive any caller).
  static const BlasLibrary* const library = Load().release();
  return library;
}

}  // namespace flatfleet::quant
