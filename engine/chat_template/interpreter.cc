#include "engine/chat_template/interpreter.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "engine/chat_template/builtins.h"
#include "engine/chat_template/filters.h"
#include "engine/chat_template/methods.h"
#include "engine/chat_template/operators.h"
#include "engine/chat_template/utf8.h"

namespace ferry::chat_template {
namespace {

// Evaluation recurses over the expression tree and the statements: this
// bounds the stack it takes (one level is a few KiB in a sanitizer build; a
// 2,000-deep attribute chain overflowed an 8 MiB stack there). Real
// templates stay under 30.
constexpr int kMaxEvalDepth = 400;

class MacroCallable : public Callable {
 public:
  MacroCallable(const Stmt* macro, const FramePtr& closure) : macro_(macro), closure_(closure) {}

  absl::StatusOr<Value> Call(Interpreter& interp, CallArgs args) override {
    // A macro may outlive the loop frame it was defined in; it then sees the
    // template's top-level variables.
    FramePtr closure = closure_.lock();
    return interp.CallMacro(*macro_, closure ? closure : interp.root(), std::move(args));
  }
  std::string Describe() const override { return absl::StrCat("<Macro '", macro_->text, "'>"); }

 private:
  const Stmt* macro_;
  std::weak_ptr<Frame> closure_;
};

absl::Status Undefined(std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(Sv(what), " is undefined"));
}

}  // namespace

const Value* Frame::Lookup(std::string_view name) const {
  for (const Frame* f = this; f != nullptr; f = f->parent_.get()) {
    auto it = f->vars_.find(Sv(name));
    if (it != f->vars_.end()) return &it->second;
  }
  return nullptr;
}

Interpreter::Interpreter(const RenderOptions& options, const Value& context)
    : options_(options), steps_left_(options.limits.max_steps) {
  globals_ = std::make_shared<Frame>(nullptr);
  if (context.is_dict()) {
    for (const auto& [k, v] : context.dict().entries()) {
      if (k.is_string()) globals_->Set(k.str(), v);
    }
  }
  root_ = std::make_shared<Frame>(globals_);
}

absl::Status Interpreter::Step(int64_t units) {
  steps_left_ -= units;
  if (steps_left_ < 0) {
    return absl::ResourceExhaustedError("template rendering exceeded its work budget");
  }
  return absl::OkStatus();
}

absl::Status Interpreter::ChargeString(size_t bytes) {
  if (bytes > options_.limits.max_string_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("template built a string of ", bytes, " bytes, over the limit"));
  }
  return Step(static_cast<int64_t>(bytes / 16));
}

