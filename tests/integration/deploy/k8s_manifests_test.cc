// Renders every kustomization under deploy/k8s with `kubectl kustomize` and
// checks what a schema check and a reviewer would: kinds and apiVersions,
// selectors that match the pods' labels, container ports that are the ports
// the binaries listen on given their --config (from the rendered ConfigMap)
// and environment, probes, images, resources and the security context.
// Skips when kubectl (or python3-yaml, used to turn YAML into JSON) is
// missing; scripts/setup installs both.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/process_util.h"
#include "tools/config_file.h"

namespace ferry {
namespace {

using Json = nlohmann::json;
using testing::CommandResult;
using testing::RunCommand;

const std::map<std::string, std::string> kApiVersions = {
    {"Deployment", "apps/v1"},
    {"StatefulSet", "apps/v1"},
    {"Service", "v1"},
    {"ConfigMap", "v1"},
    {"Secret", "v1"},
    {"ServiceAccount", "v1"},
    {"PersistentVolumeClaim", "v1"},
    {"HorizontalPodAutoscaler", "autoscaling/v2"},
    {"PodDisruptionBudget", "policy/v1"},
};

std::string Str(const Json& j, const std::string& pointer) {
  const Json::json_pointer p(pointer);
  if (!j.contains(p) || !j.at(p).is_string()) return "";
  return j.at(p).get<std::string>();
}

bool Subset(const Json& selector, const Json& labels) {
  if (!selector.is_object() || selector.empty() || !labels.is_object()) return false;
  for (const auto& [k, v] : selector.items()) {
    if (!labels.contains(k) || labels[k] != v) return false;
  }
  return true;
}

int PortOf(const std::string& host_port) {
  const size_t colon = host_port.rfind(':');
  if (colon == std::string::npos) return -1;
  try {
    return std::stoi(host_port.substr(colon + 1));
  } catch (...) {
    return -1;
  }
}

struct Rendered {
  std::string name;
  Json objects = Json::array();
  std::vector<const Json*> Of(const std::string& kind) const {
    std::vector<const Json*> out;
    for (const Json& o : objects) {
      if (o.value("kind", "") == kind) out.push_back(&o);
    }
    return out;
  }
  const Json* Find(const std::string& kind, const std::string& name) const {
    for (const Json& o : objects) {
      if (o.value("kind", "") == kind && Str(o, "/metadata/name") == name) return &o;
    }
    return nullptr;
  }
  std::vector<const Json*> Workloads() const {
    std::vector<const Json*> out = Of("Deployment");
    for (const Json* s : Of("StatefulSet")) out.push_back(s);
    return out;
  }
};

// The flags `ferry ROLE --help` lists.
std::set<std::string> FlagsOf(const std::string& role) {
  static std::map<std::string, std::set<std::string>> cache;
  if (auto it = cache.find(role); it != cache.end()) return it->second;
  CommandResult help = RunCommand(testing::FerryBinary() + " " + role + " --help");
  EXPECT_EQ(help.exit_code, 0) << role;
  std::set<std::string> flags;
  size_t pos = 0;
  while ((pos = help.out.find("  --", pos)) != std::string::npos) {
    pos += 4;
    const size_t end = help.out.find_first_of(" \n", pos);
    flags.insert(help.out.substr(pos, end - pos));
  }
  cache[role] = flags;
  return flags;
}

class K8sManifestsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (RunCommand("command -v kubectl >/dev/null").exit_code != 0) {
      GTEST_SKIP() << "kubectl is not installed (scripts/setup installs Debian's kubernetes-client); skipping";
    }
    if (RunCommand("/usr/bin/python3 -c 'import yaml' 2>/dev/null").exit_code != 0) {
      GTEST_SKIP() << "python3-yaml is not installed (scripts/setup installs it); skipping";
    }
  }

  static Rendered Render(const std::string& rel) {
    Rendered r;
    r.name = rel;
    const std::string dir = std::string(FERRY_SOURCE_DIR) + "/deploy/k8s/" + rel;
    const std::string yaml = ::testing::TempDir() + "/ferry_kustomize_" + std::to_string(::getpid()) + ".yaml";
    CommandResult render = RunCommand("kubectl kustomize '" + dir + "' > '" + yaml + "'", true);
    EXPECT_EQ(render.exit_code, 0) << "kubectl kustomize " << rel << ":\n" << render.out;
    CommandResult out = RunCommand(
        "/usr/bin/python3 -c 'import sys, yaml, json; "
        "json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)' < '" + yaml + "'");
    std::remove(yaml.c_str());
    EXPECT_EQ(out.exit_code, 0) << rel << ": the rendered YAML does not parse";
    // kustomize may print deprecation warnings before the JSON.
    const size_t start = out.out.find('[');
    if (out.exit_code == 0 && start != std::string::npos) {
      r.objects = Json::parse(out.out.substr(start), nullptr, false);
    }
    EXPECT_TRUE(r.objects.is_array() && !r.objects.empty()) << rel << ": " << out.out;
    if (!r.objects.is_array()) r.objects = Json::array();
    return r;
  }

