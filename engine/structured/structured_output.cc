#include "engine/structured/structured_output.h"

#include <optional>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/structured/gbnf.h"
#include "engine/structured/numeric_range.h"
#include "engine/structured/regex.h"

namespace ferry::structured {
namespace {

using Json = nlohmann::ordered_json;

constexpr int kMaxSchemaDepth = 64;
// One optional space between tokens (as outlines does): a model given
// room for more pads with it, often until max_tokens.
constexpr int kMaxWhitespace = 1;
constexpr int kMaxDigits = 16;
constexpr int kMaxLengthBound = 10000;

absl::Status Bad(std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("JSON schema: ", std::string(what)));
}

class SchemaCompiler {
 public:
  explicit SchemaCompiler(const Json& root) : root_(root) {}

  absl::StatusOr<std::shared_ptr<const Grammar>> Run() {
    auto value = Value(root_, 0);
    if (!value.ok()) return value.status();
    Sequence top = {GrammarBuilder::Ref(Whitespace())};
    top.insert(top.end(), value->begin(), value->end());
    return b_.Build(b_.Choice({std::move(top)}));
  }

  absl::StatusOr<std::shared_ptr<const Grammar>> AnyObject() {
    return b_.Build(
        b_.Choice({{GrammarBuilder::Ref(Whitespace()), GrammarBuilder::Ref(AnyObjectRule())}}));
  }

 private:
  using Ref = Element;
  static Element R(int rule) { return GrammarBuilder::Ref(rule); }

  int Whitespace() {
    if (ws_ < 0) {
      ws_ = b_.Repeat({b_.Byte(' ')}, 0, kMaxWhitespace);
    }
    return ws_;
  }
  Sequence Lit(std::string_view text) { return b_.Literal(text); }
  Sequence Cat(std::initializer_list<Sequence> parts) {
    Sequence s;
    for (const Sequence& p : parts) s.insert(s.end(), p.begin(), p.end());
    return s;
  }
  Sequence Ws() { return {R(Whitespace())}; }

  // One character of a JSON string: any code point but '"', '\' and
  // controls, or an escape.
  int StringChar() {
    if (char_ >= 0) return char_;
    std::vector<Sequence> alts;
    ByteSet ascii = ByteSet::Range(0x20, 0x7F);
    ascii.bits['"' >> 6] &= ~(uint64_t{1} << ('"' & 63));
    ascii.bits['\\' >> 6] &= ~(uint64_t{1} << ('\\' & 63));
    alts.push_back({b_.Bytes(ascii)});
    for (const auto& seq : Utf8Ranges(0x80, 0x10FFFF)) {
      Sequence s;
      for (const auto& [lo, hi] : seq) s.push_back(b_.Bytes(ByteSet::Range(lo, hi)));
      alts.push_back(std::move(s));
    }
    ByteSet simple;
    for (char c : std::string("\"\\/bfnrt")) simple.Add(static_cast<uint8_t>(c));
    alts.push_back({b_.Byte('\\'), b_.Bytes(simple)});
    ByteSet hex = ByteSet::Range('0', '9');
    hex.AddRange('a', 'f');
    hex.AddRange('A', 'F');
    const Element h = b_.Bytes(hex);
    alts.push_back({b_.Byte('\\'), b_.Byte('u'), h, h, h, h});
    char_ = b_.Choice(std::move(alts));
    return char_;
  }

  int AnyString() {
    if (string_ < 0)
      string_ = b_.Choice({Cat({Lit("\""), {R(b_.Repeat({R(StringChar())}, 0, -1))}, Lit("\"")})});
    return string_;
  }

  Sequence Digits(int min, int max) {
    return {R(b_.Repeat({b_.Bytes(ByteSet::Range('0', '9'))}, min, max))};
  }

  // 0 | [1-9][0-9]{0,15}
  Sequence IntegerPart() {
    return {R(b_.Choice(
        {Lit("0"), Cat({{b_.Bytes(ByteSet::Range('1', '9'))}, Digits(0, kMaxDigits - 1)})}))};
  }

