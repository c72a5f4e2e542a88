// Early-return helpers for absl::Status / absl::StatusOr.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define FF_CONCAT_INNER(a, b) a##b
#define FF_CONCAT(a, b) FF_CONCAT_INNER(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define FF_RETURN_IF_ERROR(expr)                 \
  do {                                           \
    ::absl::Status ff_status_ = (expr);          \
    if (!ff_status_.ok()) return ff_status_;     \
  } while (false)

// `FF_ASSIGN_OR_RETURN(auto x, MakeX());` unwraps a StatusOr or returns its error.
#define FF_ASSIGN_OR_RETURN(lhs, expr) \
  FF_ASSIGN_OR_RETURN_IMPL(FF_CONCAT(ff_statusor_, __LINE__), lhs, expr)
#define FF_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return std::move(tmp).status(); \
  lhs = std::move(tmp).value()
