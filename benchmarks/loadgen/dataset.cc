#include "benchmarks/loadgen/dataset.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"

namespace ferry::loadgen {
namespace {

using Json = nlohmann::json;

constexpr const char* kWords[] = {
    "the",  "time", "people", "water", "story", "house", "light", "river", "small",  "green",
    "city", "road", "friend", "open",  "world", "paper", "table", "music", "winter", "garden",
    "book", "cold", "dream",  "early", "field", "glass", "heart", "learn", "market", "night",
    "rain", "ship", "stone",  "train", "voice", "whole", "young", "bring", "number", "color"};

int Clip(int value, int max) { return max > 0 ? std::min(value, max) : value; }

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("this dataset needs --dataset-path FILE");
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read dataset file ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<BenchRequest> RandomSet(const DatasetOptions& o) {
  std::mt19937_64 rng(o.seed);
  auto range = [&](int len) {
    int lo = std::max(1, static_cast<int>(std::floor(len * (1 - o.range_ratio))));
    int hi = std::max(lo, static_cast<int>(std::ceil(len * (1 + o.range_ratio))));
    return std::uniform_int_distribution<int>(lo, hi)(rng);
  };
  std::vector<BenchRequest> out(o.num_prompts);
  for (int i = 0; i < o.num_prompts; ++i) {
    out[i].input_tokens = range(o.input_len);
    out[i].output_tokens = range(o.output_len);
    out[i].prompt = SyntheticText(out[i].input_tokens, rng());
  }
  return out;
}

std::vector<BenchRequest> PrefixSet(const DatasetOptions& o) {
  std::mt19937_64 rng(o.seed);
  std::vector<std::string> prefixes;
  for (int k = 0; k < std::max(1, o.num_prefixes); ++k) {
    prefixes.push_back(absl::StrCat("System prompt ", k, ": ", SyntheticText(o.prefix_len, rng())));
  }
  std::uniform_int_distribution<size_t> pick(0, prefixes.size() - 1);
  std::vector<BenchRequest> out(o.num_prompts);
  for (int i = 0; i < o.num_prompts; ++i) {
    size_t k = 0;
    // k is picked inside the call so the two draws keep the order they had
    // before k was recorded (argument order is the compiler's), and with it
    // every prompt of a seed.
    out[i].prompt =
        absl::StrCat(prefixes[k = pick(rng)], "\nQuestion: ", SyntheticText(o.input_len, rng()));
    out[i].input_tokens = o.prefix_len + o.input_len;
    out[i].output_tokens = o.output_len;
    out[i].hash_ids = {k};
    out[i].hash_block_tokens = o.prefix_len;
  }
  return out;
}

// A trace timestamp: seconds as a number, or "YYYY-MM-DD HH:MM:SS[.f]" (UTC).
bool ParseTimestamp(absl::string_view field, double* seconds) {
  field = absl::StripAsciiWhitespace(field);
  if (absl::SimpleAtod(field, seconds)) return std::isfinite(*seconds);
  absl::Time t;
  std::string err;
  if (!absl::ParseTime("%Y-%m-%d %H:%M:%E*S", field, absl::UTCTimeZone(), &t, &err)) return false;
  *seconds = absl::ToDoubleSeconds(t - absl::UnixEpoch());
  return true;
}

// Tokens behind each of a Mooncake trace's hash_ids (its README).
constexpr int kMooncakeHashBlockTokens = 512;

absl::StatusOr<std::vector<BenchRequest>> ParseMooncake(const std::string& text,
                                                        const std::string& origin,
                                                        const DatasetOptions& o) {
  std::vector<BenchRequest> out;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    Json j = Json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("timestamp") || !j["timestamp"].is_number() ||
        !j.contains("input_length") || !j["input_length"].is_number_integer() ||
        !j.contains("output_length") || !j["output_length"].is_number_integer()) {
      return absl::InvalidArgumentError(absl::StrCat(
          origin, ":", line_no,
          ": expected {\"timestamp\": MS, \"input_length\": N, \"output_length\": N}"));
    }
    BenchRequest r;
    r.arrival_s = j["timestamp"].get<double>() / 1e3;
    r.input_tokens = j["input_length"].get<int>();
    r.output_tokens = j["output_length"].get<int>();
    if (j.contains("hash_ids")) {
      const Json& ids = j["hash_ids"];
      if (!ids.is_array() || !std::all_of(ids.begin(), ids.end(),
                                          [](const Json& id) { return id.is_number_unsigned(); })) {
        return absl::InvalidArgumentError(
            absl::StrCat(origin, ":", line_no, ": \"hash_ids\" must be a list of integers >= 0"));
      }
      for (const Json& id : ids) r.hash_ids.push_back(id.get<uint64_t>());
      r.hash_block_tokens = kMooncakeHashBlockTokens;
    }
    out.push_back(std::move(r));
    if (o.num_prompts > 0 && static_cast<int>(out.size()) >= o.num_prompts) break;
  }
  return out;
}

