#include "benchmarks/loadgen/report.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include <unistd.h>

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

// A .png plot comes from gnuplot when it is installed; without it the SVG
// is written next to it under the same name.
TEST(ReportTest, PngPlotUsesGnuplotOrFallsBackToSvg) {
  std::vector<SweepPoint> points(1);
  points[0].request_rate = 2;
  points[0].summary.output_throughput = 50;
  points[0].summary.ttft_values_ms = {1, 2, 3};
  const std::string base = ::testing::TempDir() + "/report_plot_" + std::to_string(::getpid());
  ASSERT_TRUE(WritePlot(base + ".png", points).ok());
  const bool gnuplot = std::system("command -v gnuplot >/dev/null 2>&1") == 0;
  if (gnuplot) {
    EXPECT_GT(std::filesystem::file_size(base + ".png"), 0u);
  } else {
    EXPECT_FALSE(std::filesystem::exists(base + ".png"));
    EXPECT_GT(std::filesystem::file_size(base + ".svg"), 0u);
  }
  ASSERT_TRUE(WritePlot(base + "-direct.svg", points).ok());
  EXPECT_GT(std::filesystem::file_size(base + "-direct.svg"), 0u);
  EXPECT_FALSE(WritePlot("/nonexistent-dir/x.svg", points).ok());
  std::remove((base + ".png").c_str());
  std::remove((base + ".svg").c_str());
  std::remove((base + "-direct.svg").c_str());
}

}  // namespace
}  // namespace ferry::loadgen