  int Integer() {
    if (integer_ < 0) integer_ = b_.Choice({Cat({{R(b_.Repeat(Lit("-"), 0, 1))}, IntegerPart()})});
    return integer_;
  }

  int Number() {
    int& rule = number_;
    if (rule < 0) {
      const int frac = b_.Repeat(Cat({Lit("."), Digits(1, kMaxDigits)}), 0, 1);
      ByteSet e;
      e.Add('e');
      e.Add('E');
      ByteSet pm;
      pm.Add('+');
      pm.Add('-');
      const int exp =
          b_.Repeat(Cat({{b_.Bytes(e)}, {R(b_.Repeat({b_.Bytes(pm)}, 0, 1))}, Digits(1, 3)}), 0, 1);
      rule = b_.Choice({Cat({{R(Integer())}, {R(frac)}, {R(exp)}})});
    }
    return rule;
  }

  // Any JSON value.
  int AnyValue() {
    if (value_ >= 0) return value_;
    value_ = b_.NewRule();
    const int object = AnyObjectRule();
    const int array = b_.NewRule();
    b_.AddAlternative(array, Cat({Lit("["), Ws(), Lit("]")}));
    const int more = b_.Repeat(Cat({Ws(), Lit(","), Ws(), {R(value_)}}), 0, -1);
    b_.AddAlternative(array, Cat({Lit("["), Ws(), {R(value_)}, {R(more)}, Ws(), Lit("]")}));
    for (Sequence alt : {Sequence{R(object)}, Sequence{R(array)}, Sequence{R(AnyString())},
                         Sequence{R(Number())}, Lit("true"), Lit("false"), Lit("null")}) {
      b_.AddAlternative(value_, std::move(alt));
    }
    return value_;
  }

  int AnyObjectRule() {
    if (object_ >= 0) return object_;
    object_ = b_.NewRule();
    const int value = AnyValue();
    Sequence member = Cat({{R(AnyString())}, Ws(), Lit(":"), Ws(), {R(value)}});
    const int more = b_.Repeat(Cat({Ws(), Lit(","), Ws(), member}), 0, -1);
    b_.AddAlternative(object_, Cat({Lit("{"), Ws(), Lit("}")}));
    b_.AddAlternative(object_, Cat({Lit("{"), Ws(), member, {R(more)}, Ws(), Lit("}")}));
    return object_;
  }

  absl::StatusOr<const Json*> Resolve(const std::string& ref) {
    if (ref.empty() || ref[0] != '#')
      return Bad(absl::StrCat("only local $ref (\"#/...\") is supported, got '", ref, "'"));
    const Json* at = &root_;
    if (ref.size() > 1) {
      if (ref[1] != '/') return Bad(absl::StrCat("bad $ref '", ref, "'"));
      for (absl::string_view piece : absl::StrSplit(ref.substr(2), '/')) {
        std::string part(piece);
        // JSON pointer escapes.
        for (size_t k; (k = part.find("~1")) != std::string::npos;) part.replace(k, 2, "/");
        for (size_t k; (k = part.find("~0")) != std::string::npos;) part.replace(k, 2, "~");
        if (at->is_object() && at->contains(part)) {
          at = &(*at)[part];
        } else if (at->is_array() && !part.empty() &&
                   part.find_first_not_of("0123456789") == std::string::npos && part.size() < 9 &&
                   std::stoul(part) < at->size()) {
          at = &(*at)[std::stoul(part)];
        } else {
          return Bad(absl::StrCat("$ref '", ref, "' points nowhere"));
        }
      }
    }
    return at;
  }