absl::Status Interpreter::CheckListSize(size_t items) const {
  if (items > options_.limits.max_list_items) {
    return absl::ResourceExhaustedError(
        absl::StrCat("template built a list of ", items, " items, over the limit"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Interpreter::Render(const Body& body) {
  std::string out;
  FERRY_ASSIGN_OR_RETURN(Flow flow, ExecBody(body, root_, out));
  (void)flow;
  return out;
}

absl::Status Interpreter::Write(std::string& out, std::string_view text) {
  if (out.size() + text.size() > options_.limits.max_output_bytes) {
    return absl::ResourceExhaustedError("template output exceeds the size limit");
  }
  FERRY_RETURN_IF_ERROR(Step(static_cast<int64_t>(text.size() / 16)));
  out.append(text);
  return absl::OkStatus();
}

absl::StatusOr<std::string> Interpreter::RenderToString(const Body& body, const FramePtr& frame) {
  std::string out;
  FERRY_ASSIGN_OR_RETURN(Flow flow, ExecBody(body, frame, out));
  (void)flow;
  return out;
}

absl::StatusOr<Interpreter::Flow> Interpreter::ExecBody(const Body& body, const FramePtr& frame,
                                                        std::string& out) {
  for (const StmtPtr& s : body) {
    FERRY_ASSIGN_OR_RETURN(Flow flow, Exec(*s, frame, out));
    if (flow != Flow::kNormal) return flow;
  }
  return Flow::kNormal;
}

absl::StatusOr<Interpreter::Flow> Interpreter::Exec(const Stmt& s, const FramePtr& frame,
                                                    std::string& out) {
  FERRY_RETURN_IF_ERROR(Step());
  if (++eval_depth_ > kMaxEvalDepth) {
    --eval_depth_;
    return absl::ResourceExhaustedError("template nesting too deep");
  }
  struct Guard {
    int& d;
    ~Guard() { --d; }
  } guard{eval_depth_};
  switch (s.kind) {
    case Stmt::Kind::kText:
      FERRY_RETURN_IF_ERROR(Write(out, s.text));
      return Flow::kNormal;
    case Stmt::Kind::kOutput: {
      FERRY_ASSIGN_OR_RETURN(Value v, Eval(*s.expr, frame));
      FERRY_RETURN_IF_ERROR(Write(out, v.ToString()));
      return Flow::kNormal;
    }
    case Stmt::Kind::kIf:
      for (size_t i = 0; i < s.bodies.size(); ++i) {
        if (i < s.conditions.size()) {
          FERRY_ASSIGN_OR_RETURN(Value c, Eval(*s.conditions[i], frame));
          if (!c.Truthy()) continue;
        }
        return ExecBody(s.bodies[i], frame, out);
      }
      return Flow::kNormal;
    case Stmt::Kind::kFor:
      return ExecFor(s, frame, out);
    case Stmt::Kind::kSet:
      FERRY_RETURN_IF_ERROR(ExecSet(s, frame));
      return Flow::kNormal;
    case Stmt::Kind::kSetBlock: {
      FERRY_ASSIGN_OR_RETURN(std::string text, RenderToString(s.bodies[0], frame));
      Value v = Value::String(std::move(text));
      if (s.filter) {
        FERRY_ASSIGN_OR_RETURN(v, ApplyFilterChain(*s.filter, std::move(v), frame));
      }
      frame->Set(s.targets[0], std::move(v));
      return Flow::kNormal;
    }
    case Stmt::Kind::kMacro:
      frame->Set(s.text, Value::Function(std::make_shared<MacroCallable>(&s, frame)));
      return Flow::kNormal;
    case Stmt::Kind::kCallBlock: {
      // The block's body is the called macro's `caller`.
      const Expr& call = *s.expr;
      FERRY_ASSIGN_OR_RETURN(Value fn, Eval(*call.args[0], frame));
      FERRY_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(call, 1, frame));
      args.keyword.emplace_back("caller",
                                Value::Function(std::make_shared<MacroCallable>(&s, frame)));
      FERRY_ASSIGN_OR_RETURN(Value v, Call(fn, std::move(args)));
      FERRY_RETURN_IF_ERROR(Write(out, v.ToString()));
      return Flow::kNormal;
    }
    case Stmt::Kind::kFilterBlock: {
      FERRY_ASSIGN_OR_RETURN(std::string text, RenderToString(s.bodies[0], frame));
      FERRY_ASSIGN_OR_RETURN(Value v,
                             ApplyFilterChain(*s.filter, Value::String(std::move(text)), frame));
      FERRY_RETURN_IF_ERROR(Write(out, v.ToString()));
      return Flow::kNormal;
    }
    case Stmt::Kind::kWith: {
      auto inner = std::make_shared<Frame>(frame);
      for (size_t i = 0; i < s.targets.size(); ++i) {
        FERRY_ASSIGN_OR_RETURN(Value v, Eval(*s.conditions[i], frame));
        inner->Set(s.targets[i], std::move(v));
      }
      return ExecBody(s.bodies[0], inner, out);
    }
    case Stmt::Kind::kBreak:
      return Flow::kBreak;
    case Stmt::Kind::kContinue:
      return Flow::kContinue;
  }
  return Flow::kNormal;
}

absl::Status Interpreter::Assign(const std::vector<std::string>& targets, Value v, Frame& frame) {
  if (targets.size() == 1) {
    frame.Set(targets[0], std::move(v));
    return absl::OkStatus();
  }
  FERRY_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  if (items.size() != targets.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        items.size() < targets.size() ? "not enough" : "too many", " values to unpack (expected ",
        targets.size(), ", got ", items.size(), ")"));
  }
  for (size_t i = 0; i < targets.size(); ++i) frame.Set(targets[i], std::move(items[i]));
  return absl::OkStatus();
}

absl::Status Interpreter::ExecSet(const Stmt& s, const FramePtr& frame) {
  FERRY_ASSIGN_OR_RETURN(Value v, Eval(*s.expr, frame));
  if (s.attr.empty()) return Assign(s.targets, std::move(v), *frame);
  const Value* ns = frame->Lookup(s.targets[0]);
  if (ns == nullptr || !ns->is_namespace()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot assign attribute on non-namespace object '", s.targets[0], "'"));
  }
  ns->dict().SetStr(s.attr, std::move(v));
  return absl::OkStatus();
}

namespace {

// jinja2's `loop` object for iteration i.
Value MakeLoop(const std::vector<Value>& items, size_t i) {
  auto d = std::make_shared<DictData>();
  const int64_t n = static_cast<int64_t>(items.size());
  const int64_t idx = static_cast<int64_t>(i);
  d->SetStr("index", Value::Int(idx + 1));
  d->SetStr("index0", Value::Int(idx));
  d->SetStr("revindex", Value::Int(n - idx));
  d->SetStr("revindex0", Value::Int(n - idx - 1));
  d->SetStr("first", Value::Bool(idx == 0));
  d->SetStr("last", Value::Bool(idx == n - 1));
  d->SetStr("length", Value::Int(n));
  d->SetStr("depth", Value::Int(1));
  d->SetStr("depth0", Value::Int(0));
  if (i > 0) d->SetStr("previtem", items[i - 1]);
  if (i + 1 < items.size()) d->SetStr("nextitem", items[i + 1]);
  d->SetStr("cycle", Value::Function(MakeBuiltin(
                         "loop.cycle", [idx](Interpreter&, CallArgs args) -> absl::StatusOr<Value> {
                           if (args.positional.empty()) {
                             return absl::InvalidArgumentError("no items for cycling given");
                           }
                           return args.positional[idx % args.positional.size()];
                         })));
  return Value::Namespace(std::move(d));
}

}  // namespace

absl::StatusOr<Interpreter::Flow> Interpreter::ExecFor(const Stmt& s, const FramePtr& frame,
                                                       std::string& out) {
  FERRY_ASSIGN_OR_RETURN(Value iterable, Eval(*s.expr, frame));
  FERRY_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(iterable));
  if (s.cond) {
    std::vector<Value> kept;
    for (Value& item : items) {
      auto scope = std::make_shared<Frame>(frame);
      FERRY_RETURN_IF_ERROR(Assign(s.targets, item, *scope));
      FERRY_ASSIGN_OR_RETURN(Value c, Eval(*s.cond, scope));
      if (c.Truthy()) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  for (size_t i = 0; i < items.size(); ++i) {
    FERRY_RETURN_IF_ERROR(Step());
    auto scope = std::make_shared<Frame>(frame);
    FERRY_RETURN_IF_ERROR(Assign(s.targets, items[i], *scope));
    scope->Set("loop", MakeLoop(items, i));
    FERRY_ASSIGN_OR_RETURN(Flow flow, ExecBody(s.bodies[0], scope, out));
    if (flow == Flow::kBreak) break;
  }
  if (items.empty() && s.bodies.size() > 1) {
    auto scope = std::make_shared<Frame>(frame);
    FERRY_ASSIGN_OR_RETURN(Flow flow, ExecBody(s.bodies[1], scope, out));
    (void)flow;
  }
  return Flow::kNormal;
}

absl::StatusOr<Value> Interpreter::CallMacro(const Stmt& macro, const FramePtr& closure,
                                             CallArgs args) {
  if (call_depth_ >= options_.limits.max_call_depth) {
    return absl::ResourceExhaustedError(
        absl::StrCat("macro '", macro.text, "' nested deeper than ", call_depth_, " calls"));
  }
  // jinja2's Macro.__call__: positional arguments first, then keywords for
  // the parameters still unbound, then defaults; what is left over goes to
  // varargs / kwargs where the body reads them, and is an error otherwise.
  const size_t n = macro.targets.size();
  auto scope = std::make_shared<Frame>(closure);
  std::vector<Value> extra_positional;
  for (size_t i = 0; i < args.positional.size(); ++i) {
    if (i < n) {
      scope->Set(macro.targets[i], std::move(args.positional[i]));
    } else {
      extra_positional.push_back(std::move(args.positional[i]));
    }
  }
  std::vector<std::pair<std::string, Value>> extra_keywords;
  std::vector<bool> bound(n, false);
  for (size_t i = 0; i < std::min(n, args.positional.size()); ++i) bound[i] = true;
  for (auto& [key, v] : args.keyword) {
    size_t i = 0;
    while (i < n && macro.targets[i] != key) ++i;
    if (i < n && !bound[i]) {
      scope->Set(key, std::move(v));
      bound[i] = true;
    } else {
      extra_keywords.emplace_back(key, std::move(v));
    }
  }
  for (size_t i = 0; i < n; ++i) {
    if (bound[i]) continue;
    Value v;
    if (macro.conditions[i]) {
      FERRY_ASSIGN_OR_RETURN(v, Eval(*macro.conditions[i], scope));
    }
    scope->Set(macro.targets[i], std::move(v));
  }
  if (macro.takes_caller) {
    Value caller;  // undefined when none is given
    for (auto it = extra_keywords.begin(); it != extra_keywords.end(); ++it) {
      if (it->first == "caller") {
        caller = std::move(it->second);
        extra_keywords.erase(it);
        break;
      }
    }
    scope->Set("caller", std::move(caller));
  }
  if (macro.catch_kwargs) {
    auto kwargs = std::make_shared<DictData>();
    for (auto& [key, v] : extra_keywords) kwargs->SetStr(key, std::move(v));
    scope->Set("kwargs", Value::Dict(std::move(kwargs)));
  } else if (!extra_keywords.empty()) {
    for (const auto& kw : extra_keywords) {
      if (kw.first == "caller") {
        return absl::InvalidArgumentError(
            absl::StrCat("macro '", macro.text,
                         "' was invoked with two values for the special caller argument. This is "
                         "most likely a bug."));
      }
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "macro '", macro.text, "' takes no keyword argument '", extra_keywords.front().first, "'"));
  }
  if (macro.catch_varargs) {
    scope->Set("varargs", Value::Tuple(std::move(extra_positional)));
  } else if (!extra_positional.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("macro '", macro.text, "' takes not more than ", n, " argument(s)"));
  }
  ++call_depth_;
  absl::StatusOr<std::string> text = RenderToString(macro.bodies[0], scope);
  --call_depth_;
  if (!text.ok()) return text.status();
  return Value::String(std::move(*text));
}

