#include "common/metrics.h"

#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace ferry {
namespace {

TEST(MetricsTest, RendersCountersGaugesAndHistogramsWithHelpAndType) {
  MetricsRegistry r;
  r.AddCounter("ferry_things_total", "Things counted.", {"kind"})->WithLabels({"a"})->Increment(2);
  r.AddGauge("ferry_level", "A level.")->Get()->Set(1.5);
  Histogram* h = r.AddHistogram("ferry_latency_seconds", "Latency.", {0.1, 1})->Get();
  h->Observe(0.05);
  h->Observe(0.5);
  h->Observe(5);
  std::string text = r.Render();
  EXPECT_NE(text.find("# HELP ferry_things_total Things counted.\n# TYPE ferry_things_total counter\n"
                      "ferry_things_total{kind=\"a\"} 2\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("# TYPE ferry_level gauge\nferry_level 1.5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("ferry_latency_seconds_bucket{le=\"0.1\"} 1\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("ferry_latency_seconds_bucket{le=\"1\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("ferry_latency_seconds_bucket{le=\"+Inf\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("ferry_latency_seconds_sum 5.55\n"), std::string::npos) << text;
  EXPECT_NE(text.find("ferry_latency_seconds_count 3\n"), std::string::npos) << text;
}

TEST(MetricsTest, EscapesLabelValuesAndHelp) {
  MetricsRegistry r;
  r.AddCounter("ferry_x_total", "Line one\nback\\slash", {"v"})->WithLabels({"a\"b\\c\nd"})->Increment();
  std::string text = r.Render();
  EXPECT_NE(text.find("# HELP ferry_x_total Line one\\nback\\\\slash\n"), std::string::npos) << text;
  EXPECT_NE(text.find("ferry_x_total{v=\"a\\\"b\\\\c\\nd\"} 1\n"), std::string::npos) << text;
}

TEST(MetricsTest, SameNameReturnsSameFamilyAndOtherTypeIsRefused) {
  MetricsRegistry r;
  CounterFamily* a = r.AddCounter("ferry_a_total", "A.");
  EXPECT_EQ(a, r.AddCounter("ferry_a_total", "A again."));
  EXPECT_EQ(r.AddGauge("ferry_a_total", "not a gauge"), nullptr);
}

TEST(MetricsTest, CollectorsRunBeforeRendering) {
  MetricsRegistry r;
  Gauge* g = r.AddGauge("ferry_g", "G.")->Get();
  int calls = 0;
  r.AddCollector([&] { g->Set(++calls); });
  EXPECT_NE(r.Render().find("ferry_g 1\n"), std::string::npos);
  EXPECT_NE(r.Render().find("ferry_g 2\n"), std::string::npos);
}

TEST(MetricsTest, ConcurrentUpdatesAreAllCounted) {
  MetricsRegistry r;
  CounterFamily* c = r.AddCounter("ferry_c_total", "C.", {"t"});
  Histogram* h = r.AddHistogram("ferry_h", "H.", {1, 2})->Get();
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10000; ++i) {
        c->WithLabels({std::to_string(t % 2)})->Increment();
        h->Observe(1.5);
      }
      (void)r.Render();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c->WithLabels({"0"})->value() + c->WithLabels({"1"})->value(), 80000);
  EXPECT_EQ(h->count(), 80000u);
}

}  // namespace
}  // namespace ferry