  absl::StatusOr<Sequence> Value(const Json& s, int depth) {
    if (depth > kMaxSchemaDepth) return Bad("nested too deeply");
    if (s.is_boolean()) {
      if (!s.get<bool>()) return Bad("the schema 'false' matches nothing");
      return Sequence{R(AnyValue())};
    }
    if (!s.is_object())
      return Bad(absl::StrCat("a schema must be an object or a boolean, got ", s.type_name()));
    if (auto it = s.find("$ref"); it != s.end()) {
      if (!it->is_string()) return Bad("$ref must be a string");
      const std::string ref = it->get<std::string>();
      if (auto done = refs_.find(ref); done != refs_.end()) return Sequence{R(done->second)};
      auto target = Resolve(ref);
      if (!target.ok()) return target.status();
      const int rule = b_.NewRule();
      refs_[ref] = rule;  // before compiling it, so that recursion refers back
      auto body = Value(**target, depth + 1);
      if (!body.ok()) return body.status();
      b_.AddAlternative(rule, std::move(*body));
      return Sequence{R(rule)};
    }
    if (auto it = s.find("const"); it != s.end()) return Lit(it->dump());
    if (auto it = s.find("enum"); it != s.end()) {
      if (!it->is_array() || it->empty()) return Bad("enum must be a non-empty array");
      std::vector<Sequence> alts;
      for (const Json& v : *it) alts.push_back(Lit(v.dump()));
      return Sequence{R(b_.Choice(std::move(alts)))};
    }
    for (const char* key : {"anyOf", "oneOf"}) {
      if (auto it = s.find(key); it != s.end()) {
        if (!it->is_array() || it->empty())
          return Bad(absl::StrCat(key, " must be a non-empty array"));
        std::vector<Sequence> alts;
        for (const Json& sub : *it) {
          auto a = Value(sub, depth + 1);
          if (!a.ok()) return a.status();
          alts.push_back(std::move(*a));
        }
        return Sequence{R(b_.Choice(std::move(alts)))};
      }
    }
    if (auto it = s.find("allOf"); it != s.end()) {
      if (!it->is_array() || it->size() != 1)
        return Bad("allOf is supported with exactly one schema");
      return Value((*it)[0], depth + 1);
    }
    auto type = s.find("type");
    if (type == s.end()) {
      if (s.contains("properties") || s.contains("additionalProperties") ||
          s.contains("required")) {
        return Typed(s, "object", depth);
      }
      if (s.contains("items") || s.contains("prefixItems")) return Typed(s, "array", depth);
      if (s.contains("pattern") || s.contains("format") || s.contains("minLength") ||
          s.contains("maxLength")) {
        return Typed(s, "string", depth);
      }
      return Sequence{R(AnyValue())};
    }
    if (type->is_string()) return Typed(s, type->get<std::string>(), depth);
    if (!type->is_array() || type->empty())
      return Bad("type must be a string or a non-empty array of strings");
    std::vector<Sequence> alts;
    for (const Json& t : *type) {
      if (!t.is_string()) return Bad("type must be a string or a non-empty array of strings");
      auto a = Typed(s, t.get<std::string>(), depth);
      if (!a.ok()) return a.status();
      alts.push_back(std::move(*a));
    }
    return Sequence{R(b_.Choice(std::move(alts)))};
  }

  absl::StatusOr<std::optional<int>> Bound(const Json& s, const char* key) {
    auto it = s.find(key);
    if (it == s.end()) return std::optional<int>();
    if (!it->is_number_integer() || it->get<int64_t>() < 0)
      return Bad(absl::StrCat(key, " must be a non-negative integer"));
    if (it->get<int64_t>() > kMaxLengthBound)
      return Bad(absl::StrCat(key, " over ", kMaxLengthBound, " is not supported"));
    return std::optional<int>(static_cast<int>(it->get<int64_t>()));
  }