absl::StatusOr<Value> Interpreter::Call(const Value& fn, CallArgs args) {
  if (!fn.is_callable()) {
    if (fn.is_undefined()) return Undefined("called value");
    return absl::InvalidArgumentError(absl::StrCat("'", fn.TypeName(), "' object is not callable"));
  }
  FERRY_RETURN_IF_ERROR(Step());
  return fn.callable().Call(*this, std::move(args));
}

absl::StatusOr<Value> Interpreter::GetAttr(const Value& obj, std::string_view name) {
  switch (obj.kind()) {
    case Value::Kind::kUndefined:
      return absl::InvalidArgumentError(
          absl::StrCat("undefined value has no attribute '", Sv(name), "'"));
    case Value::Kind::kNamespace: {
      const Value* v = obj.dict().FindStr(name);
      return v ? *v : Value();
    }
    case Value::Kind::kDict: {
      if (HasMethod(obj, name)) return BindMethod(obj, name);
      const Value* v = obj.dict().FindStr(name);
      return v ? *v : Value();
    }
    case Value::Kind::kString:
    case Value::Kind::kList:
      if (HasMethod(obj, name)) return BindMethod(obj, name);
      return Value();
    default:
      return Value();
  }
}

absl::StatusOr<Value> Interpreter::GetItem(const Value& obj, const Value& key) {
  switch (obj.kind()) {
    case Value::Kind::kUndefined:
      return absl::InvalidArgumentError(
          absl::StrCat("undefined value has no item ", key.Repr()));
    case Value::Kind::kDict: {
      const Value* v = obj.dict().Find(key);
      if (v) return *v;
      break;
    }
    case Value::Kind::kList: {
      if (obj.is_generator()) return Value();  // generators are not subscriptable
      if (!key.is_int() && !key.is_bool()) break;
      const auto& items = obj.list().items;
      int64_t i = key.as_int();
      if (i < 0) i += static_cast<int64_t>(items.size());
      if (i < 0 || i >= static_cast<int64_t>(items.size())) return Value();
      return items[i];
    }
    case Value::Kind::kString: {
      if (!key.is_int() && !key.is_bool()) break;
      std::vector<size_t> offsets = CodePointOffsets(obj.str());
      int64_t n = static_cast<int64_t>(offsets.size()) - 1;
      int64_t i = key.as_int();
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value();
      return Value::String(obj.str().substr(offsets[i], offsets[i + 1] - offsets[i]));
    }
    default:
      break;
  }
  if (key.is_string()) return GetAttr(obj, key.str());
  return Value();
}

