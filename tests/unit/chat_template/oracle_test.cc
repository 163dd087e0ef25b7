// Renders every real chat template in ../shared/testdata/chat_templates with
// Ferry and with python jinja2 (tests/reference/render_chat_template.py)
// over several conversations, and requires byte-identical output, or an
// error from both.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "engine/chat_template/chat_template.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/process_util.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

using Json = nlohmann::ordered_json;

constexpr char kPython[] = "/usr/bin/python3";

std::string ReadFile(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Json Msg(const char* role, Json content) { return Json{{"role", role}, {"content", content}}; }

Json Tools() {
  return Json::parse(R"([
    {"type": "function", "function": {
      "name": "get_weather",
      "description": "Get the current weather in a city.",
      "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name, e.g. Paris"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Unit"},
        "days": {"type": "integer", "description": "Days ahead", "default": 0}},
        "required": ["city"]}}},
    {"type": "function", "function": {
      "name": "search",
      "description": "Search the web",
      "parameters": {"type": "object", "properties": {
        "query": {"type": "string", "description": "What to look for."},
        "sites": {"type": "array", "items": {"type": "string"}, "description": "Limit to sites"}},
        "required": ["query", "sites"]}}}
  ])");
}

Json ToolCall(bool args_as_string) {
  Json args = Json{{"city", "Paris"}, {"unit", "celsius"}};
  return Json{{"id", "call12345"},
              {"type", "function"},
              {"function", {{"name", "get_weather"},
                            {"arguments", args_as_string ? Json(args.dump()) : args}}}};
}

struct Conversation {
  std::string name;
  Json context;
};

std::vector<Conversation> Conversations() {
  auto base = [](Json messages, bool add_generation_prompt) {
    return Json{{"messages", std::move(messages)},
                {"add_generation_prompt", add_generation_prompt},
                {"bos_token", "<s>"},
                {"eos_token", "</s>"},
                // firefunction-v2 expects these two.
                {"functions", "[]"},
                {"datetime", "2024-07-26"}};
  };
  std::vector<Conversation> c;
  c.push_back({"system_user", base(Json::array({Msg("system", "You are helpful."),
                                               Msg("user", "Hello!")}),
                                   true)});
  c.push_back({"user_only_no_prompt", base(Json::array({Msg("user", "Hi there")}), false)});
  c.push_back({"multi_turn", base(Json::array({Msg("user", "What is 2+2?"),
                                              Msg("assistant", "4."),
                                              Msg("user", "And 3+3?")}),
                                  true)});
  c.push_back({"multi_turn_closed",
               base(Json::array({Msg("user", "Hi"), Msg("assistant", "Hello! How can I help?"),
                                 Msg("user", "Tell me a joke."),
                                 Msg("assistant", "<think>hmm</think>Why did the chicken...")}),
                    false)});
  c.push_back({"system_multi_turn",
               base(Json::array({Msg("system", "  Be brief.\n"), Msg("user", "  Hi \n"),
                                 Msg("assistant", "Hey."), Msg("user", "Bye")}),
                    true)});
  c.push_back({"not_alternating", base(Json::array({Msg("user", "a"), Msg("user", "b")}), true)});
  c.push_back({"unicode", base(Json::array({Msg("user", "Grüß dich — 你好 🚀 \"quoted\" 'single' \\ tab\t"),
                                           Msg("assistant", "ok ✓")}),
                               true)});
  c.push_back({"content_parts",
               base(Json::array({Msg("user", Json::array({Json{{"type", "text"}, {"text", "part one"}},
                                                          Json{{"type", "text"}, {"text", "part two"}}}))}),
                    true)});
  c.push_back({"empty_messages", base(Json::array(), true)});
  for (bool as_string : {false, true}) {
    Json messages = Json::array({Msg("system", "You can call tools."),
                                 Msg("user", "Weather in Paris?")});
    Json call = Json{{"role", "assistant"}, {"content", nullptr},
                     {"tool_calls", Json::array({ToolCall(as_string)})}};
    messages.push_back(call);
    messages.push_back(Json{{"role", "tool"}, {"tool_call_id", "call12345"},
                            {"name", "get_weather"}, {"content", "{\"temp\": 21}"}});
    messages.push_back(Msg("assistant", "It is 21 degrees."));
    messages.push_back(Msg("user", "Thanks"));
    Json ctx = base(messages, true);
    ctx["tools"] = Tools();
    c.push_back({as_string ? "tools_string_args" : "tools_object_args", ctx});
  }
  {
    Json ctx = base(Json::array({Msg("user", "Find news")}), true);
    ctx["tools"] = Tools();
    c.push_back({"tools_first_turn", ctx});
  }
  {
    Json ctx = base(Json::array({Msg("user", "Summarize the docs")}), true);
    ctx["documents"] = Json::array({Json{{"title", "A"}, {"text", "First doc."}},
                                    Json{{"title", "B"}, {"text", "Second doc."}}});
    c.push_back({"documents", ctx});
  }
  {
    Json ctx = base(Json::array({Msg("system", "sys"), Msg("user", "Search for cats")}), true);
    ctx["builtin_tools"] = Json::array({"brave_search", "wolfram_alpha"});
    ctx["tools"] = Tools();
    ctx["tools_in_user_message"] = false;
    c.push_back({"builtin_tools", ctx});
  }
  return c;
}