  // minimum / maximum / exclusiveMinimum / exclusiveMaximum (numbers, or
  // draft 4's booleans that make minimum and maximum exclusive); nullopt
  // when the schema has none.
  static absl::StatusOr<std::optional<NumericRange>> Range(const Json& s) {
    NumericRange range;
    bool any = false;
    for (const char* key : {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}) {
      auto it = s.find(key);
      if (it == s.end() || it->is_boolean()) continue;
      if (!it->is_number()) return Bad(absl::StrCat(key, " must be a number"));
      auto bound = ParseDecimal(it->dump());
      if (!bound.ok()) return Bad(absl::StrCat(key, ": ", bound.status().message()));
      const std::string_view name(key);
      bound->exclusive = name.starts_with("exclusive");
      const bool lower = name.ends_with("inimum");
      std::optional<DecimalBound>& slot = lower ? range.lower : range.upper;
      // Both an inclusive and an exclusive bound on one side: the tighter.
      const int order = slot ? CompareDecimal(*bound, *slot) : 0;
      if (!slot || (lower ? order > 0 : order < 0) || (order == 0 && bound->exclusive)) {
        slot = *bound;
      }
      any = true;
    }
    for (const auto& [key, slot] : {std::pair{"exclusiveMinimum", &range.lower},
                                    std::pair{"exclusiveMaximum", &range.upper}}) {
      auto it = s.find(key);
      if (it != s.end() && it->is_boolean() && it->get<bool>() && slot->has_value())
        (*slot)->exclusive = true;
    }
    if (!any) return std::optional<NumericRange>();
    return std::optional<NumericRange>(std::move(range));
  }

  absl::StatusOr<Sequence> Numeric(const Json& s, bool integer) {
    auto range = Range(s);
    if (!range.ok()) return range.status();
    if (!range->has_value()) return Sequence{R(integer ? Integer() : Number())};
    auto seq = AddNumericRange(**range, integer, kMaxDigits, b_);
    if (!seq.ok()) return Bad(std::string(seq.status().message()));
    return seq;
  }

  absl::StatusOr<Sequence> Typed(const Json& s, const std::string& type, int depth) {
    if (type == "null") return Lit("null");
    if (type == "boolean") return Sequence{R(b_.Choice({Lit("true"), Lit("false")}))};
    if (type == "integer") return Numeric(s, /*integer=*/true);
    if (type == "number") return Numeric(s, /*integer=*/false);
    if (type == "string") return String(s);
    if (type == "array") return Array(s, depth);
    if (type == "object") return Object(s, depth);
    return Bad(absl::StrCat("unknown type '", type, "'"));
  }

  absl::StatusOr<Sequence> String(const Json& s) {
    auto min = Bound(s, "minLength");
    if (!min.ok()) return min.status();
    auto max = Bound(s, "maxLength");
    if (!max.ok()) return max.status();
    std::string pattern;
    if (auto it = s.find("pattern"); it != s.end()) {
      if (!it->is_string()) return Bad("pattern must be a string");
      pattern = it->get<std::string>();
    } else if (auto f = s.find("format"); f != s.end() && f->is_string()) {
      static const std::pair<const char*, const char*> kFormats[] = {
          {"date", R"(\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01]))"},
          {"time", R"(([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d))"},
          {"date-time",
           R"(\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d))"},
          {"uuid", R"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"},
          {"email", R"([A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63}){1,8})"},
          {"ipv4", R"(((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d))"},
      };
      for (const auto& [name, regex] : kFormats) {
        if (f->get<std::string>() == name) pattern = regex;
      }
    }
    if (!pattern.empty()) {
      auto body = AddRegex(pattern, b_);
      if (!body.ok()) return Bad(absl::StrCat("pattern: ", body.status().message()));
      return Cat({Lit("\""), *body, Lit("\"")});
    }
    if (!min->has_value() && !max->has_value()) return Sequence{R(AnyString())};
    const int lo = min->value_or(0), hi = max->has_value() ? **max : -1;
    if (hi >= 0 && hi < lo) return Bad("maxLength is below minLength");
    return Cat({Lit("\""), {R(b_.Repeat({R(StringChar())}, lo, hi))}, Lit("\"")});
  }

