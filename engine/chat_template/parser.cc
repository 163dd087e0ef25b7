#include "engine/chat_template/parser.h"

#include <charconv>
#include <cstdlib>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "engine/chat_template/filters.h"
#include "engine/chat_template/lexer.h"

namespace ferry::chat_template {
namespace {

// Deeper nesting than this is only seen in hostile input; refusing it keeps
// the recursive descent (and later the evaluator) off the end of the stack.
constexpr int kMaxNesting = 200;

// Whether `body` reads the variable `name` anywhere (nested blocks and
// macros included), as jinja2 decides a macro's varargs, kwargs and caller.
bool ReadsName(const Body& body, std::string_view name) {
  std::vector<const Expr*> exprs;
  std::vector<const Body*> bodies = {&body};
  while (!bodies.empty()) {
    const Body* b = bodies.back();
    bodies.pop_back();
    for (const StmtPtr& s : *b) {
      exprs.push_back(s->expr.get());
      exprs.push_back(s->cond.get());
      exprs.push_back(s->filter.get());
      for (const ExprPtr& c : s->conditions) exprs.push_back(c.get());
      for (const Body& inner : s->bodies) bodies.push_back(&inner);
    }
  }
  while (!exprs.empty()) {  // no recursion: chains are deep
    const Expr* e = exprs.back();
    exprs.pop_back();
    if (e == nullptr) continue;
    if (e->kind == Expr::Kind::kName && e->name == name) return true;
    for (const ExprPtr& a : e->args) exprs.push_back(a.get());
    for (const auto& kw : e->kwargs) exprs.push_back(kw.second.get());
  }
  return false;
}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  absl::StatusOr<Body> ParseAll() {
    Body body;
    FERRY_RETURN_IF_ERROR(Subparse({}, body));
    if (Cur().type != TokenType::kEof) return Error("unexpected end tag");
    return body;
  }

 private:
  using EndSet = std::vector<std::string_view>;

  const Token& Cur() const { return tokens_[pos_]; }
  const Token& Peek(size_t n = 1) const {
    return tokens_[std::min(pos_ + n, tokens_.size() - 1)];
  }
  void Next() {
    if (pos_ + 1 < tokens_.size()) ++pos_;
  }
  bool IsOp(std::string_view op) const {
    return Cur().type == TokenType::kOperator && Cur().value == op;
  }
  bool IsName(std::string_view n) const {
    return Cur().type == TokenType::kName && Cur().value == n;
  }
  bool SkipOp(std::string_view op) {
    if (!IsOp(op)) return false;
    Next();
    return true;
  }
  bool SkipName(std::string_view n) {
    if (!IsName(n)) return false;
    Next();
    return true;
  }
  absl::Status Error(std::string_view msg) const {
    return absl::InvalidArgumentError(absl::StrCat("line ", Cur().line, ": ", Sv(msg)));
  }
  absl::Status Expect(std::string_view op) {
    if (SkipOp(op)) return absl::OkStatus();
    return Error(absl::StrCat("expected '", Sv(op), "', got '", Describe(Cur()), "'"));
  }
  absl::Status ExpectBlockEnd() {
    if (Cur().type == TokenType::kBlockEnd) {
      Next();
      return absl::OkStatus();
    }
    return Error(absl::StrCat("expected end of statement block, got '", Describe(Cur()), "'"));
  }
  absl::StatusOr<std::string> ExpectName() {
    if (Cur().type != TokenType::kName) {
      return Error(absl::StrCat("expected a name, got '", Describe(Cur()), "'"));
    }
    std::string n = Cur().value;
    Next();
    return n;
  }
  static std::string Describe(const Token& t) {
    switch (t.type) {
      case TokenType::kEof:
        return "end of template";
      case TokenType::kBlockEnd:
        return "end of statement block";
      case TokenType::kVarEnd:
        return "end of print statement";
      case TokenType::kData:
        return "template data";
      default:
        return t.value;
    }
  }

  // ------------------------------------------------------------ statements

