#include "tools/config_file.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"

namespace ferry {
namespace {

using Json = nlohmann::json;

absl::Status LineError(int line, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("line ", line, ": ", Sv(what)));
}

std::string NormalizeKey(std::string_view key) {
  std::string out(key);
  for (char& c : out) {
    if (c == '_') c = '-';
  }
  return out;
}

bool IsKeyChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '_' || c == '.';
}

std::string_view TrimLeft(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  return s;
}

std::string_view Trim(std::string_view s) {
  s = TrimLeft(s);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// After a value only blanks or a comment may follow.
bool OnlyCommentLeft(std::string_view rest) {
  rest = Trim(rest);
  return rest.empty() || rest.front() == '#';
}

// Reads the quoted scalar starting at s[*pos] (a ' or "); leaves *pos past
// the closing quote.
absl::Status ReadQuoted(std::string_view s, size_t* pos, int line, std::string* out) {
  const char quote = s[*pos];
  size_t i = *pos + 1;
  out->clear();
  while (i < s.size()) {
    const char c = s[i];
    if (c == quote) {
      if (quote == '\'' && i + 1 < s.size() && s[i + 1] == '\'') {
        out->push_back('\'');
        i += 2;
        continue;
      }
      *pos = i + 1;
      return absl::OkStatus();
    }
    if (quote == '"' && c == '\\') {
      if (i + 1 >= s.size()) break;
      const char e = s[i + 1];
      switch (e) {
        case '\\': out->push_back('\\'); break;
        case '"': out->push_back('"'); break;
        case '/': out->push_back('/'); break;
        case 'n': out->push_back('\n'); break;
        case 't': out->push_back('\t'); break;
        case 'r': out->push_back('\r'); break;
        default:
          return LineError(line, absl::StrCat("unsupported escape '\\", std::string(1, e), "' in a quoted value"));
      }
      i += 2;
      continue;
    }
    out->push_back(c);
    ++i;
  }
  return LineError(line, "a quoted value is not closed on its line");
}

// Characters that start YAML constructs this subset does not read.
absl::Status CheckPlainStart(std::string_view v, int line) {
  if (v.empty()) return absl::OkStatus();
  const char c = v.front();
  if (c == '&' || c == '*') return LineError(line, "anchors and aliases are not supported");
  if (c == '!') return LineError(line, "tags are not supported");
  if (c == '|' || c == '>') return LineError(line, "block scalars (| and >) are not supported");
  if (c == '{') return LineError(line, "nested mappings are not supported");
  if (c == '[' || c == ']' || c == '}') return LineError(line, "nested lists are not supported");
  if (c == '%' || c == '@' || c == '`') {
    return LineError(line, absl::StrCat("a plain value cannot start with '", std::string(1, c), "'; quote it"));
  }
  if (v == "~" || v == "null" || v == "Null" || v == "NULL") {
    return LineError(line, "a null value; write \"\" for an empty one");
  }
  if (v.find(": ") != std::string_view::npos || v.back() == ':') {
    return LineError(line, "nested mappings are not supported (quote a value that contains ': ')");
  }
  return absl::OkStatus();
}

// One scalar (quoted or plain) that makes up the rest of a line.
absl::StatusOr<std::string> ReadLineScalar(std::string_view s, int line) {
  s = TrimLeft(s);
  if (!s.empty() && (s.front() == '"' || s.front() == '\'')) {
    size_t pos = 0;
    std::string out;
    if (auto st = ReadQuoted(s, &pos, line, &out); !st.ok()) return st;
    if (!OnlyCommentLeft(s.substr(pos))) return LineError(line, "unexpected text after a quoted value");
    return out;
  }
  // A plain scalar ends at a comment (" #").
  if (!s.empty() && s.front() == '#') return std::string();
  const size_t hash = s.find(" #");
  std::string_view v = Trim(hash == std::string_view::npos ? s : s.substr(0, hash));
  if (auto st = CheckPlainStart(v, line); !st.ok()) return st;
  return std::string(v);
}

// A flow list `[a, "b", c]` of scalars.
absl::StatusOr<std::vector<std::string>> ReadFlowList(std::string_view s, int line) {
  std::vector<std::string> items;
  size_t i = 1;  // past '['
  auto skip_blanks = [&] {
    while (i < s.size() && s[i] == ' ') ++i;
  };
  skip_blanks();
  if (i < s.size() && s[i] == ']') {
    ++i;
  } else {
    while (true) {
      skip_blanks();
      if (i >= s.size()) return LineError(line, "a list is not closed on its line");
      std::string item;
      if (s[i] == '"' || s[i] == '\'') {
        if (auto st = ReadQuoted(s, &i, line, &item); !st.ok()) return st;
      } else {
        const size_t start = i;
        while (i < s.size() && s[i] != ',' && s[i] != ']') ++i;
        std::string_view v = Trim(s.substr(start, i - start));
        if (v.empty()) return LineError(line, "an empty item in a list");
        if (auto st = CheckPlainStart(v, line); !st.ok()) return st;
        if (v.find(" #") != std::string_view::npos) return LineError(line, "a list is not closed on its line");
        item = std::string(v);
      }
      items.push_back(std::move(item));
      skip_blanks();
      if (i >= s.size()) return LineError(line, "a list is not closed on its line");
      if (s[i] == ']') {
        ++i;
        break;
      }
      if (s[i] != ',') return LineError(line, "expected ',' or ']' in a list");
      ++i;
    }
  }
  if (!OnlyCommentLeft(s.substr(i))) return LineError(line, "unexpected text after a list");
  return items;
}

absl::StatusOr<std::vector<ConfigEntry>> ParseYamlSubset(std::string_view text) {
  std::vector<ConfigEntry> entries;
  std::set<std::string> seen;
  // The key whose block list is being read (its items follow on "- " lines).
  int list_entry = -1;
  std::vector<std::string> list_items;
  bool seen_content = false;
  bool ended = false;

  auto finish_list = [&]() -> absl::Status {
    if (list_entry < 0) return absl::OkStatus();
    ConfigEntry& e = entries[static_cast<size_t>(list_entry)];
    if (list_items.empty()) return LineError(e.line, absl::StrCat("key '", e.key, "' has no value"));
    e.value = absl::StrJoin(list_items, ",");
    list_entry = -1;
    list_items.clear();
    return absl::OkStatus();
  };

  int line = 0;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view raw = text.substr(start, end - start);
    start = end + 1;
    ++line;
    if (!raw.empty() && raw.back() == '\r') raw.remove_suffix(1);
    size_t indent = 0;
    while (indent < raw.size() && (raw[indent] == ' ' || raw[indent] == '\t')) {
      if (raw[indent] == '\t') return LineError(line, "tabs are not allowed for indentation");
      ++indent;
    }
    std::string_view rest = Trim(raw.substr(indent));
    if (rest.empty() || rest.front() == '#') continue;
    if (ended) return LineError(line, "text after the document end '...'");
    if (indent == 0 && (rest == "---" || rest.rfind("--- #", 0) == 0)) {
      if (seen_content) return LineError(line, "only one document is supported");
      seen_content = true;
      continue;
    }
    if (indent == 0 && rest == "...") {
      ended = true;
      continue;
    }
    seen_content = true;
    if (rest.front() == '-' && (rest.size() == 1 || rest[1] == ' ')) {
      if (list_entry < 0) return LineError(line, "a list item that belongs to no key");
      const std::string_view item_text = TrimLeft(rest.substr(1));
      if (!item_text.empty() && (item_text.front() == '-' || item_text.front() == '[')) {
        return LineError(line, "nested lists are not supported");
      }
      auto item = ReadLineScalar(item_text, line);
      if (!item.ok()) return item.status();
      if (item->empty() && (item_text.empty() || item_text.front() == '#')) {
        return LineError(line, "an empty list item");
      }
      list_items.push_back(std::move(*item));
      continue;
    }
    if (indent > 0) return LineError(line, "unexpected indentation (nested mappings are not supported)");
    if (auto st = finish_list(); !st.ok()) return st;

    size_t colon = 0;
    while (colon < rest.size() && IsKeyChar(rest[colon])) ++colon;
    if (colon == 0 || colon >= rest.size() || rest[colon] != ':' ||
        (colon + 1 < rest.size() && rest[colon + 1] != ' ')) {
      if (rest.front() == '"' || rest.front() == '\'' || rest.front() == '?') {
        return LineError(line, "keys must be plain flag names");
      }
      return LineError(line, "expected 'key: value'");
    }
    ConfigEntry e;
    e.key = NormalizeKey(rest.substr(0, colon));
    e.line = line;
    if (!seen.insert(e.key).second) return LineError(line, absl::StrCat("key '", e.key, "' is given twice"));
    std::string_view value = TrimLeft(rest.substr(colon + 1));
    if (value.empty() || value.front() == '#') {
      entries.push_back(std::move(e));
      list_entry = static_cast<int>(entries.size()) - 1;
      continue;
    }
    if (value.front() == '[') {
      auto items = ReadFlowList(value, line);
      if (!items.ok()) return items.status();
      e.value = absl::StrJoin(*items, ",");
    } else {
      auto v = ReadLineScalar(value, line);
      if (!v.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(v.status().message(), " (key '", e.key, "')"));
      }
      e.value = std::move(*v);
    }
    entries.push_back(std::move(e));
  }
  if (auto st = finish_list(); !st.ok()) return st;
  return entries;
}