  absl::StatusOr<Sequence> Array(const Json& s, int depth) {
    auto min = Bound(s, "minItems");
    if (!min.ok()) return min.status();
    auto max = Bound(s, "maxItems");
    if (!max.ok()) return max.status();
    Sequence item = {R(AnyValue())};
    if (auto it = s.find("items"); it != s.end() && !it->is_array()) {
      auto v = Value(*it, depth + 1);
      if (!v.ok()) return v.status();
      item = std::move(*v);
    }
    std::vector<Sequence> prefix;
    if (auto it = s.find("prefixItems"); it != s.end()) {
      if (!it->is_array()) return Bad("prefixItems must be an array");
      for (const Json& sub : *it) {
        auto v = Value(sub, depth + 1);
        if (!v.ok()) return v.status();
        prefix.push_back(std::move(*v));
      }
    }
    const Sequence comma = Cat({Ws(), Lit(","), Ws()});
    int lo = min->value_or(0), hi = max->has_value() ? **max : -1;
    if (hi >= 0 && hi < lo) return Bad("maxItems is below minItems");
    // Items after the tuple prefix.
    Sequence body;
    const int n = static_cast<int>(prefix.size());
    for (int k = 0; k < n; ++k) {
      if (k > 0) body.insert(body.end(), comma.begin(), comma.end());
      body.insert(body.end(), prefix[static_cast<size_t>(k)].begin(),
                  prefix[static_cast<size_t>(k)].end());
    }
    const int rest_lo = std::max(0, lo - n), rest_hi = hi < 0 ? -1 : std::max(0, hi - n);
    const bool extra_allowed =
        !(s.contains("items") && s["items"].is_boolean() && !s["items"].get<bool>()) &&
        rest_hi != 0;
    std::vector<Sequence> alts;
    if (n == 0) {
      if (rest_lo == 0) alts.push_back(Cat({Lit("["), Ws(), Lit("]")}));
      if (extra_allowed) {
        const int more =
            b_.Repeat(Cat({comma, item}), std::max(0, rest_lo - 1), rest_hi < 0 ? -1 : rest_hi - 1);
        alts.push_back(Cat({Lit("["), Ws(), item, {R(more)}, Ws(), Lit("]")}));
      }
    } else {
      if (rest_lo == 0) alts.push_back(Cat({Lit("["), Ws(), body, Ws(), Lit("]")}));
      if (extra_allowed) {
        const int more = b_.Repeat(Cat({comma, item}), std::max(1, rest_lo), rest_hi);
        alts.push_back(Cat({Lit("["), Ws(), body, {R(more)}, Ws(), Lit("]")}));
      }
    }
    if (alts.empty()) return Bad("the array bounds leave no valid array");
    return Sequence{R(b_.Choice(std::move(alts)))};
  }

