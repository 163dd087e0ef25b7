#include "engine/chat_template/chat_template.h"

#include "common/status_macros.h"
#include "engine/chat_template/ast.h"
#include "engine/chat_template/interpreter.h"
#include "engine/chat_template/parser.h"

namespace ferry {

struct ChatTemplate::Impl {
  chat_template::Body body;
};

ChatTemplate::ChatTemplate() : impl_(std::make_unique<Impl>()) {}
ChatTemplate::~ChatTemplate() = default;

absl::StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::Parse(std::string_view source) {
  FERRY_ASSIGN_OR_RETURN(chat_template::Body body, chat_template::ParseTemplate(source));
  std::unique_ptr<ChatTemplate> t(new ChatTemplate());
  t->impl_->body = std::move(body);
  return t;
}

absl::StatusOr<std::string> ChatTemplate::Render(const nlohmann::ordered_json& context) const {
  return Render(context, chat_template::RenderOptions());
}

absl::StatusOr<std::string> ChatTemplate::Render(
    const nlohmann::ordered_json& context, const chat_template::RenderOptions& options) const {
  if (!context.is_object()) {
    return absl::InvalidArgumentError("chat template context must be a JSON object");
  }
  chat_template::Interpreter interp(options, chat_template::Value::FromJson(context));
  return interp.Render(impl_->body);
}

}  // namespace ferry