absl::StatusOr<std::vector<BenchRequest>> ParseCsv(const std::string& text,
                                                   const std::string& origin,
                                                   const DatasetOptions& o) {
  std::vector<BenchRequest> out;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    std::vector<absl::string_view> f = absl::StrSplit(line, ',');
    double ts = 0;
    int in = 0, out_len = 0;
    bool ok = f.size() >= 3 && ParseTimestamp(f[0], &ts) &&
              absl::SimpleAtoi(absl::StripAsciiWhitespace(f[1]), &in) &&
              absl::SimpleAtoi(absl::StripAsciiWhitespace(f[2]), &out_len) && in >= 0 &&
              out_len >= 0;
    if (!ok) {
      if (out.empty() && line_no == 1 && f.size() >= 3) continue;  // a header row
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ":", line_no,
                       ": expected TIMESTAMP,INPUT_TOKENS,OUTPUT_TOKENS (seconds or "
                       "YYYY-MM-DD HH:MM:SS.f), got '",
                       line.substr(0, 80), "'"));
    }
    BenchRequest r;
    r.arrival_s = ts;
    r.input_tokens = in;
    r.output_tokens = out_len;
    out.push_back(std::move(r));
    if (o.num_prompts > 0 && static_cast<int>(out.size()) >= o.num_prompts) break;
  }
  return out;
}

}  // namespace

std::string SyntheticText(int num_tokens, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, std::size(kWords) - 1);
  std::string s;
  for (int i = 0; i < num_tokens; ++i) {
    if (i > 0) s.push_back(' ');
    s += kWords[pick(rng)];
  }
  return s;
}

absl::StatusOr<std::vector<BenchRequest>> ParseShareGpt(const std::string& text,
                                                        const std::string& origin,
                                                        const DatasetOptions& o) {
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(origin, ": not valid JSON"));
  if (!j.is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": expected a JSON list of {\"conversations\": [...]}"));
  }
  std::vector<BenchRequest> pool;
  for (size_t i = 0; i < j.size(); ++i) {
    const Json& e = j[i];
    if (!e.is_object() || !e.contains("conversations") || !e["conversations"].is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": entry ", i, " has no \"conversations\" list"));
    }
    const Json& turns = e["conversations"];
    for (size_t t = 0; t < turns.size(); ++t) {
      const Json& turn = turns[t];
      if (!turn.is_object() || !turn.contains("value") || !turn["value"].is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat(origin, ": entry ", i, " turn ", t, " has no string \"value\""));
      }
      std::string from = turn.value("from", "");
      if (from != "human" && from != "user") continue;
      BenchRequest r;
      r.prompt = turn["value"].get<std::string>();
      if (r.prompt.empty()) break;
      r.input_tokens = e.contains("prompt_tokens") && e["prompt_tokens"].is_number_integer()
                           ? e["prompt_tokens"].get<int>()
                           : std::max<int>(1, static_cast<int>(r.prompt.size() / 4));
      if (e.contains("response_tokens") && e["response_tokens"].is_number_integer()) {
        r.output_tokens = e["response_tokens"].get<int>();
      } else if (t + 1 < turns.size() && turns[t + 1].is_object() &&
                 turns[t + 1].contains("value") && turns[t + 1]["value"].is_string()) {
        // No tokenizer here: about four characters a token, as for English BPE.
        r.output_tokens = static_cast<int>(turns[t + 1]["value"].get<std::string>().size() / 4);
      } else {
        r.output_tokens = o.output_len;  // prompts-only files carry no reply
      }
      r.output_tokens = std::max(1, Clip(r.output_tokens, o.max_output_len));
      r.input_tokens = Clip(r.input_tokens, o.max_input_len);
      pool.push_back(std::move(r));
      break;
    }
  }
  if (pool.empty())
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": no conversation starts with a human turn"));
  std::mt19937_64 rng(o.seed);
  std::shuffle(pool.begin(), pool.end(), rng);
  std::vector<BenchRequest> out;
  for (int i = 0; i < o.num_prompts; ++i) out.push_back(pool[i % pool.size()]);
  return out;
}

