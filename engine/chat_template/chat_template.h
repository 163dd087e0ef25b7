// Renders Hugging Face chat templates (Jinja2) to prompts, byte for byte as
// transformers does with python jinja2: trim_blocks and lstrip_blocks on,
// loop controls, raise_exception(), strftime_now() and a tojson that keeps
// non-ASCII text. Parsing happens once; rendering is const and may run on
// several threads at once.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/chat_template/render_options.h"
#include "nlohmann/json.hpp"

namespace ferry {

namespace chat_template {
struct Stmt;
}

class ChatTemplate {
 public:
  ~ChatTemplate();
  ChatTemplate(const ChatTemplate&) = delete;
  ChatTemplate& operator=(const ChatTemplate&) = delete;

  // Parses once. Fails with InvalidArgument ("line N: ...") on a syntax
  // error, an unknown tag, filter or test.
  static absl::StatusOr<std::unique_ptr<ChatTemplate>> Parse(std::string_view source);

  // Renders with `context`, an object whose keys become the template's
  // variables (messages, add_generation_prompt, bos_token, eos_token, tools,
  // ...). Fails with:
  //   InvalidArgument    the template called raise_exception(msg) (the status
  //                      message is msg), or hit a type error jinja2 also
  //                      raises (undefined attribute of undefined, str + int);
  //   ResourceExhausted  output, string or list size, macro recursion or the
  //                      work budget went over `options.limits`;
  //   Unimplemented      a Python feature outside the supported subset.
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& context) const;
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& context,
                                     const chat_template::RenderOptions& options) const;

 private:
  ChatTemplate();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ferry