  absl::StatusOr<Sequence> Object(const Json& s, int depth) {
    std::vector<std::pair<Sequence, bool>> members;  // "key": value, required
    const Json* props = nullptr;
    if (auto it = s.find("properties"); it != s.end()) {
      if (!it->is_object()) return Bad("properties must be an object");
      props = &*it;
    }
    std::vector<std::string> required;
    if (auto it = s.find("required"); it != s.end()) {
      if (!it->is_array()) return Bad("required must be an array of strings");
      for (const Json& r : *it) {
        if (!r.is_string()) return Bad("required must be an array of strings");
        required.push_back(r.get<std::string>());
        if (props == nullptr || !props->contains(required.back())) {
          return Bad(
              absl::StrCat("required property '", required.back(), "' is not in properties"));
        }
      }
    }
    if (props != nullptr) {
      for (const auto& [key, sub] : props->items()) {
        auto v = Value(sub, depth + 1);
        if (!v.ok()) return v.status();
        const bool req = std::find(required.begin(), required.end(), key) != required.end();
        members.emplace_back(Cat({Lit(Json(key).dump()), Ws(), Lit(":"), Ws(), *v}), req);
      }
    }
    // Extra members: when additionalProperties is true or a schema, or
    // when the object lists no properties and does not forbid them.
    std::optional<Sequence> extra;
    auto ap = s.find("additionalProperties");
    const bool ap_false = ap != s.end() && ap->is_boolean() && !ap->get<bool>();
    if (!ap_false && (props == nullptr || ap != s.end())) {
      Sequence value = {R(AnyValue())};
      if (ap != s.end() && ap->is_object()) {
        auto v = Value(*ap, depth + 1);
        if (!v.ok()) return v.status();
        value = std::move(*v);
      }
      extra = Cat({{R(AnyString())}, Ws(), Lit(":"), Ws(), value});
    }
    const Sequence comma = Cat({Ws(), Lit(","), Ws()});
    // rest[k][after]: members k.. given that something was written before
    // (`after`, so a comma comes first) or not.
    const int n = static_cast<int>(members.size());
    std::vector<std::array<int, 2>> rest(static_cast<size_t>(n) + 1);
    for (int after = 0; after < 2; ++after) {
      const int rule = b_.NewRule();
      b_.AddAlternative(rule, {});
      if (extra) {
        Sequence first = after ? Cat({comma, *extra}) : *extra;
        const int more = b_.Repeat(Cat({comma, *extra}), 0, -1);
        b_.AddAlternative(rule, Cat({first, {R(more)}}));
      }
      rest[static_cast<size_t>(n)][static_cast<size_t>(after)] = rule;
    }
    for (int k = n - 1; k >= 0; --k) {
      for (int after = 0; after < 2; ++after) {
        const auto& [member, req] = members[static_cast<size_t>(k)];
        const int rule = b_.NewRule();
        Sequence take = after ? Cat({comma, member}) : member;
        take.push_back(R(rest[static_cast<size_t>(k) + 1][1]));
        b_.AddAlternative(rule, std::move(take));
        if (!req)
          b_.AddAlternative(rule,
                            {R(rest[static_cast<size_t>(k) + 1][static_cast<size_t>(after)])});
        rest[static_cast<size_t>(k)][static_cast<size_t>(after)] = rule;
      }
    }
    return Cat({Lit("{"), Ws(), {R(rest[0][0])}, Ws(), Lit("}")});
  }

  const Json& root_;
  GrammarBuilder b_;
  absl::flat_hash_map<std::string, int> refs_;
  int ws_ = -1, char_ = -1, string_ = -1, integer_ = -1, number_ = -1;
  int value_ = -1, object_ = -1;
};

}  // namespace

absl::StatusOr<std::shared_ptr<const Grammar>> CompileJsonSchema(const Json& schema) {
  return SchemaCompiler(schema).Run();
}

absl::StatusOr<std::shared_ptr<const Grammar>> Compile(const OutputSpec& spec) {
  switch (spec.kind) {
    case OutputSpec::Kind::kNone:
      return absl::InvalidArgumentError("no structured output was asked for");
    case OutputSpec::Kind::kJsonObject: {
      static const Json kEmpty = Json::object();
      return SchemaCompiler(kEmpty).AnyObject();
    }
    case OutputSpec::Kind::kJsonSchema: {
      Json schema = Json::parse(spec.text, nullptr, /*allow_exceptions=*/false);
      if (schema.is_discarded()) return Bad("the schema is not valid JSON");
      return CompileJsonSchema(schema);
    }
    case OutputSpec::Kind::kRegex: {
      GrammarBuilder b;
      auto seq = AddRegex(spec.text, b);
      if (!seq.ok()) return seq.status();
      return b.Build(b.Choice({std::move(*seq)}));
    }
    case OutputSpec::Kind::kGrammar:
      return CompileGbnf(spec.text);
    case OutputSpec::Kind::kChoice: {
      if (spec.choices.empty()) return absl::InvalidArgumentError("the choice list is empty");
      GrammarBuilder b;
      std::vector<Sequence> alts;
      for (const std::string& c : spec.choices) {
        if (c.empty()) return absl::InvalidArgumentError("a choice is empty");
        alts.push_back(b.Literal(c));
      }
      return b.Build(b.Choice(std::move(alts)));
    }
  }
  return absl::InvalidArgumentError("unknown structured output kind");
}

}  // namespace ferry::structured