absl::StatusOr<std::string> JsonScalar(const Json& v, const std::string& key) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return std::string(v.get<bool>() ? "true" : "false");
  if (v.is_number()) return v.dump();
  if (v.is_null()) return absl::InvalidArgumentError(absl::StrCat("key '", key, "' is null"));
  return absl::InvalidArgumentError(absl::StrCat("key '", key, "': nested objects and lists are not supported"));
}

absl::StatusOr<std::vector<ConfigEntry>> ParseJson(std::string_view text) {
  std::set<std::string> seen;
  std::string duplicate;
  bool too_deep = false;
  // Top-level keys must be unique, and nothing deeper than a list of scalars
  // under a key is kept (so no input builds a deep tree).
  const Json::parser_callback_t callback = [&](int depth, Json::parse_event_t event, Json& parsed) {
    if (event == Json::parse_event_t::key && depth == 1) {
      if (!seen.insert(NormalizeKey(parsed.get<std::string>())).second && duplicate.empty()) {
        duplicate = parsed.get<std::string>();
      }
    }
    if ((event == Json::parse_event_t::object_start && depth >= 1) ||
        (event == Json::parse_event_t::array_start && depth >= 2)) {
      too_deep = true;
      return false;
    }
    return true;
  };
  Json doc;
  try {
    doc = Json::parse(text.begin(), text.end(), callback);
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("not valid JSON: ", e.what()));
  }
  if (!doc.is_object()) return absl::InvalidArgumentError("a JSON config must be one object");
  if (!duplicate.empty()) return absl::InvalidArgumentError(absl::StrCat("key '", duplicate, "' is given twice"));
  if (too_deep) return absl::InvalidArgumentError("nested objects and lists are not supported");
  std::vector<ConfigEntry> entries;
  for (const auto& [key, value] : doc.items()) {
    if (key.empty() || !std::all_of(key.begin(), key.end(), IsKeyChar)) {
      return absl::InvalidArgumentError(absl::StrCat("key '", key, "' is not a flag name"));
    }
    ConfigEntry e;
    e.key = NormalizeKey(key);
    if (value.is_array()) {
      std::vector<std::string> items;
      for (const Json& item : value) {
        auto s = JsonScalar(item, e.key);
        if (!s.ok()) return s.status();
        items.push_back(std::move(*s));
      }
      e.value = absl::StrJoin(items, ",");
    } else {
      auto s = JsonScalar(value, e.key);
      if (!s.ok()) return s.status();
      e.value = std::move(*s);
    }
    entries.push_back(std::move(e));
  }
  return entries;
}

}  // namespace