absl::StatusOr<Value> Interpreter::GetAttrPath(const Value& obj, std::string_view path) {
  Value cur = obj;
  size_t start = 0;
  while (start <= path.size()) {
    size_t dot = path.find('.', start);
    if (dot == std::string_view::npos) dot = path.size();
    std::string_view part = path.substr(start, dot - start);
    bool numeric = !part.empty();
    for (char c : part) numeric = numeric && c >= '0' && c <= '9';
    if (numeric) {
      FERRY_ASSIGN_OR_RETURN(cur, GetItem(cur, Value::Int(std::atoll(std::string(part).c_str()))));
    } else {
      FERRY_ASSIGN_OR_RETURN(cur, GetItem(cur, Value::String(std::string(part))));
    }
    start = dot + 1;
  }
  return cur;
}

absl::StatusOr<std::vector<Value>> Interpreter::Iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return std::vector<Value>();
    case Value::Kind::kList:
      return v.list().items;
    case Value::Kind::kDict: {
      std::vector<Value> keys;
      keys.reserve(v.dict().size());
      for (const auto& [k, e] : v.dict().entries()) keys.push_back(k);
      return keys;
    }
    case Value::Kind::kString: {
      std::vector<Value> chars;
      const std::string& s = v.str();
      size_t i = 0;
      while (i < s.size()) {
        size_t start = i;
        DecodeUtf8(s, i);
        chars.push_back(Value::String(s.substr(start, i - start)));
      }
      return chars;
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("'", v.TypeName(), "' object is not iterable"));
  }
}

