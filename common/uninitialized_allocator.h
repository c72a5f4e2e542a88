// An allocator whose value-initialisation (what vector::resize(n) and vector(n) ask for) leaves
// new elements uninitialised. For large arrays that a parallel loop fills completely:
// zero-filling them first would run on the calling thread alone (with all the page faults of
// fresh memory), a serial cost as large as the arithmetic at 16 threads; left uninitialised,
// each thread first-touches the pages it writes.
#pragma once

#include <memory>
#include <new>
#include <utility>

namespace flatfleet {

template <typename T>
struct UninitializedAllocator : std::allocator<T> {
  template <typename U>
  struct rebind {
    using other = UninitializedAllocator<U>;
  };
  UninitializedAllocator() = default;
  template <typename U>
  UninitializedAllocator(const UninitializedAllocator<U>&) noexcept {}

  // Value-initialisation becomes default-initialisation.
  template <typename U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

}  // namespace flatfleet
