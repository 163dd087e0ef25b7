// The syntax tree of a parsed template. Nodes are plain structs owned by
// their parent; the interpreter walks them without changing them.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/chat_template/value.h"

namespace ferry::chat_template {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,  // literal
    kName,     // name
    kGetAttr,  // args[0].name
    kGetItem,  // args[0][args[1]]
    kSlice,    // args[0][args[1]:args[2]:args[3]], missing parts are null
    kCall,     // args[0](args[1:], kwargs)
    kFilter,   // args[0]|name(args[1:], kwargs); args[0] null inside {% filter %}
    kTest,     // args[0] is [not] name(args[1:], kwargs)
    kUnary,    // name in {"-", "+", "not"}
    kBinary,   // name in {"+", "-", "*", "/", "//", "%", "**", "~", "and", "or"}
    kCompare,  // args[0] ops[0] args[1] ops[1] args[2] ...
    kCond,     // args[0] if args[1] else args[2] (args[2] may be null)
    kList,
    kTuple,
    kDict,  // args alternate key, value
  };

  Expr(Kind k, int l) : kind(k), line(l) {}
  // Frees the subtree without recursion: a postfix or filter chain
  // (a.b.b.b...) can be thousands of nodes deep, and recursive destruction
  // would overflow the stack.
  ~Expr();
  Expr(const Expr&) = delete;
  Expr& operator=(const Expr&) = delete;

  Kind kind;
  int line;
  Value literal;
  std::string name;
  bool negated = false;  // "is not"
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
};

inline Expr::~Expr() {
  std::vector<ExprPtr> pending;
  auto take = [&pending](Expr& e) {
    for (ExprPtr& a : e.args) {
      if (a != nullptr) pending.push_back(std::move(a));
    }
    for (auto& kw : e.kwargs) {
      if (kw.second != nullptr) pending.push_back(std::move(kw.second));
    }
  };
  take(*this);
  while (!pending.empty()) {
    ExprPtr e = std::move(pending.back());
    pending.pop_back();
    take(*e);
  }  // each node dies with no children left
}

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  enum class Kind {
    kText,         // text
    kOutput,       // {{ expr }}
    kIf,           // conditions[i] -> bodies[i]; bodies.back() is else when longer
    kFor,          // for targets in expr [if cond]: bodies[0], else bodies[1]
    kSet,          // targets = expr, or targets[0].attr = expr
    kSetBlock,     // targets[0] = rendered bodies[0], piped through filter
    kMacro,        // name(targets = defaults): bodies[0]
    kCallBlock,    // {% call(targets = defaults) expr %}: expr (a kCall) gets caller=bodies[0] as a
                   // macro
    kFilterBlock,  // bodies[0] piped through filter
    kWith,         // targets = conditions: bodies[0]
    kBreak,
    kContinue,
  };

  Stmt(Kind k, int l) : kind(k), line(l) {}

  Kind kind;
  int line;
  std::string text;  // kText, macro name
  std::string attr;  // kSet on a namespace attribute
  ExprPtr expr;
  ExprPtr cond;    // for-loop filter
  ExprPtr filter;  // kSetBlock / kFilterBlock: a filter chain whose innermost input is null
  std::vector<std::string> targets;
  std::vector<ExprPtr> conditions;  // if conditions, macro defaults (null = none), with values
  std::vector<Body> bodies;
  // kMacro / kCallBlock: what the body refers to. A macro takes extra
  // positional arguments only when it reads `varargs`, extra keywords when
  // it reads `kwargs`, and a caller when it reads `caller` (as jinja2).
  bool catch_varargs = false;
  bool catch_kwargs = false;
  bool takes_caller = false;
};

}  // namespace ferry::chat_template
