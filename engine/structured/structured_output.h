// What a request asks its output to match (OpenAI's response_format, vLLM's
// guided_json / guided_regex / guided_choice, a forced tool call), and its
// compilation to a grammar.
//
// JSON schemas: type (one or a list), properties (generated in the order
// given; required ones always, others optionally), additionalProperties
// (extra members only when it is given as true or a schema), items,
// prefixItems, minItems, maxItems, enum, const, anyOf, oneOf, allOf of one
// schema, $ref into the document ($defs, definitions; recursion allowed),
// string minLength, maxLength, pattern and format (date, time, date-time,
// uuid, email, ipv4), integer and number (a minimum >= 0 drops the sign; other
// bounds are not enforced). Annotations (title, description, default...) are
// ignored. Whitespace between tokens is one optional space (compact JSON;
// given more room, small models pad with it until max_tokens); numbers have
// up to 16 digits in each part.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/structured/grammar.h"
#include "nlohmann/json.hpp"

namespace ferry::structured {

struct OutputSpec {
  enum class Kind { kNone, kJsonSchema, kJsonObject, kRegex, kChoice, kGrammar };
  Kind kind = Kind::kNone;
  std::string text;                  // the schema (JSON text), the regex or the GBNF grammar
  std::vector<std::string> choices;  // kChoice

  bool empty() const { return kind == Kind::kNone; }
};

// InvalidArgument naming what is wrong or unsupported.
absl::StatusOr<std::shared_ptr<const Grammar>> Compile(const OutputSpec& spec);
absl::StatusOr<std::shared_ptr<const Grammar>> CompileJsonSchema(
    const nlohmann::ordered_json& schema);

}  // namespace ferry::structured
