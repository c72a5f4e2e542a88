// Unguessable ids for the coordinator's objects (batches, uploaded files, interactive
// completions): 24 hex digits from a generator seeded by the OS entropy source and the clock.
#pragma once

#include <string>

namespace flatfleet::coordinator {

// 24 lowercase hex digits; callers add their prefix ("batch_", "file-", "cmpl-").
std::string RandomHexId();

}  // namespace flatfleet::coordinator
