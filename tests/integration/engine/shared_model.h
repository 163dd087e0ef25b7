// A model from the shared test files for engine and worker tests: loaded
// into `model_var` (a std::shared_ptr<const Model>), or the test is skipped
// when the file is absent (a clone without ../shared).
#pragma once

#include <memory>
#include <utility>

#include "engine/model.h"
#include "gtest/gtest.h"
#include "tests/test_support.h"

#define FERRY_LOAD_SHARED_MODEL(model_var, rel)                                                   \
  FERRY_REQUIRE_SHARED(model_var##path, rel);                                                     \
  {                                                                                               \
    auto loaded = ::ferry::Model::Load(model_var##path, ::ferry::LoadOptions{.progress = false}); \
    ASSERT_TRUE(loaded.ok()) << loaded.status();                                                  \
    model_var = std::shared_ptr<const ::ferry::Model>(std::move(*loaded));                        \
  }