  // Parses statements until a block tag whose name is in `end` (left unread,
  // positioned on that name) or the end of the template.
  absl::Status Subparse(const EndSet& end, Body& body) {
    if (++depth_ > kMaxNesting) return Error("blocks nested too deeply");
    while (Cur().type != TokenType::kEof) {
      const Token& t = Cur();
      if (t.type == TokenType::kData) {
        auto s = std::make_unique<Stmt>(Stmt::Kind::kText, t.line);
        s->text = t.value;
        body.push_back(std::move(s));
        Next();
      } else if (t.type == TokenType::kVarBegin) {
        Next();
        auto s = std::make_unique<Stmt>(Stmt::Kind::kOutput, t.line);
        FERRY_ASSIGN_OR_RETURN(s->expr, ParseTuple(true, false));
        if (Cur().type != TokenType::kVarEnd) {
          return Error(absl::StrCat("expected end of print statement, got '", Describe(Cur()), "'"));
        }
        Next();
        body.push_back(std::move(s));
      } else if (t.type == TokenType::kBlockBegin) {
        Next();
        if (Cur().type != TokenType::kName) return Error("tag name expected");
        for (std::string_view e : end) {
          if (Cur().value == e) {
            --depth_;
            return absl::OkStatus();
          }
        }
        FERRY_RETURN_IF_ERROR(ParseStatement(body));
      } else {
        return Error(absl::StrCat("unexpected '", Describe(t), "'"));
      }
    }
    if (!end.empty()) {
      return Error(absl::StrCat("unexpected end of template, expected '", Sv(end[0]), "'"));
    }
    --depth_;
    return absl::OkStatus();
  }