absl::StatusOr<CallArgs> Interpreter::EvalArgs(const Expr& e, size_t first,
                                               const FramePtr& frame) {
  CallArgs args;
  for (size_t i = first; i < e.args.size(); ++i) {
    FERRY_ASSIGN_OR_RETURN(Value v, Eval(*e.args[i], frame));
    args.positional.push_back(std::move(v));
  }
  for (const auto& [k, x] : e.kwargs) {
    FERRY_ASSIGN_OR_RETURN(Value v, Eval(*x, frame));
    if (k == "*") {  // f(*iterable)
      FERRY_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
      for (Value& item : items) args.positional.push_back(std::move(item));
    } else if (k == "**") {  // f(**mapping)
      if (!v.is_dict()) {
        return absl::InvalidArgumentError(
            absl::StrCat("argument after ** must be a mapping, not ", v.TypeName()));
      }
      for (const auto& [key, value] : v.dict().entries()) {
        if (!key.is_string()) return absl::InvalidArgumentError("keywords must be strings");
        args.keyword.emplace_back(key.str(), value);
      }
    } else {
      args.keyword.emplace_back(k, std::move(v));
    }
  }
  return args;
}

absl::StatusOr<Value> Interpreter::ApplyFilterChain(const Expr& chain, Value input,
                                                    const FramePtr& frame) {
  const Value* saved = block_input_;
  block_input_ = &input;
  absl::StatusOr<Value> v = Eval(chain, frame);
  block_input_ = saved;
  return v;
}