absl::StatusOr<std::vector<ConfigEntry>> ParseConfig(std::string_view text) {
  if (text.size() > kMaxConfigBytes) {
    return absl::InvalidArgumentError(absl::StrCat("larger than ", kMaxConfigBytes, " bytes"));
  }
  if (text.rfind("\xEF\xBB\xBF", 0) == 0) text.remove_prefix(3);  // UTF-8 byte order mark
  if (text.find('\0') != std::string_view::npos) return absl::InvalidArgumentError("contains a NUL byte");
  size_t first = 0;
  while (first < text.size() && std::isspace(static_cast<unsigned char>(text[first])) != 0) ++first;
  if (first < text.size() && text[first] == '{') return ParseJson(text);
  return ParseYamlSubset(text);
}

absl::StatusOr<std::vector<ConfigEntry>> LoadConfigFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read config file ", path));
  std::string text;
  char buf[65536];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxConfigBytes) break;
  }
  auto entries = ParseConfig(text);
  if (!entries.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("config ", path, ": ", entries.status().message()));
  }
  return entries;
}

std::string EnvVarForFlag(std::string_view flag_name) {
  std::string out = "FERRY_";
  for (char c : flag_name) {
    out.push_back(c == '-' || c == '.' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  }
  return out;
}

}  // namespace ferry
