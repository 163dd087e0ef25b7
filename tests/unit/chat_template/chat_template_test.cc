// Language features and error handling of the chat-template renderer.
#include "engine/chat_template/chat_template.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/process_util.h"

namespace ferry {
namespace {

using Json = nlohmann::ordered_json;

absl::StatusOr<std::string> Render(std::string_view source, const Json& context = Json::object(),
                                   const chat_template::RenderOptions& options = {}) {
  absl::StatusOr<std::unique_ptr<ChatTemplate>> t = ChatTemplate::Parse(source);
  if (!t.ok()) return t.status();
  return (*t)->Render(context, options);
}

std::string MustRender(std::string_view source, const Json& context = Json::object()) {
  absl::StatusOr<std::string> r = Render(source, context);
  EXPECT_TRUE(r.ok()) << source << ": " << r.status();
  return r.ok() ? *r : "";
}

TEST(ChatTemplateTest, PrintsValuesAsPython) {
  EXPECT_EQ(MustRender("{{ 1.0 }} {{ 1e20 }} {{ 0.1 + 0.2 }} {{ true }} {{ none }} {{ x }}|"),
            "1.0 1e+20 0.30000000000000004 True None |");
  EXPECT_EQ(MustRender("{{ ['a', \"it's\", 1, none, {'k': [1.5]}] }}"),
            "['a', \"it's\", 1, None, {'k': [1.5]}]");
  EXPECT_EQ(MustRender("{{ (1,) }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }}"),
            "(1,) 3 -4 2 3.5 1024");
}

// Chains parsed in a loop (a.b.b..., a()()..., a|trim|trim...) build trees
// thousands deep: rendering one is an error, and freeing it needs no deep
// recursion (each used to overflow the stack).
TEST(ChatTemplateTest, VeryDeepChainsAreErrorsNotCrashes) {
  for (const char* link : {".b", "()", "|trim", "[0]", "+1"}) {
    std::string source = "{{ a";
    for (int i = 0; i < 50000; ++i) source += link;
    source += " }}";
    absl::StatusOr<std::string> r = Render(source, Json{{"a", "x"}});
    EXPECT_FALSE(r.ok()) << link;
  }
  std::string ok = "{{ a";
  for (int i = 0; i < 100; ++i) ok += "|trim";
  EXPECT_EQ(MustRender(ok + " }}", Json{{"a", " x "}}), "x");
}

TEST(ChatTemplateTest, WhitespaceControlFollowsTrimAndLstripBlocks) {
  EXPECT_EQ(MustRender("a\n  {% if true %}\n  b\n  {% endif %}\nc"), "a\n  b\nc");
  EXPECT_EQ(MustRender("a  {{- 'x' -}}  b"), "axb");
  EXPECT_EQ(MustRender("a\n  {%+ if true %}x{% endif %}"), "a\n  x");
  EXPECT_EQ(MustRender("{# comment #}\nx\n"), "x");
  EXPECT_EQ(MustRender("{% raw %}{{ not parsed }}{% endraw %}"), "{{ not parsed }}");
}

TEST(ChatTemplateTest, LoopsScopesAndNamespaces) {
  EXPECT_EQ(MustRender("{% for x in xs %}{{ loop.index }}{{ x }}{% if not loop.last %},{% endif %}"
                       "{% endfor %}",
                       Json{{"xs", {"a", "b", "c"}}}),
            "1a,2b,3c");
  EXPECT_EQ(MustRender("{% set c = 0 %}{% for i in range(3) %}{% set c = c + 1 %}{{ c }}"
                       "{% endfor %}{{ c }}"),
            "1110");
  EXPECT_EQ(MustRender("{% set ns = namespace(n=0) %}{% for i in range(3) %}{% set ns.n = ns.n + i %}"
                       "{% endfor %}{{ ns.n }}"),
            "3");
  EXPECT_EQ(MustRender("{% for k, v in d.items() if v %}{{ k }}={{ v }};{% else %}none{% endfor %}",
                       Json{{"d", {{"a", 1}, {"b", 0}, {"c", 2}}}}),
            "a=1;c=2;");
  EXPECT_EQ(MustRender("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(MustRender("{% for x in range(5) %}{% if x == 3 %}{% break %}{% endif %}"
                       "{% if x == 1 %}{% continue %}{% endif %}{{ x }}{% endfor %}"),
            "02");
}

TEST(ChatTemplateTest, MacrosAndBlocks) {
  EXPECT_EQ(MustRender("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}"
                       "{{ greet('Bob') }} {{ greet('Al', punct='?') }}"),
            "Hi Bob! Hi Al?");
  EXPECT_EQ(MustRender("{% macro li(x) %}<li>{{ caller(x) }}</li>{% endmacro %}"
                       "{% call(v) li(3) %}{{ v * 2 }}{% endcall %}"),
            "<li>6</li>");
  EXPECT_EQ(MustRender("{% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs|length }}{% endmacro %}{{ "
                       "m(1, 2, b=3) }}"),
            "1(2,)1");
  EXPECT_EQ(MustRender("{% set x %}  body  {% endset %}[{{ x }}]{% filter upper %}up{% endfilter %}"),
            "[  body  ]UP");
}

TEST(ChatTemplateTest, FiltersAndMethods) {
  EXPECT_EQ(MustRender("{{ '  hi  '|trim }}|{{ 'a,b,,c'.split(',') }}|{{ 'xxhixx'.strip('x') }}"),
            "hi|['a', 'b', '', 'c']|hi");
  EXPECT_EQ(MustRender("{{ {'b': 'é', 'a': [1, 2.5, none, true]}|tojson }}"),
            "{\"b\": \"é\", \"a\": [1, 2.5, null, true]}");
  EXPECT_EQ(MustRender("{{ {'a': [1]}|tojson(indent=2) }}"), "{\n  \"a\": [\n    1\n  ]\n}");
  EXPECT_EQ(MustRender("{{ users|selectattr('admin')|map(attribute='name')|join(', ') }}",
                       Json{{"users", {{{"name", "a"}, {"admin", true}},
                                       {{"name", "b"}, {"admin", false}},
                                       {{"name", "c"}, {"admin", true}}}}}),
            "a, c");
  EXPECT_EQ(MustRender("{{ [3, 1, 2]|sort|list }} {{ 'abc'[::-1] }} {{ [1, 2, 3][1:] }}"),
            "[1, 2, 3] cba [2, 3]");
  EXPECT_EQ(MustRender("{{ x|default('d') }} {{ ''|default('e', true) }} {{ 'ab'|upper }}"),
            "d e AB");
  EXPECT_EQ(MustRender("{{ 'a\nb'|indent(2, first=true) }}"), "  a\n  b");
  EXPECT_EQ(MustRender("{{ 'x'|safe + '<b>' }}"), "x&lt;b&gt;");
}

TEST(ChatTemplateTest, Tests) {
  EXPECT_EQ(MustRender("{{ x is defined }}{{ none is none }}{{ 'a' is string }}{{ 1 is number }}"
                       "{{ {} is mapping }}{{ [] is iterable }}{{ 3 is odd }}{{ 4 is divisibleby 2 }}"
                       "{{ 'a' is in 'abc' }}{{ 2 is equalto 2 }}{{ 1 is not string }}"),
            "FalseTrueTrueTrueTrueTrueTrueTrueTrueTrueTrue");
}

TEST(ChatTemplateTest, StrftimeNowUsesTheInjectedClock) {
  chat_template::RenderOptions options;
  FakeClock clock(absl::FromCivil(absl::CivilSecond(2024, 7, 26, 1, 2, 3), absl::UTCTimeZone()));
  options.clock = &clock;
  options.time_zone = absl::UTCTimeZone();
  absl::StatusOr<std::string> r = Render("{{ strftime_now('%d %b %Y') }}", Json::object(), options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "26 Jul 2024");
}

TEST(ChatTemplateTest, SyntaxErrorsReportTheLine) {
  absl::StatusOr<std::unique_ptr<ChatTemplate>> t = ChatTemplate::Parse("line one\n{% if %}");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(t.status().message().find("line 2"), std::string::npos) << t.status();
  for (const char* bad : {"{% for x in y %}", "{{ 1 +", "{% endif %}", "{{ x|no_such_filter }}",
                          "{{ x is no_such_test }}", "{% unknown %}", "{{ 'unterminated }}",
                          "{# open comment", "{{ (1 }}", "{% break %}"}) {
    EXPECT_FALSE(ChatTemplate::Parse(bad).ok()) << bad;
  }
}

TEST(ChatTemplateTest, RaiseExceptionIsInvalidArgumentWithTheMessage) {
  absl::StatusOr<std::string> r = Render("{{ raise_exception('roles must alternate') }}");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "roles must alternate");
}

TEST(ChatTemplateTest, RuntimeTypeErrorsFail) {
  EXPECT_FALSE(Render("{{ 'a' + 1 }}").ok());
  EXPECT_FALSE(Render("{{ x.y.z }}").ok());  // attribute of undefined
  EXPECT_FALSE(Render("{{ 1 / 0 }}").ok());
  EXPECT_FALSE(Render("{{ none|tojson }}{{ x|tojson }}").ok());
  EXPECT_FALSE(Render("{{ [1, 2] }}", Json::array()).ok());  // context must be an object
}

TEST(ChatTemplateTest, LimitsStopHostileTemplates) {
  absl::StatusOr<std::string> r = Render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);

