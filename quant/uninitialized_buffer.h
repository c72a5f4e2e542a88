// A std::vector<double> whose resize and size constructor leave new elements uninitialised
// (common/uninitialized_allocator.h says when that pays).
#pragma once

#include <vector>

#include "common/uninitialized_allocator.h"

namespace flatfleet::quant {

// Every element must be written before it is read.
using UninitializedBuffer = std::vector<double, UninitializedAllocator<double>>;

}  // namespace flatfleet::quant