  static void CheckAll(const Rendered& r);
  static void CheckContainer(const Rendered& r, const Json& workload, const Json& container);
};

// What a container's ferry process is given: the role, then the flags from
// its --config file (in the rendered ConfigMap), the environment (literal
// values) and its arguments, in that order.
struct Effective {
  std::string role;
  std::map<std::string, std::string> flags;
};

Effective EffectiveFlags(const Rendered& r, const Json& workload, const Json& container) {
  Effective e;
  const Json args = container.value("args", Json::array());
  EXPECT_FALSE(args.empty()) << Str(workload, "/metadata/name") << ": no args";
  if (args.empty()) return e;
  e.role = args[0].get<std::string>();
  std::string config_path;
  for (size_t i = 1; i + 1 < args.size(); ++i) {
    if (args[i] == "--config") config_path = args[i + 1].get<std::string>();
  }
  EXPECT_FALSE(config_path.empty()) << Str(workload, "/metadata/name") << ": no --config";
  // The config file comes from a ConfigMap volume mounted at its directory.
  const std::string dir = config_path.substr(0, config_path.rfind('/'));
  const std::string file = config_path.substr(config_path.rfind('/') + 1);
  std::string volume;
  for (const Json& m : container.value("volumeMounts", Json::array())) {
    if (m.value("mountPath", "") == dir) volume = m.value("name", "");
  }
  std::string configmap;
  for (const Json& v : workload["spec"]["template"]["spec"].value("volumes", Json::array())) {
    if (v.value("name", "") == volume && v.contains("configMap")) configmap = Str(v, "/configMap/name");
  }
  const Json* cm = r.Find("ConfigMap", configmap);
  EXPECT_NE(cm, nullptr) << Str(workload, "/metadata/name") << ": --config " << config_path
                         << " is not in a ConfigMap volume";
  if (cm == nullptr) return e;
  const std::string text = Str(*cm, "/data/" + file);
  EXPECT_FALSE(text.empty()) << configmap << " has no " << file;
  auto entries = ParseConfig(text);
  EXPECT_TRUE(entries.ok()) << configmap << "/" << file << ": " << entries.status();
  const std::set<std::string> known = FlagsOf(e.role);
  if (entries.ok()) {
    for (const ConfigEntry& entry : *entries) {
      EXPECT_TRUE(known.count(entry.key)) << file << ": '" << entry.key << "' is not a flag of ferry " << e.role;
      e.flags[entry.key] = entry.value;
    }
  }
  for (const Json& env : container.value("env", Json::array())) {
    const std::string name = env.value("name", "");
    if (name.rfind("FERRY_", 0) != 0 || !env.contains("value")) continue;
    for (const std::string& flag : known) {
      if (EnvVarForFlag(flag) == name) e.flags[flag] = env["value"].get<std::string>();
    }
  }
  for (size_t i = 1; i + 1 < args.size(); ++i) {
    const std::string a = args[i].get<std::string>();
    if (a.rfind("--", 0) == 0 && a != "--config") e.flags[a.substr(2)] = args[i + 1].get<std::string>();
  }
  return e;
}