  absl::Status ParseStatement(Body& body) {
    const std::string tag = Cur().value;
    const int line = Cur().line;
    Next();
    if (tag == "if") return ParseIf(line, body);
    if (tag == "for") return ParseFor(line, body);
    if (tag == "set") return ParseSet(line, body);
    if (tag == "macro") return ParseMacro(line, body);
    if (tag == "call") return ParseCallBlock(line, body);
    if (tag == "filter") return ParseFilterBlock(line, body);
    if (tag == "with") return ParseWith(line, body);
    if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) return Error(absl::StrCat("'", tag, "' outside of a loop"));
      body.push_back(std::make_unique<Stmt>(
          tag == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue, line));
      return ExpectBlockEnd();
    }
    return absl::InvalidArgumentError(
        absl::StrCat("line ", line, ": Encountered unknown tag '", tag, "'."));
  }

  absl::Status ParseIf(int line, Body& body) {
    auto s = std::make_unique<Stmt>(Stmt::Kind::kIf, line);
    while (true) {
      FERRY_ASSIGN_OR_RETURN(ExprPtr cond, ParseTuple(false, false));
      FERRY_RETURN_IF_ERROR(ExpectBlockEnd());
      s->conditions.push_back(std::move(cond));
      s->bodies.emplace_back();
      FERRY_RETURN_IF_ERROR(Subparse({"elif", "else", "endif"}, s->bodies.back()));
      std::string tag = Cur().value;
      Next();
      if (tag == "elif") continue;
      if (tag == "else") {
        FERRY_RETURN_IF_ERROR(ExpectBlockEnd());
        s->bodies.emplace_back();
        FERRY_RETURN_IF_ERROR(Subparse({"endif"}, s->bodies.back()));
        Next();
      }
      break;
    }
    body.push_back(std::move(s));
    return ExpectBlockEnd();
  }

  absl::Status ParseTargets(std::vector<std::string>& targets) {
    bool paren = SkipOp("(");
    do {
      if (paren && IsOp(")")) break;
      FERRY_ASSIGN_OR_RETURN(std::string n, ExpectName());
      targets.push_back(std::move(n));
    } while (SkipOp(","));
    if (paren) FERRY_RETURN_IF_ERROR(Expect(")"));
    return absl::OkStatus();
  }

  absl::Status ParseFor(int line, Body& body) {
    auto s = std::make_unique<Stmt>(Stmt::Kind::kFor, line);
    FERRY_RETURN_IF_ERROR(ParseTargets(s->targets));
    if (!SkipName("in")) return Error("expected 'in' in for loop");
    FERRY_ASSIGN_OR_RETURN(s->expr, ParseTuple(false, false));
    if (SkipName("if")) {
      FERRY_ASSIGN_OR_RETURN(s->cond, ParseExpression(true));
    }
    if (SkipName("recursive")) return Error("recursive loops are not supported");
    FERRY_RETURN_IF_ERROR(ExpectBlockEnd());
    s->bodies.resize(1);
    ++loop_depth_;
    FERRY_RETURN_IF_ERROR(Subparse({"endfor", "else"}, s->bodies[0]));
    --loop_depth_;
    if (Cur().value == "else") {
      Next();
      FERRY_RETURN_IF_ERROR(ExpectBlockEnd());
      s->bodies.emplace_back();
      FERRY_RETURN_IF_ERROR(Subparse({"endfor"}, s->bodies[1]));
    }
    Next();
    body.push_back(std::move(s));
    return ExpectBlockEnd();
  }

  absl::Status ParseSet(int line, Body& body) {
    auto s = std::make_unique<Stmt>(Stmt::Kind::kSet, line);
    FERRY_ASSIGN_OR_RETURN(std::string first, ExpectName());
    s->targets.push_back(first);
    if (SkipOp(".")) {
      FERRY_ASSIGN_OR_RETURN(s->attr, ExpectName());
    } else {
      while (SkipOp(",")) {
        FERRY_ASSIGN_OR_RETURN(std::string n, ExpectName());
        s->targets.push_back(std::move(n));
      }
    }
    if (SkipOp("=")) {
      FERRY_ASSIGN_OR_RETURN(s->expr, ParseTuple(true, false));
      body.push_back(std::move(s));
      return ExpectBlockEnd();
    }
    if (s->targets.size() != 1 || !s->attr.empty()) return Error("expected '='");
    s->kind = Stmt::Kind::kSetBlock;
    if (IsOp("|")) {
      FERRY_ASSIGN_OR_RETURN(s->filter, ParseFilterChain(nullptr));
    }
    FERRY_RETURN_IF_ERROR(ExpectBlockEnd());
    s->bodies.resize(1);
    FERRY_RETURN_IF_ERROR(Subparse({"endset"}, s->bodies[0]));
    Next();
    body.push_back(std::move(s));
    return ExpectBlockEnd();
  }

  // A macro's parameters, "(name, name = default, ...)", into s->targets
  // and s->conditions.
  absl::Status ParseParameters(Stmt& s) {
    FERRY_RETURN_IF_ERROR(Expect("("));
    while (!IsOp(")")) {
      if (!s.targets.empty()) FERRY_RETURN_IF_ERROR(Expect(","));
      FERRY_ASSIGN_OR_RETURN(std::string n, ExpectName());
      s.targets.push_back(std::move(n));
      if (SkipOp("=")) {
        FERRY_ASSIGN_OR_RETURN(ExprPtr d, ParseExpression(true));
        s.conditions.push_back(std::move(d));
      } else {
        bool after_default = false;
        for (const ExprPtr& d : s.conditions) after_default = after_default || d != nullptr;
        if (after_default) return Error("non-default argument follows default argument");
        s.conditions.push_back(nullptr);
      }
    }
    Next();
    return absl::OkStatus();
  }

  // A macro's (or call block's) body up to `end`, and what it refers to.
  absl::Status ParseMacroBody(Stmt& s, const char* end) {
    s.bodies.resize(1);
    int saved_loop_depth = loop_depth_;
    loop_depth_ = 0;
    FERRY_RETURN_IF_ERROR(Subparse({end}, s.bodies[0]));
    loop_depth_ = saved_loop_depth;
    Next();
    s.catch_varargs = ReadsName(s.bodies[0], "varargs");
    s.catch_kwargs = ReadsName(s.bodies[0], "kwargs");
    s.takes_caller = ReadsName(s.bodies[0], "caller");
    return absl::OkStatus();
  }

  absl::Status ParseMacro(int line, Body& body) {
    auto s = std::make_unique<Stmt>(Stmt::Kind::kMacro, line);
    FERRY_ASSIGN_OR_RETURN(s->text, ExpectName());
    FERRY_RETURN_IF_ERROR(ParseParameters(*s));
    FERRY_RETURN_IF_ERROR(ExpectBlockEnd());
    FERRY_RETURN_IF_ERROR(ParseMacroBody(*s, "endmacro"));
    body.push_back(std::move(s));
    return ExpectBlockEnd();
  }

  // {% call [(params)] macro(args) %}body{% endcall %}: the body is the
  // macro `caller` that the called macro may call.
  absl::Status ParseCallBlock(int line, Body& body) {
    auto s = std::make_unique<Stmt>(Stmt::Kind::kCallBlock, line);
    s->text = "caller";
    if (IsOp("(")) FERRY_RETURN_IF_ERROR(ParseParameters(*s));
    FERRY_ASSIGN_OR_RETURN(s->expr, ParseExpression(true));
    if (s->expr->kind != Expr::Kind::kCall) return Error("expected call");
    FERRY_RETURN_IF_ERROR(ExpectBlockEnd());
    FERRY_RETURN_IF_ERROR(ParseMacroBody(*s, "endcall"));
    body.push_back(std::move(s));
    return ExpectBlockEnd();
  }

  absl::Status ParseFilterBlock(int line, Body& body) {
    auto s = std::make_unique<Stmt>(Stmt::Kind::kFilterBlock, line);
    FERRY_ASSIGN_OR_RETURN(s->filter, ParseFilterChain(nullptr, /*leading_pipe=*/false));
    FERRY_RETURN_IF_ERROR(ExpectBlockEnd());
    s->bodies.resize(1);
    FERRY_RETURN_IF_ERROR(Subparse({"endfilter"}, s->bodies[0]));
    Next();
    body.push_back(std::move(s));
    return ExpectBlockEnd();
  }

  absl::Status ParseWith(int line, Body& body) {
    auto s = std::make_unique<Stmt>(Stmt::Kind::kWith, line);
    while (Cur().type != TokenType::kBlockEnd) {
      if (!s->targets.empty()) FERRY_RETURN_IF_ERROR(Expect(","));
      FERRY_ASSIGN_OR_RETURN(std::string n, ExpectName());
      FERRY_RETURN_IF_ERROR(Expect("="));
      FERRY_ASSIGN_OR_RETURN(ExprPtr v, ParseExpression(true));
      s->targets.push_back(std::move(n));
      s->conditions.push_back(std::move(v));
    }
    Next();
    s->bodies.resize(1);
    FERRY_RETURN_IF_ERROR(Subparse({"endwith"}, s->bodies[0]));
    Next();
    body.push_back(std::move(s));
    return ExpectBlockEnd();
  }

  // ------------------------------------------------------------ expressions

  ExprPtr Make(Expr::Kind k) { return std::make_unique<Expr>(k, Cur().line); }

  struct DepthGuard {
    explicit DepthGuard(int& d) : depth(d) { ++depth; }
    ~DepthGuard() { --depth; }
    int& depth;
  };

  // A comma-separated list of expressions makes a tuple.
  absl::StatusOr<ExprPtr> ParseTuple(bool with_condexpr, bool explicit_parens) {
    auto tuple = Make(Expr::Kind::kTuple);
    bool saw_comma = false;
    while (true) {
      if (!tuple->args.empty()) {
        if (!SkipOp(",")) break;
        saw_comma = true;
      }
      if (IsTupleEnd(explicit_parens)) break;
      FERRY_ASSIGN_OR_RETURN(ExprPtr e, ParseExpression(with_condexpr));
      tuple->args.push_back(std::move(e));
    }
    if (!saw_comma) {
      if (tuple->args.size() == 1) return std::move(tuple->args[0]);
      if (!explicit_parens) {
        return Error(absl::StrCat("Expected an expression, got '", Describe(Cur()), "'"));
      }
    }
    return tuple;
  }

  bool IsTupleEnd(bool explicit_parens) const {
    TokenType t = Cur().type;
    if (t == TokenType::kVarEnd || t == TokenType::kBlockEnd || t == TokenType::kEof) return true;
    if (explicit_parens && IsOp(")")) return true;
    return IsName("in") || IsName("if") || IsName("recursive");
  }

  absl::StatusOr<ExprPtr> ParseExpression(bool with_condexpr) {
    DepthGuard guard(expr_depth_);
    if (expr_depth_ > kMaxNesting) return Error("expression nested too deeply");
    if (!with_condexpr) return ParseOr();
    FERRY_ASSIGN_OR_RETURN(ExprPtr e, ParseOr());
    while (IsName("if")) {
      auto c = Make(Expr::Kind::kCond);
      Next();
      FERRY_ASSIGN_OR_RETURN(ExprPtr cond, ParseOr());
      ExprPtr otherwise;
      if (SkipName("else")) {
        FERRY_ASSIGN_OR_RETURN(otherwise, ParseExpression(true));
      }
      c->args.push_back(std::move(e));
      c->args.push_back(std::move(cond));
      c->args.push_back(std::move(otherwise));
      e = std::move(c);
    }
    return e;
  }

  ExprPtr Binary(std::string op, ExprPtr l, ExprPtr r) {
    auto b = std::make_unique<Expr>(Expr::Kind::kBinary, l->line);
    b->name = std::move(op);
    b->args.push_back(std::move(l));
    b->args.push_back(std::move(r));
    return b;
  }

  absl::StatusOr<ExprPtr> ParseOr() {
    FERRY_ASSIGN_OR_RETURN(ExprPtr l, ParseAnd());
    while (SkipName("or")) {
      FERRY_ASSIGN_OR_RETURN(ExprPtr r, ParseAnd());
      l = Binary("or", std::move(l), std::move(r));
    }
    return l;
  }

  absl::StatusOr<ExprPtr> ParseAnd() {
    FERRY_ASSIGN_OR_RETURN(ExprPtr l, ParseNot());
    while (SkipName("and")) {
      FERRY_ASSIGN_OR_RETURN(ExprPtr r, ParseNot());
      l = Binary("and", std::move(l), std::move(r));
    }
    return l;
  }

  absl::StatusOr<ExprPtr> ParseNot() {
    if (IsName("not")) {
      auto n = Make(Expr::Kind::kUnary);
      n->name = "not";
      Next();
      DepthGuard guard(expr_depth_);
      if (expr_depth_ > kMaxNesting) return Error("expression nested too deeply");
      FERRY_ASSIGN_OR_RETURN(ExprPtr inner, ParseNot());
      n->args.push_back(std::move(inner));
      return n;
    }
    return ParseCompare();
  }

  absl::StatusOr<ExprPtr> ParseCompare() {
    FERRY_ASSIGN_OR_RETURN(ExprPtr first, ParseMath1());
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (Cur().type == TokenType::kOperator &&
          (Cur().value == "==" || Cur().value == "!=" || Cur().value == "<" ||
           Cur().value == "<=" || Cur().value == ">" || Cur().value == ">=")) {
        op = Cur().value;
        Next();
      } else if (IsName("in")) {
        op = "in";
        Next();
      } else if (IsName("not") && Peek().type == TokenType::kName && Peek().value == "in") {
        op = "notin";
        Next();
        Next();
      } else {
        break;
      }
      if (!cmp) {
        cmp = std::make_unique<Expr>(Expr::Kind::kCompare, first->line);
        cmp->args.push_back(std::move(first));
      }
      FERRY_ASSIGN_OR_RETURN(ExprPtr rhs, ParseMath1());
      cmp->ops.push_back(op);
      cmp->args.push_back(std::move(rhs));
    }
    return cmp ? std::move(cmp) : std::move(first);
  }

  absl::StatusOr<ExprPtr> ParseMath1() {
    FERRY_ASSIGN_OR_RETURN(ExprPtr l, ParseConcat());
    while (IsOp("+") || IsOp("-")) {
      std::string op = Cur().value;
      Next();
      FERRY_ASSIGN_OR_RETURN(ExprPtr r, ParseConcat());
      l = Binary(op, std::move(l), std::move(r));
    }
    return l;
  }

  absl::StatusOr<ExprPtr> ParseConcat() {
    FERRY_ASSIGN_OR_RETURN(ExprPtr l, ParseMath2());
    while (SkipOp("~")) {
      FERRY_ASSIGN_OR_RETURN(ExprPtr r, ParseMath2());
      l = Binary("~", std::move(l), std::move(r));
    }
    return l;
  }

  absl::StatusOr<ExprPtr> ParseMath2() {
    FERRY_ASSIGN_OR_RETURN(ExprPtr l, ParsePow());
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      std::string op = Cur().value;
      Next();
      FERRY_ASSIGN_OR_RETURN(ExprPtr r, ParsePow());
      l = Binary(op, std::move(l), std::move(r));
    }
    return l;
  }

  absl::StatusOr<ExprPtr> ParsePow() {
    FERRY_ASSIGN_OR_RETURN(ExprPtr l, ParseUnary(true));
    while (SkipOp("**")) {
      FERRY_ASSIGN_OR_RETURN(ExprPtr r, ParseUnary(true));
      l = Binary("**", std::move(l), std::move(r));
    }
    return l;
  }

  absl::StatusOr<ExprPtr> ParseUnary(bool with_filter) {
    DepthGuard guard(expr_depth_);
    if (expr_depth_ > kMaxNesting) return Error("expression nested too deeply");
    ExprPtr node;
    if (IsOp("-") || IsOp("+")) {
      node = Make(Expr::Kind::kUnary);
      node->name = Cur().value;
      Next();
      FERRY_ASSIGN_OR_RETURN(ExprPtr inner, ParseUnary(false));
      node->args.push_back(std::move(inner));
    } else {
      FERRY_ASSIGN_OR_RETURN(node, ParsePrimary());
    }
    FERRY_ASSIGN_OR_RETURN(node, ParsePostfix(std::move(node)));
    if (with_filter) {
      FERRY_ASSIGN_OR_RETURN(node, ParseFilterExpr(std::move(node)));
    }
    return node;
  }

  absl::StatusOr<ExprPtr> ParsePrimary() {
    const Token& t = Cur();
    switch (t.type) {
      case TokenType::kName: {
        auto e = Make(Expr::Kind::kLiteral);
        if (t.value == "true" || t.value == "True") {
          e->literal = Value::Bool(true);
        } else if (t.value == "false" || t.value == "False") {
          e->literal = Value::Bool(false);
        } else if (t.value == "none" || t.value == "None") {
          e->literal = Value::None();
        } else {
          e->kind = Expr::Kind::kName;
          e->name = t.value;
        }
        Next();
        return e;
      }
      case TokenType::kString: {
        auto e = Make(Expr::Kind::kLiteral);
        std::string s;
        while (Cur().type == TokenType::kString) {  // adjacent literals concatenate
          s += Cur().value;
          Next();
        }
        e->literal = Value::String(std::move(s));
        return e;
      }
      case TokenType::kInteger: {
        auto e = Make(Expr::Kind::kLiteral);
        int64_t v = 0;
        auto r = std::from_chars(t.value.data(), t.value.data() + t.value.size(), v);
        if (r.ec != std::errc()) return Error("integer literal out of range");
        e->literal = Value::Int(v);
        Next();
        return e;
      }
      case TokenType::kFloat: {
        auto e = Make(Expr::Kind::kLiteral);
        e->literal = Value::Float(std::strtod(t.value.c_str(), nullptr));
        Next();
        return e;
      }
      case TokenType::kOperator:
        if (t.value == "(") {
          Next();
          FERRY_ASSIGN_OR_RETURN(ExprPtr e, ParseTuple(true, true));
          FERRY_RETURN_IF_ERROR(Expect(")"));
          return e;
        }
        if (t.value == "[") {
          auto e = Make(Expr::Kind::kList);
          Next();
          while (!IsOp("]")) {
            if (!e->args.empty()) {
              FERRY_RETURN_IF_ERROR(Expect(","));
              if (IsOp("]")) break;
            }
            FERRY_ASSIGN_OR_RETURN(ExprPtr item, ParseExpression(true));
            e->args.push_back(std::move(item));
          }
          Next();
          return e;
        }
        if (t.value == "{") {
          auto e = Make(Expr::Kind::kDict);
          Next();
          while (!IsOp("}")) {
            if (!e->args.empty()) {
              FERRY_RETURN_IF_ERROR(Expect(","));
              if (IsOp("}")) break;
            }
            FERRY_ASSIGN_OR_RETURN(ExprPtr k, ParseExpression(true));
            FERRY_RETURN_IF_ERROR(Expect(":"));
            FERRY_ASSIGN_OR_RETURN(ExprPtr v, ParseExpression(true));
            e->args.push_back(std::move(k));
            e->args.push_back(std::move(v));
          }
          Next();
          return e;
        }
        break;
      default:
        break;
    }
    return Error(absl::StrCat("unexpected '", Describe(t), "'"));
  }

  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr node) {
    while (true) {
      if (IsOp(".")) {
        Next();
        if (Cur().type == TokenType::kName) {
          auto e = Make(Expr::Kind::kGetAttr);
          e->name = Cur().value;
          Next();
          e->args.push_back(std::move(node));
          node = std::move(e);
        } else if (Cur().type == TokenType::kInteger) {
          auto e = Make(Expr::Kind::kGetItem);
          auto idx = Make(Expr::Kind::kLiteral);
          idx->literal = Value::Int(std::atoll(Cur().value.c_str()));
          Next();
          e->args.push_back(std::move(node));
          e->args.push_back(std::move(idx));
          node = std::move(e);
        } else {
          return Error("expected name or number after '.'");
        }
      } else if (IsOp("[")) {
        Next();
        FERRY_ASSIGN_OR_RETURN(node, ParseSubscript(std::move(node)));
      } else if (IsOp("(")) {
        FERRY_ASSIGN_OR_RETURN(node, ParseCall(std::move(node)));
      } else {
        return node;
      }
    }
  }

  absl::StatusOr<ExprPtr> ParseSubscript(ExprPtr node) {
    ExprPtr parts[3];
    bool is_slice = false;
    for (int i = 0; i < 3; ++i) {
      if (i > 0) {
        if (!SkipOp(":")) break;
        is_slice = true;
      }
      if (!IsOp(":") && !IsOp("]")) {
        FERRY_ASSIGN_OR_RETURN(parts[i], ParseExpression(true));
      }
      if (i == 0 && !IsOp(":")) break;
    }
    if (!is_slice && !parts[0]) return Error("expected an expression in subscript");
    FERRY_RETURN_IF_ERROR(Expect("]"));
    auto e = std::make_unique<Expr>(is_slice ? Expr::Kind::kSlice : Expr::Kind::kGetItem,
                                    node->line);
    e->args.push_back(std::move(node));
    e->args.push_back(std::move(parts[0]));
    if (is_slice) {
      e->args.push_back(std::move(parts[1]));
      e->args.push_back(std::move(parts[2]));
    }
    return e;
  }

  absl::Status ParseArgs(Expr& call) {
    FERRY_RETURN_IF_ERROR(Expect("("));
    bool first = true;
    while (!IsOp(")")) {
      if (!first) {
        FERRY_RETURN_IF_ERROR(Expect(","));
        if (IsOp(")")) break;
      }
      first = false;
      if (IsOp("*") || IsOp("**")) {
        // f(*iterable) / f(**mapping): kept as keywords named "*" and "**"
        // (no keyword can have those names). As in jinja2, *args comes after
        // the positional arguments and **kwargs last.
        std::string star = Cur().value;
        bool has_star = false, has_double = false;
        for (const auto& kw : call.kwargs) {
          has_star = has_star || kw.first == "*";
          has_double = has_double || kw.first == "**";
        }
        if (has_double || (star == "*" && has_star))
          return Error("invalid syntax for function call expression");
        Next();
        FERRY_ASSIGN_OR_RETURN(ExprPtr v, ParseExpression(true));
        call.kwargs.emplace_back(std::move(star), std::move(v));
        continue;
      }
      if (Cur().type == TokenType::kName && Peek().type == TokenType::kOperator &&
          Peek().value == "=") {
        std::string key = Cur().value;
        for (const auto& kw : call.kwargs) {
          if (kw.first == "**") return Error("invalid syntax for function call expression");
        }
        Next();
        Next();
        FERRY_ASSIGN_OR_RETURN(ExprPtr v, ParseExpression(true));
        call.kwargs.emplace_back(std::move(key), std::move(v));
      } else {
        if (!call.kwargs.empty()) return Error("positional argument follows keyword argument");
        FERRY_ASSIGN_OR_RETURN(ExprPtr v, ParseExpression(true));
        call.args.push_back(std::move(v));
      }
    }
    Next();
    return absl::OkStatus();
  }

  absl::StatusOr<ExprPtr> ParseCall(ExprPtr callee) {
    auto e = std::make_unique<Expr>(Expr::Kind::kCall, callee->line);
    e->args.push_back(std::move(callee));
    FERRY_RETURN_IF_ERROR(ParseArgs(*e));
    return e;
  }

  absl::StatusOr<std::string> ParseDottedName() {
    FERRY_ASSIGN_OR_RETURN(std::string n, ExpectName());
    while (SkipOp(".")) {
      FERRY_ASSIGN_OR_RETURN(std::string part, ExpectName());
      n += "." + part;
    }
    return n;
  }

  absl::StatusOr<ExprPtr> ParseFilter(ExprPtr input) {
    auto e = Make(Expr::Kind::kFilter);
    FERRY_ASSIGN_OR_RETURN(e->name, ParseDottedName());
    e->args.push_back(std::move(input));
    if (IsOp("(")) FERRY_RETURN_IF_ERROR(ParseArgs(*e));
    return e;
  }

  // "|f1|f2(x)" applied to `input` (null for filter blocks and set blocks).
  absl::StatusOr<ExprPtr> ParseFilterChain(ExprPtr input, bool leading_pipe = true) {
    if (leading_pipe) FERRY_RETURN_IF_ERROR(Expect("|"));
    FERRY_ASSIGN_OR_RETURN(ExprPtr node, ParseFilter(std::move(input)));
    while (SkipOp("|")) {
      FERRY_ASSIGN_OR_RETURN(node, ParseFilter(std::move(node)));
    }
    return node;
  }

  absl::StatusOr<ExprPtr> ParseFilterExpr(ExprPtr node) {
    while (true) {
      if (SkipOp("|")) {
        FERRY_ASSIGN_OR_RETURN(node, ParseFilter(std::move(node)));
      } else if (IsName("is")) {
        Next();
        auto e = Make(Expr::Kind::kTest);
        e->negated = SkipName("not");
        FERRY_ASSIGN_OR_RETURN(e->name, ParseDottedName());
        e->args.push_back(std::move(node));
        const TokenType t = Cur().type;
        if (IsOp("(")) {
          FERRY_RETURN_IF_ERROR(ParseArgs(*e));
        } else if ((t == TokenType::kName || t == TokenType::kString ||
                    t == TokenType::kInteger || t == TokenType::kFloat || IsOp("[") ||
                    IsOp("{")) &&
                   !IsName("else") && !IsName("or") && !IsName("and")) {
          if (IsName("is")) return Error("You cannot chain multiple tests with is");
          FERRY_ASSIGN_OR_RETURN(ExprPtr arg, ParsePrimary());
          FERRY_ASSIGN_OR_RETURN(arg, ParsePostfix(std::move(arg)));
          e->args.push_back(std::move(arg));
        }
        node = std::move(e);
      } else if (IsOp("(")) {
        FERRY_ASSIGN_OR_RETURN(node, ParseCall(std::move(node)));
      } else {
        return node;
      }
    }
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int depth_ = 0;
  int expr_depth_ = 0;
  int loop_depth_ = 0;
};

