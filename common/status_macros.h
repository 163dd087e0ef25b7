// Status helpers for absl::Status / absl::StatusOr.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define FERRY_CONCAT_INNER_(a, b) a##b
#define FERRY_CONCAT_(a, b) FERRY_CONCAT_INNER_(a, b)

// Returns from the current function when `expr` is not OK.
#define FERRY_RETURN_IF_ERROR(expr)                 \
  do {                                              \
    ::absl::Status ferry_status_ = (expr);          \
    if (!ferry_status_.ok()) return ferry_status_;  \
  } while (0)

// `FERRY_ASSIGN_OR_RETURN(auto x, MakeX());` assigns the value or returns the error.
#define FERRY_ASSIGN_OR_RETURN(lhs, expr) \
  FERRY_ASSIGN_OR_RETURN_IMPL_(FERRY_CONCAT_(ferry_statusor_, __LINE__), lhs, expr)

#define FERRY_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return std::move(tmp).status();     \
  lhs = std::move(tmp).value()
