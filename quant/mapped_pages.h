// Giving back the resident pages of a memory-mapped, read-only checkpoint tensor once it has
// been used: the file stays mapped (and in the page cache), but the pages stop counting towards
// this process's resident set, so reading a 70B checkpoint layer by layer keeps the RSS at one
// layer's worth. The next access simply reads them from the file again.
#pragma once

#include <cstddef>
#include <span>

namespace flatfleet::quant {

// Best effort (madvise MADV_DONTNEED on the whole pages inside `bytes`); never fails.
void ReleaseMappedPages(std::span<const std::byte> bytes);

}  // namespace flatfleet::quant
