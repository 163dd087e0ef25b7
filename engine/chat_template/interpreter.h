// Walks a parsed template and produces its text. One Interpreter renders one
// template once; it holds the scopes, the output budget and the limits that
// keep hostile templates from running forever or exhausting memory.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/chat_template/ast.h"
#include "engine/chat_template/render_options.h"
#include "engine/chat_template/value.h"

namespace ferry::chat_template {

// A variable scope. Loop iterations and macro calls get their own frame.
class Frame {
 public:
  explicit Frame(std::shared_ptr<Frame> parent) : parent_(std::move(parent)) {}
  const Value* Lookup(std::string_view name) const;
  void Set(std::string_view name, Value v) { vars_[std::string(name)] = std::move(v); }

 private:
  std::shared_ptr<Frame> parent_;
  absl::flat_hash_map<std::string, Value> vars_;
};

using FramePtr = std::shared_ptr<Frame>;

class Interpreter {
 public:
  // `context` must be a dict; its entries are the template's variables.
  Interpreter(const RenderOptions& options, const Value& context);

  absl::StatusOr<std::string> Render(const Body& body);

  // Spends `units` of the work budget; fails once it is exhausted.
  absl::Status Step(int64_t units = 1);
  // Spends budget for a new string of `bytes` and checks its size limit.
  absl::Status ChargeString(size_t bytes);
  absl::Status CheckListSize(size_t items) const;
  const RenderOptions& options() const { return options_; }

  absl::StatusOr<Value> Call(const Value& fn, CallArgs args);
  // jinja2's getattr (attribute first, then item) and getitem (item first).
  absl::StatusOr<Value> GetAttr(const Value& obj, std::string_view name);
  absl::StatusOr<Value> GetItem(const Value& obj, const Value& key);
  // Resolves "a.b.0" as filters' attribute= arguments do.
  absl::StatusOr<Value> GetAttrPath(const Value& obj, std::string_view path);
  // Python iteration: list items, dict keys, string characters; undefined
  // is empty. Fails for numbers, None and namespaces.
  absl::StatusOr<std::vector<Value>> Iterate(const Value& v);

  // Runs a macro body in a new frame under `closure`.
  absl::StatusOr<Value> CallMacro(const Stmt& macro, const FramePtr& closure, CallArgs args);
  const FramePtr& root() const { return root_; }

 private:
  enum class Flow { kNormal, kBreak, kContinue };

  absl::StatusOr<Flow> ExecBody(const Body& body, const FramePtr& frame, std::string& out);
  absl::StatusOr<Flow> Exec(const Stmt& s, const FramePtr& frame, std::string& out);
  absl::StatusOr<Flow> ExecFor(const Stmt& s, const FramePtr& frame, std::string& out);
  absl::Status ExecSet(const Stmt& s, const FramePtr& frame);
  absl::StatusOr<std::string> RenderToString(const Body& body, const FramePtr& frame);
  absl::Status Write(std::string& out, std::string_view text);
  absl::Status Assign(const std::vector<std::string>& targets, Value v, Frame& frame);

  absl::StatusOr<Value> Eval(const Expr& e, const FramePtr& frame);
  absl::StatusOr<Value> EvalName(const Expr& e, const FramePtr& frame);
  absl::StatusOr<Value> EvalBinary(const Expr& e, const FramePtr& frame);
  absl::StatusOr<Value> EvalCompare(const Expr& e, const FramePtr& frame);
  absl::StatusOr<Value> EvalSlice(const Expr& e, const FramePtr& frame);
  absl::StatusOr<CallArgs> EvalArgs(const Expr& e, size_t first, const FramePtr& frame);
  // Applies a filter chain whose innermost input is null to `input`.
  absl::StatusOr<Value> ApplyFilterChain(const Expr& chain, Value input, const FramePtr& frame);

  RenderOptions options_;
  FramePtr globals_;
  FramePtr root_;
  int64_t steps_left_;
  int call_depth_ = 0;
  int eval_depth_ = 0;
  const Value* block_input_ = nullptr;
};

}  // namespace ferry::chat_template