absl::StatusOr<std::vector<BenchRequest>> ParseTrace(const std::string& text,
                                                     const std::string& origin,
                                                     const DatasetOptions& o) {
  size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos)
    return absl::InvalidArgumentError(absl::StrCat(origin, ": empty trace"));
  absl::StatusOr<std::vector<BenchRequest>> rows =
      text[first] == '{' ? ParseMooncake(text, origin, o) : ParseCsv(text, origin, o);
  if (!rows.ok()) return rows.status();
  if (rows->empty())
    return absl::InvalidArgumentError(absl::StrCat(origin, ": no requests in the trace"));
  std::vector<BenchRequest>& out = *rows;
  double t0 = *out.front().arrival_s;
  for (const BenchRequest& r : out) t0 = std::min(t0, *r.arrival_s);
  std::mt19937_64 rng(o.seed);
  for (size_t i = 0; i < out.size(); ++i) {
    BenchRequest& r = out[i];
    r.arrival_s = std::max(0.0, (*r.arrival_s - t0) * o.trace_time_scale);
    r.input_tokens = std::max(1, Clip(r.input_tokens, o.max_input_len));
    r.output_tokens = std::max(1, Clip(r.output_tokens, o.max_output_len));
    r.prompt = SyntheticText(r.input_tokens, rng());
  }
  std::stable_sort(out.begin(), out.end(), [](const BenchRequest& a, const BenchRequest& b) {
    return *a.arrival_s < *b.arrival_s;
  });
  return std::move(out);
}

absl::StatusOr<std::vector<BenchRequest>> LoadDataset(const DatasetOptions& o) {
  if (o.input_len < 1 || o.output_len < 1) {
    return absl::InvalidArgumentError("--input-len and --output-len must be >= 1");
  }
  if (!(o.range_ratio >= 0 && o.range_ratio < 1)) {
    return absl::InvalidArgumentError("--range-ratio must be in [0, 1)");
  }
  if (o.num_prompts < 0) return absl::InvalidArgumentError("--num-prompts must be >= 0");
  if (o.name == "random") return RandomSet(o);
  if (o.name == "prefix") {
    if (o.prefix_len < 1 || o.num_prefixes < 1) {
      return absl::InvalidArgumentError("--prefix-len and --num-prefixes must be >= 1");
    }
    return PrefixSet(o);
  }
  if (o.name == "sharegpt" || o.name == "trace") {
    absl::StatusOr<std::string> text = ReadFile(o.path);
    if (!text.ok()) return text.status();
    return o.name == "sharegpt" ? ParseShareGpt(*text, o.path, o) : ParseTrace(*text, o.path, o);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown --dataset '", o.name, "' (random, sharegpt, prefix or trace)"));
}

}  // namespace ferry::loadgen
