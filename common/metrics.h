// A small Prometheus metrics registry: counters, gauges and histograms with
// labels, rendered in the text exposition format 0.0.4 (# HELP, # TYPE).
// Every call is thread-safe. Families and their children live as long as the
// registry, so the pointers handed out stay valid and can be cached on hot
// paths (updating a child is a few atomic operations, no lock).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace ferry {

class Counter {
 public:
  // `v` must be >= 0 (negative increments are ignored).
  void Increment(double v = 1.0);
  // Mirrors a monotonic count kept elsewhere (e.g. an engine's statistics).
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double v) { value_.fetch_add(v, std::memory_order_relaxed); }
  void Sub(double v) { value_.fetch_add(-v, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  // `bounds` are the upper bounds of the buckets, strictly increasing; +Inf
  // is implicit.
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);

  const std::vector<double>& bounds() const { return bounds_; }
  // Non-cumulative count of bucket i (i == bounds().size() is +Inf).
  uint64_t bucket_count(size_t i) const { return counts_[i].load(std::memory_order_relaxed); }
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  std::atomic<uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

// A metric name plus its children, one per combination of label values.
template <typename T>
class MetricFamily {
 public:
  MetricFamily(std::vector<std::string> label_names, std::function<std::unique_ptr<T>()> make)
      : label_names_(std::move(label_names)), make_(std::move(make)) {}

  // The child for these label values (created on first use). Missing values
  // are empty strings; extra values are ignored.
  T* WithLabels(const std::vector<std::string>& values);
  // The child with no labels.
  T* Get() { return WithLabels({}); }

  const std::vector<std::string>& label_names() const { return label_names_; }
  // Calls `fn(label_values, child)` for every child, in label order.
  void ForEach(const std::function<void(const std::vector<std::string>&, const T&)>& fn) const;

 private:
  std::vector<std::string> label_names_;
  std::function<std::unique_ptr<T>()> make_;
  mutable absl::Mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<T>> children_ ABSL_GUARDED_BY(mu_);
};

using CounterFamily = MetricFamily<Counter>;
using GaugeFamily = MetricFamily<Gauge>;
using HistogramFamily = MetricFamily<Histogram>;

class MetricsRegistry {
 public:
  MetricsRegistry();
  ~MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Registering a name twice returns the first family (the help, labels and
  // buckets of the first registration win; a different metric type under the
  // same name is a programming error and returns null).
  CounterFamily* AddCounter(const std::string& name, const std::string& help,
                            std::vector<std::string> label_names = {});
  GaugeFamily* AddGauge(const std::string& name, const std::string& help,
                        std::vector<std::string> label_names = {});
  HistogramFamily* AddHistogram(const std::string& name, const std::string& help,
                                std::vector<double> bounds, std::vector<std::string> label_names = {});

  // Runs before every Render(), e.g. to copy a component's statistics into
  // gauges at scrape time.
  void AddCollector(std::function<void()> collector);

  // Text exposition format 0.0.4, families sorted by name.
  std::string Render() const;

  // Latency buckets in seconds, from 1 ms to about 2 minutes.
  static std::vector<double> LatencyBuckets();
  // start, start*factor, ... (`count` bounds), e.g. for token counts.
  static std::vector<double> ExponentialBuckets(double start, double factor, int count);

 private:
  struct Entry;
  Entry* Find(const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<Entry>> entries_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void()>> collectors_ ABSL_GUARDED_BY(mu_);
};

// Escapes a label value for the text format (backslash, quote, newline).
std::string EscapeLabelValue(const std::string& v);

// ---- template implementation ----

template <typename T>
T* MetricFamily<T>::WithLabels(const std::vector<std::string>& values) {
  std::vector<std::string> key(label_names_.size());
  for (size_t i = 0; i < key.size() && i < values.size(); ++i) key[i] = values[i];
  absl::MutexLock lock(&mu_);
  auto it = children_.find(key);
  if (it == children_.end()) it = children_.emplace(std::move(key), make_()).first;
  return it->second.get();
}

template <typename T>
void MetricFamily<T>::ForEach(
    const std::function<void(const std::vector<std::string>&, const T&)>& fn) const {
  absl::MutexLock lock(&mu_);
  for (const auto& [labels, child] : children_) fn(labels, *child);
}

}  // namespace ferry
