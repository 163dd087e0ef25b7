#include "benchmarks/loadgen/report.h"

#include <cmath>

#include "gtest/gtest.h"

namespace ferry::loadgen {
namespace {

TEST(ReportTest, SvgHasBothPanelsAndOneCurvePerRate) {
  std::vector<SweepPoint> points(2);
  points[0].request_rate = 1;
  points[1].request_rate = INFINITY;
  for (SweepPoint& p : points) {
    p.summary.output_throughput = 100 * (1 + p.summary.ttft_values_ms.size());
    p.summary.ttft_ms.median = 10;
    p.summary.ttft_ms.p99 = 30;
    p.summary.ttft_values_ms = {5, 10, 30};
  }
  std::string svg = SvgPlot(points);
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("Latency vs throughput"), std::string::npos);
  EXPECT_NE(svg.find("TTFT CDF"), std::string::npos);
  EXPECT_NE(svg.find("rate inf"), std::string::npos);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
}

TEST(ReportTest, JsonCarriesTheSummary) {
  BenchSummary s;
  s.completed = 3;
  s.errors["timeout"] = 1;
  s.ttft_ms.p99 = 12.5;
  nlohmann::json j = SummaryJson(s);
  EXPECT_EQ(j["completed"], 3);
  EXPECT_EQ(j["errors"]["timeout"], 1);
  EXPECT_EQ(j["ttft_ms"]["p99"], 12.5);
}

}  // namespace
}  // namespace ferry::loadgen
