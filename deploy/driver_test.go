package deploy

import (
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

var shardArg = regexp.MustCompile(`^--shard=\$\(JOB_COMPLETION_INDEX\)/([0-9]+)$`)

func TestDriverJobs(t *testing.T) {
	bs := builds(t)
	services := all[*corev1.Service](everything(bs))
	n := 0
	for dir, b := range bs {
		for _, w := range workloads(b) {
			if w.job == nil {
				continue
			}
			n++
			j := w.job
			c, cmd := edgesimContainer(w)
			if c == nil || cmd != "load" {
				t.Errorf("%s: want edgesim load", w.where)
				continue
			}
			if j.Spec.CompletionMode == nil || *j.Spec.CompletionMode != batchv1.IndexedCompletion {
				t.Errorf("%s: completionMode is not Indexed", w.where)
			}
			var shards []string
			for _, a := range c.Args {
				if strings.HasPrefix(a, "--shard") {
					shards = append(shards, a)
				}
			}
			var m []string
			if len(shards) == 1 {
				m = shardArg.FindStringSubmatch(shards[0])
			}
			if m == nil {
				t.Errorf("%s: shard arguments %q, want one --shard=$(JOB_COMPLETION_INDEX)/N", w.where, shards)
				continue
			}
			N, _ := strconv.Atoi(m[1])
			if j.Spec.Completions == nil || j.Spec.Parallelism == nil || int(*j.Spec.Completions) != N || int(*j.Spec.Parallelism) != N {
				t.Errorf("%s: --shard …/%d but completions %v, parallelism %v", w.where, N, deref(j.Spec.Completions), deref(j.Spec.Parallelism))
			}
			if out, _ := flagValue(c.Args, "out"); !strings.Contains(out, "$(JOB_COMPLETION_INDEX)") {
				t.Errorf("%s: --out=%s: the shards would write the same file", w.where, out)
			}
			if w.spec.RestartPolicy != corev1.RestartPolicyNever {
				t.Errorf("%s: restartPolicy %s: a restarted shard measures a different run", w.where, w.spec.RestartPolicy)
			}
			dur, _ := flagValue(c.Args, "duration")
			drain, _ := flagValue(c.Args, "drain")
			d1, err1 := time.ParseDuration(dur)
			d2, err2 := time.ParseDuration(cmpOr(drain, "30s"))
			if err1 != nil || err2 != nil || j.Spec.ActiveDeadlineSeconds == nil || time.Duration(*j.Spec.ActiveDeadlineSeconds)*time.Second < d1+d2+time.Minute {
				t.Errorf("%s: activeDeadlineSeconds %v: want at least --duration %s + --drain %s + a minute", w.where, deref(j.Spec.ActiveDeadlineSeconds), dur, drain)
			}
			dns, _ := flagValue(c.Args, "dns")
			host, port, _ := net.SplitHostPort(dns)
			ok := slices.ContainsFunc(services, func(s *corev1.Service) bool {
				return s.Name == host && s.Namespace == j.Namespace && slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool {
					return strconv.Itoa(int(p.Port)) == port && p.Protocol == corev1.ProtocolUDP
				})
			})
			if !ok {
				t.Errorf("%s: --dns=%s is no UDP port of a Service in namespace %s", w.where, dns, j.Namespace)
			}
			// The driver logs in as the users the edge beside it serves.
			edgeDir := strings.TrimSuffix(dir, "/driver")
			if dir == "k8s/driver" {
				edgeDir = "k8s/base"
			}
			for _, ew := range workloads(bs[edgeDir]) {
				ec, _ := edgesimContainer(ew)
				for _, f := range []string{"tenants", "config", "users"} {
					a, _ := flagValue(c.Args, f)
					b, _ := flagValue(ec.Args, f)
					if a != b {
						t.Errorf("%s: --%s=%q but the edge in %s has %q", w.where, f, a, edgeDir, b)
					}
				}
			}
		}
	}
	if n < 3 {
		t.Errorf("%d driver Jobs, want the base's and each overlay's", n)
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}