void K8sManifestsTest::CheckContainer(const Rendered& r, const Json& workload, const Json& container) {
  const std::string where = r.name + ": " + Str(workload, "/metadata/name") + "/" + container.value("name", "");
  SCOPED_TRACE(where);
  const Effective e = EffectiveFlags(r, workload, container);
  ASSERT_TRUE(e.role == "gateway" || e.role == "scheduler" || e.role == "worker" || e.role == "serve") << e.role;

  // Ports: the serving port and the metrics port, and nothing else.
  std::map<std::string, int> ports;  // container port name -> number
  for (const Json& p : container.value("ports", Json::array())) ports[p.value("name", "")] = p.value("containerPort", 0);
  auto flag = [&](const std::string& name) { return e.flags.count(name) ? e.flags.at(name) : std::string(); };
  const int serving = e.role == "serve" ? std::atoi(flag("port").c_str()) : PortOf(flag("listen"));
  const std::string serving_name = (e.role == "serve" || e.role == "gateway") ? "http" : "grpc";
  ASSERT_GT(serving, 0) << "the config gives no fixed listening port";
  EXPECT_EQ(ports[serving_name], serving) << "containerPort '" << serving_name << "' is not the port ferry listens on";
  std::set<int> expected = {serving};
  const int metrics = std::atoi(flag("metrics-port").c_str());
  if (metrics > 0) {
    EXPECT_EQ(ports["metrics"], metrics) << "containerPort 'metrics' is not --metrics-port";
    expected.insert(metrics);
  }
  for (const auto& [name, number] : ports) EXPECT_TRUE(expected.count(number)) << "stray containerPort " << name;
  auto resolve = [&](const Json& port) -> int {
    if (port.is_number()) return port.get<int>();
    return ports.count(port.get<std::string>()) ? ports.at(port.get<std::string>()) : -1;
  };

  // Probes: HTTP /health and /ready for the HTTP roles, gRPC health otherwise.
  for (const char* probe : {"startupProbe", "livenessProbe", "readinessProbe"}) {
    ASSERT_TRUE(container.contains(probe)) << "no " << probe;
    const Json& p = container[probe];
    if (serving_name == "http") {
      ASSERT_TRUE(p.contains("httpGet")) << probe;
      EXPECT_EQ(resolve(p["httpGet"]["port"]), serving) << probe;
      const std::string path = Str(p, "/httpGet/path");
      EXPECT_EQ(path, std::string(probe) == "readinessProbe" ? "/ready" : "/health") << probe;
    } else {
      ASSERT_TRUE(p.contains("grpc")) << probe;
      EXPECT_EQ(resolve(p["grpc"]["port"]), serving) << probe;
    }
  }
  const Json& annotations = workload["spec"]["template"]["metadata"].value("annotations", Json::object());
  EXPECT_EQ(annotations.value("prometheus.io/scrape", ""), "true");
  const int scrape_port = std::atoi(annotations.value("prometheus.io/port", "0").c_str());
  EXPECT_TRUE(scrape_port == metrics || (metrics == 0 && scrape_port == serving))
      << "prometheus.io/port " << scrape_port << " serves no /metrics";

  // Image, resources, security.
  const std::string image = container.value("image", "");
  EXPECT_NE(image.find(':'), std::string::npos) << "image without a tag: " << image;
  EXPECT_EQ(image.find(":latest"), std::string::npos) << image;
  const bool gpu = container.contains(Json::json_pointer("/resources/limits/nvidia.com~1gpu"));
  EXPECT_NE(image.find(gpu ? "-cuda" : "-cpu"), std::string::npos) << image << (gpu ? " on a GPU" : " without a GPU");
  for (const char* kind : {"requests", "limits"}) {
    for (const char* res : {"cpu", "memory"}) {
      EXPECT_TRUE(container.contains(Json::json_pointer(std::string("/resources/") + kind + "/" + res)))
          << "no resources." << kind << "." << res;
    }
  }
  EXPECT_EQ(container.value(Json::json_pointer("/securityContext/allowPrivilegeEscalation"), true), false);
  EXPECT_EQ(container.value(Json::json_pointer("/securityContext/readOnlyRootFilesystem"), false), true);
  const Json& pod = workload["spec"]["template"]["spec"];
  EXPECT_EQ(pod.value(Json::json_pointer("/securityContext/runAsNonRoot"), false), true);
  EXPECT_NE(pod.value(Json::json_pointer("/securityContext/runAsUser"), 0), 0);
  EXPECT_EQ(pod.value("serviceAccountName", ""), "ferry");
  ASSERT_NE(r.Find("ServiceAccount", "ferry"), nullptr);

  // Addresses given in the environment name Services of this deployment.
  if (e.flags.count("scheduler")) {
    const std::string s = e.flags.at("scheduler");
    const Json* svc = r.Find("Service", s.substr(0, s.rfind(':')));
    ASSERT_NE(svc, nullptr) << "--scheduler " << s << " is no Service";
    bool has_port = false;
    for (const Json& p : (*svc)["spec"]["ports"]) has_port |= p.value("port", 0) == PortOf(s);
    EXPECT_TRUE(has_port) << "--scheduler " << s;
    const Json* sched = r.Find("Deployment", s.substr(0, s.rfind(':')));
    ASSERT_NE(sched, nullptr);
  }
  if (e.role == "worker") {
    ASSERT_EQ(workload.value("kind", ""), "StatefulSet");
    const std::string advertise = flag("advertise");
    EXPECT_NE(advertise.find("$(POD_NAME).$(FERRY_WORKER_SERVICE)."), std::string::npos) << advertise;
    EXPECT_EQ(PortOf(advertise), serving) << "--advertise " << advertise;
    EXPECT_EQ(flag("worker-service"), "");  // not a flag: only used to build the address
    std::string service;
    for (const Json& env : container["env"]) {
      if (env.value("name", "") == "FERRY_WORKER_SERVICE") service = env.value("value", "");
    }
    EXPECT_EQ(service, Str(workload, "/spec/serviceName"));
    const std::string role = flag("role");
    EXPECT_EQ(role, Str(workload, "/spec/template/metadata/labels/ferry.io~1worker-role"));
    // preStop drains within the grace period.
    const Json command = container.value(Json::json_pointer("/lifecycle/preStop/exec/command"), Json::array());
    ASSERT_FALSE(command.empty()) << "no preStop";
    const std::string line = command.back().get<std::string>();
    EXPECT_NE(line.find("ferry drain"), std::string::npos) << line;
    const size_t t = line.find("--timeout ");
    ASSERT_NE(t, std::string::npos) << line;
    const int drain_s = std::atoi(line.c_str() + t + 10);
    EXPECT_GT(pod.value("terminationGracePeriodSeconds", 30), drain_s);
    EXPECT_TRUE(FlagsOf("drain").count("timeout") && FlagsOf("drain").count("worker"));
  }
}