  chat_template::RenderOptions options;
  options.limits.max_output_bytes = 1000;
  r = Render("{% for i in range(100000) %}xxxxxxxxxx{% endfor %}", Json::object(), options);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);

  options = {};
  options.limits.max_steps = 100000;
  r = Render("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
             Json::object(), options);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);

  EXPECT_FALSE(Render("{{ 'x' * 1000000000 }}").ok());
  EXPECT_FALSE(Render("{{ range(100000000)|length }}").ok());
  EXPECT_FALSE(Render("{% set ns = namespace(l=[]) %}{{ ns.l.append(ns.l) }}").ok());
  std::string deep(5000, '(');
  EXPECT_FALSE(ChatTemplate::Parse("{{ " + deep + " }}").ok());
}

// Small templates exercising one feature each, rendered by Ferry and by
// python jinja2; outputs (or failure) must agree.
TEST(ChatTemplateTest, FeatureSnippetsMatchPythonJinja) {
  if (testing::RunCommand("/usr/bin/python3 -c 'import jinja2' 2>/dev/null").exit_code != 0) {
    GTEST_SKIP() << "/usr/bin/python3 with jinja2 is not available; skipping";
  }
  const Json context = Json::parse(R"({
    "s": "Hello, World", "n": 7, "f": 2.5, "l": [3, 1, 2], "e": [],
    "d": {"b": 2, "a": 1, "items": "shadowed"},
    "msgs": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
    "u": "héllo wörld"
  })");
  const std::vector<std::string> snippets = {
      "{{ s|lower }}|{{ s|upper }}|{{ s|title }}|{{ s|capitalize }}|{{ s|length }}",
      "{{ u|length }}|{{ u[1] }}|{{ u[::-1] }}|{{ u|upper }}|{{ u.split(' ') }}",
      "{{ s.startswith('Hell') }}{{ s.endswith(('x', 'ld')) }}{{ s.find('W') }}{{ s.replace('l', "
      "'L', 2) }}",
      "{{ s.split() }}{{ '  a  b '.split() }}{{ 'a b c'.split(' ', 1) }}{{ 'a-b-c'.rsplit('-', 1) "
      "}}",
      "{{ n + f }} {{ n * 2 }} {{ n / 2 }} {{ n // 2 }} {{ n % 3 }} {{ -n }} {{ n ** 2 }} {{ f * 2 "
      "}}",
      "{{ 10 / 4 }} {{ 1e-5 }} {{ 123456789012345678.0 }} {{ 0.5 }} {{ -0.0 }} {{ 3 * 'ab' }} {{ "
      "[0] * 3 }}",
      "{{ l|sort }} {{ l|sort(reverse=true) }} {{ l|max }} {{ l|min }} {{ l|sum }} {{ l|first }} "
      "{{ l|last }}",
      "{{ l|reverse|list }} {{ l|unique|list }} {{ ['B', 'a', 'b']|unique|list }} {{ l|length }} "
      "{{ e|first }}",
      "{{ d|dictsort }} {{ d.keys()|list }} {{ d.values()|list }} {{ d.get('zz', 5) }} {{ "
      "d['items'] }}",
      "{{ d|items|list }} {{ d.items is callable }} {{ d|tojson }} {{ d|tojson(indent=2) }}",
      "{{ msgs|selectattr('role', 'equalto', 'user')|list }} {{ msgs|rejectattr('role', 'eq', "
      "'user')|map(attribute='content')|join }}",
      "{{ msgs|map(attribute='role')|join(', ') }} {{ l|map('string')|join('-') }} {{ "
      "l|select('odd')|list }} {{ l|reject('odd')|list }}",
      "{{ l|selectattr('x')|list }}",
      "{{ msgs|selectattr('role')|length }}",
      "{% if msgs|selectattr('role', 'equalto', 'nobody') %}truthy{% endif %}",
      "{{ n is odd }}{{ n is even }}{{ f is float }}{{ n is integer }}{{ true is number }}{{ true "
      "is integer }}{{ s is sequence }}{{ d is mapping }}",
      "{{ x is defined }}{{ x is undefined }}{{ x is iterable }}{{ x is sequence }}{{ none is none "
      "}}{{ x is none }}",
      "{{ x }}|{{ x|length }}|{{ x|default('dflt') }}|{{ x|list }}|{{ x|join }}|{{ x|trim }}|{% "
      "for i in x %}no{% endfor %}",
      "{{ x.y }}",
      "{{ x + 1 }}",
      "{{ none.attr }}|{{ n.attr }}|{{ none['k'] }}",
      "{{ 'a' ~ 1 ~ none ~ x ~ [1] }}",
      "{{ 1 if false }}|{{ 1 if true else 2 }}|{{ 'y' if x is defined else 'n' }}",
      "{{ 1 < 2 < 3 }}{{ 1 < 3 < 2 }}{{ 'a' in 'abc' }}{{ 'z' not in ['a'] }}{{ 'a' in d }}{{ 1 == "
      "1.0 }}{{ true == 1 }}",
      "{{ [1, 2] == [1, 2] }}{{ (1, 2) == [1, 2] }}{{ {'a': 1} == {'a': 1} }}{{ x == x }}{{ none "
      "== x }}",
      "{{ 'a' < 'b' }}{{ [1, 2] < [1, 3] }}",
      "{{ 'a' < 1 }}",
      "{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %}",
      "{% for m in msgs %}{{ loop.index0 }}{{ loop.revindex }}{{ loop.first }}{{ loop.length }}{{ "
      "loop.previtem is defined }}{{ loop.nextitem.role }}{{ loop.cycle('x', 'y') }}|{% endfor %}",
      "{% for c in 'héllo' %}{{ c }}.{% endfor %}{% for k in d %}{{ k }}{% endfor %}",
      "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set t = (1, 'x') %}{{ t }}{{ t[1] }}",
      "{% set ns = namespace(a=1, b=[]) %}{% set ns.b = ns.b + [ns.a] %}{{ ns.b }}{{ ns.c is "
      "defined }}",
      "{% macro m(a, b=2) %}{{ a }}-{{ b }}-{{ c }}{% endmacro %}{% set c = 'late' %}{{ m(1) }}{{ "
      "m(b=5, a=3) }}",
      "{% macro rec(n) %}{% if n > 0 %}{{ n }}{{ rec(n - 1) }}{% endif %}{% endmacro %}{{ rec(5) "
      "}}",
      "{% set x = 1 %}{% if true %}{% set x = 2 %}{% endif %}{{ x }}{% for i in [1] %}{% set x = 3 "
      "%}{% endfor %}{{ x }}",
      "{% with a = 5 %}{{ a }}{% endwith %}{{ a }}",
      "  {%- if true -%}  x  {%- endif -%}  \n  y\n",
      "a\n    {% if true %}\n    b\n    {% endif %}\n    {# c #}\n  {{ 'd' }}\n",
      "{% if true %}x{% endif %}\n\n{%+ if true %}\ny{% endif +%}\nz",
      "{% raw %}\n  {{ raw }} {% if %}\n{% endraw %}\nafter",
      "{{ 'x' }}\n{% set y = 1 %}\n  {% for i in [1, 2] %}\n    {{ i }}\n  {% endfor %}\nend\n",
      "{{ '\\n\\t\\u00e9\\x41\\\\ \\'' }}|{{ \"a\" 'b' }}|{{ 'tab\\there' }}",
      "{{ [1, [2, 'x'], {'k': none}] }}{{ {'a': (1, 2)} }}{{ \"a'b\" }}{{ ['a\"b', \"c'd\", "
      "'e\\'f\"g'] }}",
      "{{ 'a\\nb'|indent }}|{{ 'a\\n\\nb\\n'|indent(2) }}|{{ 'a\\nb'|indent(2, true) }}|{{ "
      "'x\\n\\ny'|indent(1, blank=true) }}",
      "{{ '<a href=\"x\">'|e }} {{ '<b>'|safe }} {{ 'a'|safe + '<' }} {{ '<' + 'a'|safe }} {{ "
      "('<'|e) ~ '<' }}",
      "{{ 3.7|int }} {{ '42'|int }} {{ 'x'|int }} {{ '3.5'|float }} {{ 2.567|round(2) }} {{ "
      "2.5|round }} {{ 3|round }} {{ -3|abs }}",
      "{{ 2.5|round(0, 'floor') }} {{ 2.1|round(0, 'ceil') }} {{ '1e3'|float }} {{ 'abc'|int(7) }}",
      "{{ [1, 2, 3, 4, 5]|batch(2)|list }} {{ 'one two  three'|wordcount }} {{ 'ab'|center(6) }}|",
      "{{ 'a' * 3 }} {{ 'x'.join(['a', 'b']) }} {{ ', '.join(l|map('string')) }} {{ '{} and "
      "{}'.format(1, 'b') }}",
      "{{ 'Hello World'.title() }} {{ 'hello'.capitalize() }} {{ ' x '.lstrip() }}|{{ ' x "
      "'.rstrip() }}|",
      "{{ range(3)|list }} {{ range(1, 10, 3)|list }} {{ range(5, 0, -2)|list }}",
      "{{ dict(a=1, b='x') }} {{ namespace(a=1).a }}",
      "{{ [1, 2, 3][-1] }} {{ [1, 2, 3][5] }} {{ 'abc'[-1] }} {{ [1, 2, 3][:-1] }} {{ [1, 2, "
      "3][::2] }} {{ 'abcdef'[1:4] }}",
      "{% for i in range(10) if i is even %}{{ i }}{% if loop.last %}!{% endif %}{% endfor %}",
      "{{ msgs[0].role }}{{ msgs[0]['content'] }}{{ msgs.0.role }}{{ msgs[5] is defined }}",
      "{% set out = [] %}{{ out }}{% set out = out + ['a'] %}{{ out|length }}",
      "{{ 'abc' is lower }}{{ 'ABC' is upper }}{{ 'x' is escaped }}{{ 'x'|e is escaped }}{{ 1 is "
      "sameas 1 }}",
      "{{ -2 ** 2 }} {{ (-2) ** 2 }} {{ 2 ** -1 }} {{ 2 + 3 * 4 - 1 }} {{ (2 + 3) * 4 }} {{ 10 - 2 "
      "- 3 }} {{ 2 ** 3 ** 2 }}",
      "{{ not true or true }} {{ not (true or true) }} {{ 0 or 'x' }} {{ 1 and 'y' }} {{ '' and 1 "
      "}} {{ x or 'fallback' }}",
      "{{ 'ab' ~ 'cd'|upper }} {{ -3|abs }} {{ 1 + 2|string }}",
      "{{ l|join(', ', attribute='x') }}",
      "{{ l|sum(start=10) }} {{ msgs|map(attribute='missing', default='dd')|list }}",
      "{{ 'aXbXc'.split('X', maxsplit=1) }} {{ 'x'.replace('', '-') }} {{ 'abcabc'.count('b') }} "
      "{{ 'abc'.index('c') }}",
      "{{ 1.5e300 * 1e10 }} {{ 100000000000000000.0 }} {{ 1e16 }} {{ 1e15 }} {{ 0.0001 }} {{ "
      "0.00001 }} {{ 1/3 }}",
      "{{ {'x': 1.0, 'y': 1e20, 'z': -0.5}|tojson }} {{ 'é\\u2028\"\\x01'|tojson }} {{ [1, "
      "'a']|tojson(separators=(',', ':')) }} {{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }}",
      "{{ x|tojson }}",
      "{{ '%s-%d' % ('a', 3) }}|{{ '%05.2f' % f }}|{{ '%r %s' % (s, none) }}|{{ '%(a)s/%(b)03d' % "
      "d }}|{{ '100%%' % () }}",
      "{{ '%x %X %#x %#o %o' % (255, 255, -255, 8, n) }}|{{ '%+05d|% d|%-4d|%.3d' % (3, 3, -3, 5) "
      "}}|{{ '%e %g %G' % (12345.678, 0.00001, 1e20) }}",
      "{{ '%5s|%-5s|%.2s|%c%c' % ('ab', 'ab', u, 65, 'é') }}|{{ '%d %i' % (3.9, -3.9) }}|{{ '%s' % "
      "d }}|{{ 'no args' % d }}",
      "{{ '%s %s' % (1,) }}",
      "{{ '%s' % (1, 2) }}",
      "{{ '%d' % 'x' }}",
      "{{ '%5%' % (1,) }}",
      "{{ '%s=%d'|format('a', 3) }}|{{ '%(k)s'|format(k='v') }}|{{ '%s'|format(k='v') }}",
      "{{ '%s'|format(1, k=2) }}",
      "{{ 'Hello wide world of words'|truncate(12) }}|{{ 'Hello wide world of words'|truncate(12, "
      "true) }}|{{ 'héllo wörld'|truncate(5, end='~', leeway=0) }}|{{ 'short'|truncate(3) }}|{{ "
      "'nospacesatallhere'|truncate(9, leeway=0) }}",
      "{{ 'abc'|truncate(2) }}",
      // An unknown filter or test inside an if (or an inline if) fails only when evaluated.
      "{% if false %}{{ x|nosuchfilter }}{% elif n is nosuchtest %}{% endif %}ok",
      "{% if true %}{{ x|nosuchfilter }}{% endif %}",
      "{{ x|nosuchfilter if false else 2 }}|{{ 1 if true else x|nosuchfilter }}",
      "{{ x|nosuchfilter }}ok",
      "{% if false %}{% for i in [1] %}{{ i|nosuchfilter }}{% endfor %}{% endif %}ok",
      "{% if false %}{% macro m() %}{{ 1|nosuchfilter }}{% endmacro %}{% endif %}ok",
      "{% if false and x is nosuchtest %}a{% endif %}ok",
      "{{ loop }}",
      "{{ raise_exception('boom') }}",
      "{% for i in range(3) %}{{ i }}{% endfor %}{{ i }}",
      "{{ msgs|first|attr('role') }} {{ (msgs|last).content }} {{ "
      "msgs|map(attribute='role')|unique|list }}",
      "{{ l|sort(attribute='x') }}",
      "{{ msgs|sort(attribute='role', reverse=true)|map(attribute='content')|list }}",
      "{% set s %}\n  inner {{ n }}\n{% endset %}[{{ s }}]",
      "{% filter trim %}\n   padded   \n{% endfilter %}|{% filter indent(2) %}a\nb{% endfilter %}",
      "{{ s[0:5]|lower|replace('h', 'J') }} {{ 'x' if s else 'y' }}",
      "{{ 'abc'|list }} {{ d|list }} {{ ''|first }} {{ 'abc'|first }} {{ 'abc'|last }}",
      "{{ [none, 0, '', 'a', 1]|select|list }} {{ [none, 0, 'a']|reject|list }} {{ [1, "
      "2]|select('equalto', 2)|list }}",
      "{{ l|select('in', [1, 2])|list }} {{ l|select('gt', 1)|list }} {{ l|select('divisibleby', "
      "3)|list }}",
      "{{ [{'a': 1}, {'b': 2}]|selectattr('a', 'defined')|list }} {{ [{'a': 1}, {'b': "
      "2}]|rejectattr('a', 'undefined')|list }}",
      // Call blocks, caller() with arguments, and a macro's varargs / kwargs.
      "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}"
      "{% call wrap('b') %}bold {{ n }}{% endcall %}",
      "{% macro each(items) %}{% for i in items %}[{{ caller(i, loop.index) }}]{% endfor %}{% "
      "endmacro %}"
      "{% call(x, k=0) each(l) %}{{ k }}:{{ x }}{% endcall %}",
      "{% macro opt() %}{% if caller is defined %}{{ caller() }}{% else %}none{% endif %}{% "
      "endmacro %}"
      "{{ opt() }}|{% call opt() %}given{% endcall %}",
      "{% macro m(a, b=2) %}{{ a }} {{ b }} {{ varargs }} {{ kwargs }}{% endmacro %}"
      "{{ m(1) }}|{{ m(1, 3, 4, 5) }}|{{ m(1, c=6, b=7) }}|{{ m(1, 2, a=8) }}",
      "{% macro v() %}{{ varargs|join(',') }}{% endmacro %}{{ v('x', 'y') }}",
      "{% macro plain(a) %}{{ a }}{% endmacro %}{{ plain(1, 2) }}",
      "{% macro plain(a) %}{{ a }}{% endmacro %}{{ plain(1, z=2) }}",
      "{% macro plain(a) %}{{ a }}{% endmacro %}{% call plain(1) %}x{% endcall %}",
      "{% macro kw() %}{{ kwargs.x }}{% endmacro %}{{ kw(x=1, y=2) }}",
      "{% macro outer() %}{% macro inner() %}{{ caller() }}{% endmacro %}{{ inner() }}{% endmacro "
      "%}"
      "{% call outer() %}deep{% endcall %}",
      "{% call n %}x{% endcall %}",
      "{% macro m(a, b=2) %}{{ a }}-{{ b }}{% endmacro %}{{ m(*l[:2]) }}|{{ m(**{'a': 5}) }}|"
      "{{ m(1, **{'b': 9}) }}|{{ '%s %s'|format(*l[1:]) }}|{{ [1,2]|join(*['+']) }}|{{ range(*[1, "
      "4])|list }}",
      "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(**l) }}",
      "{{ m(**d, *l) }}",
      "{{ {'a': 1}.items()|list }} {{ {'a': {'b': 'c'}}.a.b }} {{ {1: 'int key'}[1] }} {{ {none: "
      "1} }}",
  };
  Json batch = Json::array();
  for (const std::string& s : snippets) batch.push_back(Json{{"template", s}, {"context", context}});
  std::filesystem::path input = std::filesystem::temp_directory_path() /
                                ("ferry_chat_template_snippets_" + std::to_string(::getpid()) + ".json");
  {
    std::ofstream out(input, std::ios::binary);
    out << batch.dump();
  }
  testing::CommandResult r = testing::RunCommand(
      std::string("/usr/bin/python3 ") + FERRY_SOURCE_DIR +
      "/tests/reference/render_chat_template.py --batch " + input.string());
  std::filesystem::remove(input);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  Json results = Json::parse(r.out);
  ASSERT_EQ(results.size(), snippets.size());
  for (size_t i = 0; i < snippets.size(); ++i) {
    SCOPED_TRACE(snippets[i]);
    absl::StatusOr<std::string> got = Render(snippets[i], context);
    if (results[i]["ok"].get<bool>()) {
      EXPECT_TRUE(got.ok()) << got.status();
      if (got.ok()) EXPECT_EQ(*got, results[i]["output"].get<std::string>());
    } else {
      EXPECT_FALSE(got.ok()) << "python: " << results[i]["error"].get<std::string>()
                             << "\nFerry: " << *got;
    }
  }
}

}  // namespace
}  // namespace ferry