// jinja2 rejects a filter or test that does not exist when it compiles the
// template, except in an if statement or an inline if ("soft" frames: its
// condition and the statements directly in its branches), where the error
// comes only if the expression is evaluated. Loops, macros, with, filter and
// set blocks open a frame of their own, which is not soft.
absl::Status CheckExprNames(const Expr* root, bool soft) {
  std::vector<std::pair<const Expr*, bool>> pending = {
      {root, soft}};  // no recursion: chains are deep
  while (!pending.empty()) {
    const auto [e, in_soft] = pending.back();
    pending.pop_back();
    if (e == nullptr) continue;
    if (!in_soft && e->kind == Expr::Kind::kFilter && !IsKnownFilter(e->name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", e->line, ": No filter named '", e->name, "'."));
    }
    if (!in_soft && e->kind == Expr::Kind::kTest && !IsKnownTest(e->name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", e->line, ": No test named '", e->name, "'."));
    }
    const bool child_soft = in_soft || e->kind == Expr::Kind::kCond;
    for (const ExprPtr& a : e->args) pending.emplace_back(a.get(), child_soft);
    for (const auto& kw : e->kwargs) pending.emplace_back(kw.second.get(), child_soft);
  }
  return absl::OkStatus();
}

absl::Status CheckNames(const Body& body, bool soft) {
  for (const StmtPtr& s : body) {
    using K = Stmt::Kind;
    const bool is_if = s->kind == K::kIf;
    // Evaluated in this frame: the statement's own expressions.
    const bool here = soft || is_if;
    FERRY_RETURN_IF_ERROR(CheckExprNames(s->expr.get(), here));
    for (const ExprPtr& c : s->conditions) {
      const bool params = s->kind == K::kMacro || s->kind == K::kCallBlock;
      FERRY_RETURN_IF_ERROR(CheckExprNames(c.get(), params ? false : here));
    }
    // A for loop's filter and body, a macro's body and a block's body run
    // in an inner frame; a loop's else branch in this one.
    const bool inner = s->kind == K::kFor || s->kind == K::kMacro || s->kind == K::kCallBlock ||
                       s->kind == K::kWith || s->kind == K::kSetBlock || s->kind == K::kFilterBlock;
    FERRY_RETURN_IF_ERROR(CheckExprNames(s->cond.get(), inner ? false : here));
    FERRY_RETURN_IF_ERROR(CheckExprNames(s->filter.get(), inner ? false : here));
    for (size_t b = 0; b < s->bodies.size(); ++b) {
      const bool for_else = s->kind == K::kFor && b == 1;
      FERRY_RETURN_IF_ERROR(CheckNames(s->bodies[b], inner && !for_else ? false : here));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Body> ParseTemplate(std::string_view source) {
  FERRY_ASSIGN_OR_RETURN(std::vector<Token> tokens, Tokenize(source));
  FERRY_ASSIGN_OR_RETURN(Body body, Parser(std::move(tokens)).ParseAll());
  FERRY_RETURN_IF_ERROR(CheckNames(body, /*soft=*/false));
  return body;
}

}  // namespace ferry::chat_template