bool HavePythonJinja() {
  return testing::RunCommand(std::string(kPython) + " -c 'import jinja2' 2>/dev/null").exit_code == 0;
}

TEST(ChatTemplateOracleTest, RealTemplatesMatchPythonJinja) {
  FERRY_REQUIRE_SHARED(dir, "testdata/chat_templates");
  if (!HavePythonJinja()) GTEST_SKIP() << kPython << " with jinja2 is not available; skipping";

  std::vector<std::filesystem::path> files;
  // More folders of templates to check (a model collection's), separated
  // by ':', from $FERRY_EXTRA_CHAT_TEMPLATES.
  std::vector<std::string> dirs = {dir};
  if (const char* extra = std::getenv("FERRY_EXTRA_CHAT_TEMPLATES"); extra != nullptr) {
    std::stringstream list(extra);
    for (std::string d; std::getline(list, d, ':');) {
      if (!d.empty()) dirs.push_back(d);
    }
  }
  for (const std::string& d : dirs) {
    for (const auto& e : std::filesystem::directory_iterator(d)) {
      if (e.path().extension() == ".jinja") files.push_back(e.path());
    }
  }
  std::sort(files.begin(), files.end());
  ASSERT_FALSE(files.empty());
  const std::vector<Conversation> conversations = Conversations();

  struct Case {
    std::string file;
    std::string name;
    std::string source;
    const Json* context;
  };
  std::vector<Case> cases;
  Json batch = Json::array();
  for (const auto& f : files) {
    std::string source = ReadFile(f);
    for (const Conversation& c : conversations) {
      cases.push_back({f.filename().string(), f.filename().string() + " / " + c.name, source,
                       &c.context});
      batch.push_back(Json{{"template", source}, {"context", c.context}});
    }
  }
  std::filesystem::path input =
      std::filesystem::temp_directory_path() /
      ("ferry_chat_template_oracle_" + std::to_string(::getpid()) + ".json");
  {
    std::ofstream out(input, std::ios::binary);
    out << batch.dump();
  }
  testing::CommandResult r = testing::RunCommand(
      std::string(kPython) + " " + FERRY_SOURCE_DIR +
      "/tests/reference/render_chat_template.py --batch " + input.string());
  std::filesystem::remove(input);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  Json results = Json::parse(r.out);
  ASSERT_EQ(results.size(), cases.size());

  chat_template::RenderOptions options;
  FakeClock clock(absl::FromCivil(absl::CivilSecond(2024, 7, 26, 12, 34, 56), absl::UTCTimeZone()));
  options.clock = &clock;
  options.time_zone = absl::UTCTimeZone();

  int matched = 0, both_failed = 0;
  std::map<std::string, std::pair<int, int>> per_file;  // identical, rejected by both
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].name);
    auto tmpl = ChatTemplate::Parse(cases[i].source);
    const Json& want = results[i];
    // A template jinja2 cannot parse either (a broken one) fails both ways.
    absl::StatusOr<std::string> got =
        tmpl.ok() ? (*tmpl)->Render(*cases[i].context, options) : tmpl.status();
    if (want["ok"].get<bool>()) {
      EXPECT_TRUE(got.ok()) << "python rendered it, Ferry failed: " << got.status();
      if (!got.ok()) continue;
      EXPECT_EQ(*got, want["output"].get<std::string>());
      matched += *got == want["output"].get<std::string>();
      per_file[cases[i].file].first += *got == want["output"].get<std::string>();
    } else {
      EXPECT_FALSE(got.ok()) << "python failed with " << want["error"].get<std::string>()
                             << "\nFerry rendered:\n" << *got;
      both_failed += !got.ok();
      per_file[cases[i].file].second += !got.ok();
    }
  }
  for (const auto& [file, counts] : per_file) {
    std::printf("  %-55s identical %2d, rejected by both %2d\n", file.c_str(), counts.first,
                counts.second);
  }
  std::printf("chat templates: %zu cases, %d identical renderings, %d rejected by both\n",
              cases.size(), matched, both_failed);
}

}  // namespace
}  // namespace ferry
