// A std::vector<double> whose resize and size constructor leave new elements uninitialised. For
// large arrays that a parallel loop fills completely: zero-filling them first would run on the
// calling thread alone (with all the page faults of fresh memory), a serial cost as large as the
// arithmetic at 16 threads; left uninitialised, each thread first-touches the pages it writes.
#pragma once

#include <memory>
#include <new>
#include <utility>
#include <vector>

namespace flatfleet::quant {

template <typename T>
struct UninitializedAllocator : std::allocator<T> {
  template <typename U>
  struct rebind {
    using other = UninitializedAllocator<U>;
  };
  UninitializedAllocator() = default;
  template <typename U>
  UninitializedAllocator(const UninitializedAllocator<U>&) noexcept {}

  // Value-initialisation (what resize(n) and vector(n) ask for) becomes default-initialisation.
  template <typename U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

// Every element must be written before it is read.
using UninitializedBuffer = std::vector<double, UninitializedAllocator<double>>;

}  // namespace flatfleet::quant
