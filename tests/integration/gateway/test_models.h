// Models and files the gateway tests share.
#pragma once

#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "tests/test_support.h"

namespace ferry::testing {

// The ChatML template (what the tiny preset and Qwen-style models use).
inline std::string ChatMlTemplateFile() {
  std::string path = std::string(::testing::TempDir()) + "/chatml-" + std::to_string(::getpid()) + ".jinja";
  std::ofstream(path)
      << "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
         "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
         "{% endif %}";
  return path;
}

// llama.cpp's greedy continuation of "Once upon a time" on stories260K.
inline constexpr char kStoriesGreedy[] = ", there was a little girl named Lily. She loved to play outsid";

}  // namespace ferry::testing

#define FERRY_REQUIRE_STORIES(var) FERRY_REQUIRE_SHARED(var, "models/stories260K.gguf")