absl::StatusOr<Value> Interpreter::EvalName(const Expr& e, const FramePtr& frame) {
  if (const Value* v = frame->Lookup(e.name)) return *v;
  return LookupBuiltin(e.name);
}

absl::StatusOr<Value> Interpreter::Eval(const Expr& e, const FramePtr& frame) {
  FERRY_RETURN_IF_ERROR(Step());
  if (++eval_depth_ > kMaxEvalDepth) {
    --eval_depth_;
    return absl::ResourceExhaustedError("template nesting too deep");
  }
  struct Guard {
    int& d;
    ~Guard() { --d; }
  } guard{eval_depth_};
  switch (e.kind) {
    case Expr::Kind::kLiteral:
      return e.literal;
    case Expr::Kind::kName:
      return EvalName(e, frame);
    case Expr::Kind::kGetAttr: {
      FERRY_ASSIGN_OR_RETURN(Value obj, Eval(*e.args[0], frame));
      return GetAttr(obj, e.name);
    }
    case Expr::Kind::kGetItem: {
      FERRY_ASSIGN_OR_RETURN(Value obj, Eval(*e.args[0], frame));
      FERRY_ASSIGN_OR_RETURN(Value key, Eval(*e.args[1], frame));
      return GetItem(obj, key);
    }
    case Expr::Kind::kSlice:
      return EvalSlice(e, frame);
    case Expr::Kind::kCall: {
      FERRY_ASSIGN_OR_RETURN(Value fn, Eval(*e.args[0], frame));
      FERRY_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1, frame));
      return Call(fn, std::move(args));
    }
    case Expr::Kind::kFilter: {
      Value input;
      if (e.args[0]) {
        FERRY_ASSIGN_OR_RETURN(input, Eval(*e.args[0], frame));
      } else if (block_input_ != nullptr) {
        input = *block_input_;
      }
      FERRY_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1, frame));
      return ApplyFilter(*this, e.name, std::move(input), std::move(args));
    }
    case Expr::Kind::kTest: {
      FERRY_ASSIGN_OR_RETURN(Value input, Eval(*e.args[0], frame));
      FERRY_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1, frame));
      FERRY_ASSIGN_OR_RETURN(bool r, ApplyTest(*this, e.name, input, std::move(args)));
      return Value::Bool(r != e.negated);
    }
    case Expr::Kind::kUnary: {
      FERRY_ASSIGN_OR_RETURN(Value v, Eval(*e.args[0], frame));
      if (e.name == "not") return Value::Bool(!v.Truthy());
      if (v.is_int() || v.is_bool()) {
        if (e.name == "+") return Value::Int(v.as_int());
        if (v.as_int() == INT64_MIN) return absl::InvalidArgumentError("integer overflow");
        return Value::Int(-v.as_int());
      }
      if (v.is_float()) return Value::Float(e.name == "-" ? -v.as_float() : v.as_float());
      return absl::InvalidArgumentError(
          absl::StrCat("bad operand type for unary ", e.name, ": '", v.TypeName(), "'"));
    }
    case Expr::Kind::kBinary:
      return EvalBinary(e, frame);
    case Expr::Kind::kCompare:
      return EvalCompare(e, frame);
    case Expr::Kind::kCond: {
      FERRY_ASSIGN_OR_RETURN(Value c, Eval(*e.args[1], frame));
      if (c.Truthy()) return Eval(*e.args[0], frame);
      if (e.args[2]) return Eval(*e.args[2], frame);
      return Value();
    }
    case Expr::Kind::kList:
    case Expr::Kind::kTuple: {
      std::vector<Value> items;
      for (const ExprPtr& x : e.args) {
        FERRY_ASSIGN_OR_RETURN(Value v, Eval(*x, frame));
        items.push_back(std::move(v));
      }
      return e.kind == Expr::Kind::kList ? Value::List(std::move(items))
                                         : Value::Tuple(std::move(items));
    }
    case Expr::Kind::kDict: {
      Value d = Value::Dict();
      for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
        FERRY_ASSIGN_OR_RETURN(Value k, Eval(*e.args[i], frame));
        FERRY_ASSIGN_OR_RETURN(Value v, Eval(*e.args[i + 1], frame));
        FERRY_RETURN_IF_ERROR(d.dict().Set(std::move(k), std::move(v)));
      }
      return d;
    }
  }
  return Value();
}

