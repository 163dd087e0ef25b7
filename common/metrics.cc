#include "common/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace ferry {

void Counter::Increment(double v) {
  if (v > 0) value_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0);
}

void Histogram::Observe(double v) {
  size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

struct MetricsRegistry::Entry {
  std::string help;
  std::variant<std::unique_ptr<CounterFamily>, std::unique_ptr<GaugeFamily>,
               std::unique_ptr<HistogramFamily>>
      family;
};

namespace {

std::string FormatNumber(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.0f", v);
    return buf;
  }
  // The shortest form that reads back as the same double.
  char buf[32];
  for (int precision = 15; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

std::string EscapeHelp(const std::string& help) {
  std::string out;
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// {a="x",b="y"} plus an optional extra label (le for histogram buckets).
std::string LabelText(const std::vector<std::string>& names, const std::vector<std::string>& values,
                      const std::string& extra_name = "", const std::string& extra_value = "") {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    out += out.empty() ? "{" : ",";
    out += names[i] + "=\"" + EscapeLabelValue(values[i]) + "\"";
  }
  if (!extra_name.empty()) {
    out += out.empty() ? "{" : ",";
    out += extra_name + "=\"" + extra_value + "\"";
  }
  if (!out.empty()) out += "}";
  return out;
}

void RenderCounters(const std::string& name, const CounterFamily& f, std::string& out) {
  f.ForEach([&](const std::vector<std::string>& labels, const Counter& c) {
    out += name + LabelText(f.label_names(), labels) + " " + FormatNumber(c.value()) + "\n";
  });
}

void RenderGauges(const std::string& name, const GaugeFamily& f, std::string& out) {
  f.ForEach([&](const std::vector<std::string>& labels, const Gauge& g) {
    out += name + LabelText(f.label_names(), labels) + " " + FormatNumber(g.value()) + "\n";
  });
}

void RenderHistograms(const std::string& name, const HistogramFamily& f, std::string& out) {
  f.ForEach([&](const std::vector<std::string>& labels, const Histogram& h) {
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= h.bounds().size(); ++i) {
      cumulative += h.bucket_count(i);
      std::string le = i < h.bounds().size() ? FormatNumber(h.bounds()[i]) : "+Inf";
      out += name + "_bucket" + LabelText(f.label_names(), labels, "le", le) + " " +
             std::to_string(cumulative) + "\n";
    }
    std::string l = LabelText(f.label_names(), labels);
    out += name + "_sum" + l + " " + FormatNumber(h.sum()) + "\n";
    // The count is the last cumulative bucket, so the two always agree even
    // while observations race with rendering.
    out += name + "_count" + l + " " + std::to_string(cumulative) + "\n";
  });
}

}  // namespace

std::string EscapeLabelValue(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

MetricsRegistry::MetricsRegistry() = default;
MetricsRegistry::~MetricsRegistry() = default;

MetricsRegistry::Entry* MetricsRegistry::Find(const std::string& name) {
  auto it = entries_.find(name);
  return it == entries_.end() ? nullptr : it->second.get();
}

CounterFamily* MetricsRegistry::AddCounter(const std::string& name, const std::string& help,
                                           std::vector<std::string> label_names) {
  absl::MutexLock lock(&mu_);
  if (Entry* e = Find(name)) {
    auto* f = std::get_if<std::unique_ptr<CounterFamily>>(&e->family);
    return f == nullptr ? nullptr : f->get();
  }
  auto family = std::make_unique<CounterFamily>(std::move(label_names),
                                                [] { return std::make_unique<Counter>(); });
  CounterFamily* raw = family.get();
  entries_[name] = std::make_unique<Entry>(Entry{help, std::move(family)});
  return raw;
}

GaugeFamily* MetricsRegistry::AddGauge(const std::string& name, const std::string& help,
                                       std::vector<std::string> label_names) {
  absl::MutexLock lock(&mu_);
  if (Entry* e = Find(name)) {
    auto* f = std::get_if<std::unique_ptr<GaugeFamily>>(&e->family);
    return f == nullptr ? nullptr : f->get();
  }
  auto family =
      std::make_unique<GaugeFamily>(std::move(label_names), [] { return std::make_unique<Gauge>(); });
  GaugeFamily* raw = family.get();
  entries_[name] = std::make_unique<Entry>(Entry{help, std::move(family)});
  return raw;
}

HistogramFamily* MetricsRegistry::AddHistogram(const std::string& name, const std::string& help,
                                               std::vector<double> bounds,
                                               std::vector<std::string> label_names) {
  absl::MutexLock lock(&mu_);
  if (Entry* e = Find(name)) {
    auto* f = std::get_if<std::unique_ptr<HistogramFamily>>(&e->family);
    return f == nullptr ? nullptr : f->get();
  }
  std::sort(bounds.begin(), bounds.end());
  bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
  auto family = std::make_unique<HistogramFamily>(
      std::move(label_names), [bounds] { return std::make_unique<Histogram>(bounds); });
  HistogramFamily* raw = family.get();
  entries_[name] = std::make_unique<Entry>(Entry{help, std::move(family)});
  return raw;
}

void MetricsRegistry::AddCollector(std::function<void()> collector) {
  absl::MutexLock lock(&mu_);
  collectors_.push_back(std::move(collector));
}

std::string MetricsRegistry::Render() const {
  std::vector<std::function<void()>> collectors;
  {
    absl::MutexLock lock(&mu_);
    collectors = collectors_;
  }
  // Collectors update metrics, which may register families: run them unlocked.
  for (const auto& c : collectors) c();
  std::string out;
  absl::MutexLock lock(&mu_);
  for (const auto& [name, e] : entries_) {
    out += "# HELP " + name + " " + EscapeHelp(e->help) + "\n";
    if (auto* c = std::get_if<std::unique_ptr<CounterFamily>>(&e->family)) {
      out += "# TYPE " + name + " counter\n";
      RenderCounters(name, **c, out);
    } else if (auto* g = std::get_if<std::unique_ptr<GaugeFamily>>(&e->family)) {
      out += "# TYPE " + name + " gauge\n";
      RenderGauges(name, **g, out);
    } else if (auto* h = std::get_if<std::unique_ptr<HistogramFamily>>(&e->family)) {
      out += "# TYPE " + name + " histogram\n";
      RenderHistograms(name, **h, out);
    }
  }
  return out;
}

std::vector<double> MetricsRegistry::LatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75,
          1.0,   2.5,    5.0,   7.5,  10.0,  20.0, 40.0,  80.0, 120.0};
}

std::vector<double> MetricsRegistry::ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> out;
  double v = start;
  for (int i = 0; i < count; ++i, v *= factor) out.push_back(v);
  return out;
}

}  // namespace ferry