void K8sManifestsTest::CheckAll(const Rendered& r) {
  SCOPED_TRACE(r.name);
  for (const Json& o : r.objects) {
    const std::string kind = o.value("kind", "");
    ASSERT_TRUE(kApiVersions.count(kind)) << "unexpected kind " << kind << " (no Role or RoleBinding: no extra rights)";
    EXPECT_EQ(o.value("apiVersion", ""), kApiVersions.at(kind)) << kind;
    EXPECT_FALSE(Str(o, "/metadata/name").empty()) << kind;
    EXPECT_EQ(Str(o, "/metadata/labels/app.kubernetes.io~1name"), "ferry") << kind << " " << Str(o, "/metadata/name");
  }
  for (const Json* sa : r.Of("ServiceAccount")) EXPECT_EQ(sa->value("automountServiceAccountToken", true), false);
  ASSERT_EQ(r.Of("Secret").size(), 1u);

  const std::vector<const Json*> workloads = r.Workloads();
  ASSERT_FALSE(workloads.empty());
  for (const Json* w : workloads) {
    const Json& selector = (*w)["spec"]["selector"]["matchLabels"];
    const Json& labels = (*w)["spec"]["template"]["metadata"]["labels"];
    EXPECT_TRUE(Subset(selector, labels)) << Str(*w, "/metadata/name") << ": selector does not match its pods";
    // No two workloads select each other's pods.
    for (const Json* other : workloads) {
      if (other == w) continue;
      EXPECT_FALSE(Subset(selector, (*other)["spec"]["template"]["metadata"]["labels"]))
          << Str(*w, "/metadata/name") << " also selects the pods of " << Str(*other, "/metadata/name");
    }
    const Json& containers = (*w)["spec"]["template"]["spec"]["containers"];
    ASSERT_EQ(containers.size(), 1u);
    CheckContainer(r, *w, containers[0]);
  }
  // Services select exactly one workload's pods, on ports those pods have.
  for (const Json* svc : r.Of("Service")) {
    std::vector<const Json*> selected;
    for (const Json* w : workloads) {
      if (Subset((*svc)["spec"]["selector"], (*w)["spec"]["template"]["metadata"]["labels"])) selected.push_back(w);
    }
    ASSERT_EQ(selected.size(), 1u) << "Service " << Str(*svc, "/metadata/name");
    const Json& c = (*selected[0])["spec"]["template"]["spec"]["containers"][0];
    for (const Json& p : (*svc)["spec"]["ports"]) {
      bool found = false;
      for (const Json& cp : c.value("ports", Json::array())) {
        found |= p["targetPort"].is_string() ? cp.value("name", "") == p["targetPort"].get<std::string>()
                                             : cp.value("containerPort", 0) == p["targetPort"].get<int>();
      }
      EXPECT_TRUE(found) << "Service " << Str(*svc, "/metadata/name") << " targetPort " << p["targetPort"];
    }
  }
  for (const Json* ss : r.Of("StatefulSet")) {
    const Json* headless = r.Find("Service", Str(*ss, "/spec/serviceName"));
    ASSERT_NE(headless, nullptr) << Str(*ss, "/metadata/name") << ": no Service " << Str(*ss, "/spec/serviceName");
    EXPECT_EQ(Str(*headless, "/spec/clusterIP"), "None");
    EXPECT_TRUE(Subset((*headless)["spec"]["selector"], (*ss)["spec"]["template"]["metadata"]["labels"]));
  }
  for (const Json* pdb : r.Of("PodDisruptionBudget")) {
    int matched = 0;
    for (const Json* w : workloads) {
      matched += Subset((*pdb)["spec"]["selector"]["matchLabels"], (*w)["spec"]["template"]["metadata"]["labels"]);
    }
    EXPECT_EQ(matched, 1) << "PodDisruptionBudget " << Str(*pdb, "/metadata/name");
  }
  for (const Json* hpa : r.Of("HorizontalPodAutoscaler")) {
    EXPECT_NE(r.Find(Str(*hpa, "/spec/scaleTargetRef/kind"), Str(*hpa, "/spec/scaleTargetRef/name")), nullptr);
    EXPECT_GE((*hpa)["spec"].value("maxReplicas", 0), (*hpa)["spec"].value("minReplicas", 1));
  }
  for (const Json* pvc : r.Of("PersistentVolumeClaim")) {
    EXPECT_FALSE(Str(*pvc, "/spec/resources/requests/storage").empty());
  }
}

