package driver

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	users := UserList{"ok@example.com", "platform-cert@example.com", "timeout@example.com", "ok2@example.com"}
	runFor(t, t.Context(), RunConfig{Login: classLogin, Users: users, Rate: 1000, Count: 40, Registerer: reg})

	want := `
# HELP edgesim_driver_errors_total Failed logins by the class of their first failing step.
# TYPE edgesim_driver_errors_total counter
edgesim_driver_errors_total{class="platform-cert"} 10
edgesim_driver_errors_total{class="timeout"} 10
# HELP edgesim_driver_in_flight Logins under way.
# TYPE edgesim_driver_in_flight gauge
edgesim_driver_in_flight 0
# HELP edgesim_driver_logins_started_total Logins started.
# TYPE edgesim_driver_logins_started_total counter
edgesim_driver_logins_started_total 40
# HELP edgesim_driver_logins_total Logins finished, by result (success or failure).
# TYPE edgesim_driver_logins_total counter
edgesim_driver_logins_total{result="failure"} 20
edgesim_driver_logins_total{result="success"} 20
# HELP edgesim_driver_target_rate Logins per second asked for; 0 in the closed model and once scheduling has stopped.
# TYPE edgesim_driver_target_rate gauge
edgesim_driver_target_rate 0
`
	names := []string{"edgesim_driver_errors_total", "edgesim_driver_in_flight", "edgesim_driver_logins_started_total",
		"edgesim_driver_logins_total", "edgesim_driver_target_rate"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]uint64{}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "edgesim_driver_step_duration_seconds":
			for _, m := range mf.GetMetric() {
				key := ""
				for _, l := range m.GetLabel() {
					key += l.GetValue() + "/"
				}
				counts[key] = m.GetHistogram().GetSampleCount()
			}
		case "edgesim_driver_cpu_seconds_total":
			if v := mf.GetMetric()[0].GetCounter().GetValue(); v <= 0 {
				t.Errorf("cpu seconds %v", v)
			}
		}
	}
	for key, n := range map[string]uint64{
		"success/login/": 20, "failure/login/": 20, "success/srv/": 40, "success/tls/": 20,
		"failure/tls/": 20, "success/identity/": 20, "failure/identity/": 0,
	} {
		if counts[key] != n {
			t.Errorf("step_duration_seconds{%s} count %d, want %d", key, counts[key], n)
		}
	}
	if n, _ := testutil.GatherAndCount(reg, "edgesim_driver_cpu_seconds_total"); n != 1 {
		t.Errorf("cpu_seconds_total: %d series", n)
	}
}

func TestMetricsRegisterTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := RunConfig{Login: classLogin, Users: testUsers, Rate: 1, Count: 1, Registerer: reg}
	if _, err := NewRunner(cfg); err != nil {
		t.Fatal(err)
	}
	_, err := NewRunner(cfg)
	var are prometheus.AlreadyRegisteredError
	if err == nil || !strings.Contains(err.Error(), "register metrics") || !errors.As(err, &are) {
		t.Errorf("second registration: %v", err)
	}
}
