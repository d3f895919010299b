package deploy

import (
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// promConfig mirrors the part of Prometheus's configuration file used here.
type promConfig struct {
	Global struct {
		ScrapeInterval     string `json:"scrape_interval"`
		EvaluationInterval string `json:"evaluation_interval"`
	} `json:"global"`
	RuleFiles     []string `json:"rule_files"`
	ScrapeConfigs []struct {
		JobName        string `json:"job_name"`
		MetricsPath    string `json:"metrics_path"`
		ScrapeInterval string `json:"scrape_interval"`
		KubernetesSD   []struct {
			Role       string `json:"role"`
			Namespaces struct {
				Names []string `json:"names"`
			} `json:"namespaces"`
		} `json:"kubernetes_sd_configs"`
		RelabelConfigs []struct {
			SourceLabels []string `json:"source_labels"`
			Regex        string   `json:"regex"`
			Action       string   `json:"action"`
			TargetLabel  string   `json:"target_label"`
		} `json:"relabel_configs"`
	} `json:"scrape_configs"`
}

type promRules struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Record string `json:"record"`
			Expr   string `json:"expr"`
		} `json:"rules"`
	} `json:"groups"`
}

func readStrict(t *testing.T, file string, v any) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

var metaLabel = regexp.MustCompile(`^__meta_kubernetes_pod_label_(.+)$`)

// TestPrometheusConfig checks that each scrape job keeps exactly the pods of its workload and
// their metrics port: the pod-label relabelling is applied to each workload's labels.
func TestPrometheusConfig(t *testing.T) {
	var cfg promConfig
	readStrict(t, "prometheus/prometheus.yml", &cfg)
	for _, f := range cfg.RuleFiles {
		var r promRules
		readStrict(t, path.Join("prometheus", f), &r)
	}
	bs := builds(t)
	var pods []workload
	for _, dir := range []string{"k8s/base", "k8s/driver"} {
		pods = append(pods, workloads(bs[dir])...)
	}
	kept := map[string]string{}
	for _, sc := range cfg.ScrapeConfigs {
		if len(sc.KubernetesSD) != 1 || sc.KubernetesSD[0].Role != "pod" {
			t.Errorf("job %s: want one kubernetes_sd_configs of role pod", sc.JobName)
			continue
		}
		for _, w := range pods {
			keep := slices.Contains(sc.KubernetesSD[0].Namespaces.Names, w.namespace)
			for _, r := range sc.RelabelConfigs {
				if r.Action != "keep" || len(r.SourceLabels) == 0 || !metaLabel.MatchString(r.SourceLabels[0]) {
					continue
				}
				var vals []string
				for _, l := range r.SourceLabels {
					m := metaLabel.FindStringSubmatch(l)
					if m == nil {
						t.Fatalf("job %s: keep on %s", sc.JobName, l)
					}
					for k, v := range w.labels {
						if regexp.MustCompile(`[^a-zA-Z0-9_]`).ReplaceAllString(k, "_") == m[1] {
							vals = append(vals, v)
						}
					}
				}
				if !regexp.MustCompile("^(?:" + r.Regex + ")$").MatchString(strings.Join(vals, ";")) {
					keep = false
				}
			}
			if !keep {
				continue
			}
			if prev, ok := kept[w.where]; ok {
				t.Errorf("%s: scraped by both %s and %s", w.where, prev, sc.JobName)
			}
			kept[w.where] = sc.JobName
			if containerPort(w.spec, "metrics") == nil || !slices.ContainsFunc(sc.RelabelConfigs, func(r struct {
				SourceLabels []string `json:"source_labels"`
				Regex        string   `json:"regex"`
				Action       string   `json:"action"`
				TargetLabel  string   `json:"target_label"`
			}) bool {
				return r.Action == "keep" && slices.Equal(r.SourceLabels, []string{"__meta_kubernetes_pod_container_port_name"}) && r.Regex == "metrics"
			}) {
				t.Errorf("job %s: does not keep only the metrics port of %s", sc.JobName, w.where)
			}
		}
	}
	for _, w := range pods {
		if kept[w.where] == "" {
			t.Errorf("%s: no scrape job keeps its pods", w.where)
		}
	}
}