std::string RoleOf(const Json& w) {
  return Str(w, "/spec/template/metadata/labels/ferry.io~1worker-role");
}

bool HasGpu(const Json& w) {
  return w.contains(Json::json_pointer("/spec/template/spec/containers/0/resources/limits/nvidia.com~1gpu"));
}

TEST_F(K8sManifestsTest, BaseIsACpuClusterOfGatewaySchedulerAndMixedWorkers) {
  const Rendered r = Render("base");
  CheckAll(r);
  ASSERT_NE(r.Find("Deployment", "ferry-gateway"), nullptr);
  ASSERT_NE(r.Find("Deployment", "ferry-scheduler"), nullptr);
  EXPECT_EQ(Str(*r.Find("Deployment", "ferry-scheduler"), "/spec/strategy/type"), "Recreate");
  EXPECT_EQ((*r.Find("Deployment", "ferry-scheduler"))["spec"].value("replicas", 0), 1);
  const Json* worker = r.Find("StatefulSet", "ferry-worker");
  ASSERT_NE(worker, nullptr);
  EXPECT_EQ(RoleOf(*worker), "mixed");
  EXPECT_FALSE(HasGpu(*worker));
  EXPECT_NE(r.Find("HorizontalPodAutoscaler", "ferry-gateway"), nullptr);
  EXPECT_NE(r.Find("PodDisruptionBudget", "ferry-scheduler"), nullptr);
  EXPECT_EQ(r.Of("ConfigMap").size(), 1u);
}

TEST_F(K8sManifestsTest, CpuAllInOneRunsServeAlone) {
  const Rendered r = Render("overlays/cpu-allinone");
  CheckAll(r);
  ASSERT_EQ(r.Workloads().size(), 1u);
  const Json* serve = r.Find("Deployment", "ferry");
  ASSERT_NE(serve, nullptr);
  EXPECT_EQ((*serve)["spec"]["template"]["spec"]["containers"][0]["args"][0], "serve");
  EXPECT_TRUE(r.Of("StatefulSet").empty());
}

TEST_F(K8sManifestsTest, GpuColocatedGivesEachMixedWorkerAGpu) {
  const Rendered r = Render("overlays/gpu-colocated");
  CheckAll(r);
  const Json* worker = r.Find("StatefulSet", "ferry-worker");
  ASSERT_NE(worker, nullptr);
  EXPECT_EQ(RoleOf(*worker), "mixed");
  EXPECT_TRUE(HasGpu(*worker));
  EXPECT_FALSE(HasGpu(*r.Find("Deployment", "ferry-gateway")));
  EXPECT_FALSE(HasGpu(*r.Find("Deployment", "ferry-scheduler")));
}

TEST_F(K8sManifestsTest, GpuDisaggregatedHasPrefillAndDecodeSetsSizedApart) {
  const Rendered r = Render("overlays/gpu-disaggregated");
  CheckAll(r);
  const Json* prefill = r.Find("StatefulSet", "ferry-prefill");
  const Json* decode = r.Find("StatefulSet", "ferry-worker");
  ASSERT_NE(prefill, nullptr);
  ASSERT_NE(decode, nullptr);
  EXPECT_EQ(RoleOf(*prefill), "prefill");
  EXPECT_EQ(RoleOf(*decode), "decode");
  EXPECT_TRUE(HasGpu(*prefill));
  EXPECT_TRUE(HasGpu(*decode));
  EXPECT_NE((*prefill)["spec"].value("replicas", 0), (*decode)["spec"].value("replicas", 0));
}

}  // namespace
}  // namespace ferry
