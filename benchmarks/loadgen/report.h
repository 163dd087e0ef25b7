// How `ferry bench` shows its results: a table for people (with what the
// injected faults did), JSON for machines, and an SVG with the
// latency-throughput curve of a sweep and the TTFT CDF of each point.
#pragma once

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "benchmarks/loadgen/fault_injector.h"
#include "benchmarks/loadgen/metrics.h"

namespace ferry::loadgen {

// One run of a sweep: the offered rate (infinity: all at once) and its summary.
struct SweepPoint {
  double request_rate = 0;
  BenchSummary summary;
};

void PrintTable(FILE* out, const SweepPoint& point, const Slo& slo);
// A one-line-per-rate table of a sweep.
void PrintSweepTable(FILE* out, const std::vector<SweepPoint>& points);

// What the migrations and kills of a run did (fault_injector.h), below its
// table; nothing when the run injected no faults.
void PrintFaults(FILE* out, const FaultReport& report, const FaultOptions& options);

nlohmann::json SummaryJson(const BenchSummary& summary);
nlohmann::json DistributionJson(const Distribution& d);

// Writes an SVG: median and P99 TTFT and mean TPOT against output throughput
// over the sweep (left), and the TTFT CDF of each point (right). Internal
// error when the file cannot be written.
absl::Status WriteSvgPlot(const std::string& path, const std::vector<SweepPoint>& points);
// WriteSvgPlot for a path ending in .svg (or anything but .png); for .png,
// the same plot drawn by gnuplot when it is installed. Without gnuplot a
// .png request writes the SVG next to it (same name, .svg) and says so on
// stderr.
absl::Status WritePlot(const std::string& path, const std::vector<SweepPoint>& points);
// The SVG text WriteSvgPlot writes.
std::string SvgPlot(const std::vector<SweepPoint>& points);

std::string RateLabel(double request_rate);

}  // namespace ferry::loadgen