absl::StatusOr<Value> Interpreter::EvalBinary(const Expr& e, const FramePtr& frame) {
  FERRY_ASSIGN_OR_RETURN(Value a, Eval(*e.args[0], frame));
  if (e.name == "and") {
    if (!a.Truthy()) return a;
    return Eval(*e.args[1], frame);
  }
  if (e.name == "or") {
    if (a.Truthy()) return a;
    return Eval(*e.args[1], frame);
  }
  FERRY_ASSIGN_OR_RETURN(Value b, Eval(*e.args[1], frame));
  if (e.name == "~") {
    std::string s = a.ToString() + b.ToString();
    FERRY_RETURN_IF_ERROR(ChargeString(s.size()));
    return Value::String(std::move(s));
  }
  return BinaryOp(*this, e.name, a, b);
}

absl::StatusOr<Value> Interpreter::EvalCompare(const Expr& e, const FramePtr& frame) {
  FERRY_ASSIGN_OR_RETURN(Value left, Eval(*e.args[0], frame));
  for (size_t i = 0; i < e.ops.size(); ++i) {
    FERRY_ASSIGN_OR_RETURN(Value right, Eval(*e.args[i + 1], frame));
    const std::string& op = e.ops[i];
    bool r;
    if (op == "==") {
      r = ValuesEqual(left, right);
    } else if (op == "!=") {
      r = !ValuesEqual(left, right);
    } else if (op == "in" || op == "notin") {
      FERRY_ASSIGN_OR_RETURN(bool c, Contains(right, left));
      r = (op == "in") == c;
    } else {
      if (left.is_undefined() || right.is_undefined()) return Undefined("compared value");
      FERRY_ASSIGN_OR_RETURN(int c, CompareValues(left, right));
      r = op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0;
    }
    if (!r) return Value::Bool(false);
    left = std::move(right);
  }
  return Value::Bool(true);
}

absl::StatusOr<Value> Interpreter::EvalSlice(const Expr& e, const FramePtr& frame) {
  FERRY_ASSIGN_OR_RETURN(Value obj, Eval(*e.args[0], frame));
  std::optional<int64_t> parts[3];
  for (int i = 0; i < 3; ++i) {
    if (!e.args[i + 1]) continue;
    FERRY_ASSIGN_OR_RETURN(Value v, Eval(*e.args[i + 1], frame));
    if (v.is_none()) continue;
    if (!v.is_int() && !v.is_bool()) return Value();  // Python TypeError; jinja2 gives undefined
    parts[i] = v.as_int();
  }
  if (obj.is_undefined()) return Undefined("sliced value");
  if (!obj.is_string() && (!obj.is_list() || obj.is_generator())) return Value();
  if (parts[2] && *parts[2] == 0) {
    return absl::InvalidArgumentError("slice step cannot be zero");
  }
  return SliceValue(obj, parts[0], parts[1], parts[2]);
}

}  // namespace ferry::chat_template
