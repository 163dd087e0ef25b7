// GBNF grammars (llama.cpp's notation, also what vLLM's guided_grammar
// takes) compiled to a Grammar:
//
//   root   ::= answer ("," ws answer)*
//   answer ::= "yes" | "no" | [0-9]+
//   ws     ::= [ \t\n]*
//
// Rules `name ::= alternatives`; literals "..." with escapes (\n \t \r \\
// \" \xHH \uHHHH); character classes [a-z] and [^...]; `.` for any
// character; groups ( ); the postfixes * + ? {m} {m,} {m,n}; comments from
// '#' to the end of the line. A rule ends at a newline unless inside
// parentheses or after '|'. `root` is the start. Left recursion
// (expr ::= expr "+" term) is rejected: write it as repetition.
#pragma once

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/structured/grammar.h"

namespace ferry::structured {

// InvalidArgument with the line of the first error.
absl::StatusOr<std::shared_ptr<const Grammar>> CompileGbnf(std::string_view text);

}  // namespace ferry::structured
