package deploy

import (
	"fmt"
	"net"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// workload is a pod template: an edge Deployment's or a driver Job's.
type workload struct {
	where     string
	namespace string
	labels    map[string]string
	spec      *corev1.PodSpec
	job       *batchv1.Job // nil for a Deployment
}

func workloads(b *build) []workload {
	var ws []workload
	for _, d := range all[*appsv1.Deployment](b.objects) {
		ws = append(ws, workload{b.dir + ": Deployment " + d.Name, d.Namespace, d.Spec.Template.Labels, &d.Spec.Template.Spec, nil})
	}
	for _, j := range all[*batchv1.Job](b.objects) {
		ws = append(ws, workload{b.dir + ": Job " + j.Name, j.Namespace, j.Spec.Template.Labels, &j.Spec.Template.Spec, j})
	}
	return ws
}

// edgesimContainer returns the container running edgesim and its subcommand.
func edgesimContainer(w workload) (*corev1.Container, string) {
	for i := range w.spec.Containers {
		c := &w.spec.Containers[i]
		if img, _, _ := strings.Cut(path.Base(c.Image), ":"); img == "edgesim" && len(c.Args) > 0 {
			return c, c.Args[0]
		}
	}
	return nil, ""
}

// flagValue returns the value of --name=value in args.
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// everything gathers the objects of every build, for references across kustomizations (the
// driver's ConfigMap and Services are the edge's).
func everything(bs map[string]*build) []*object {
	var objs []*object
	for _, b := range bs {
		objs = append(objs, b.objects...)
	}
	return objs
}

func TestSelectorsMatchPods(t *testing.T) {
	bs := builds(t)
	var pods []workload
	for _, b := range bs {
		pods = append(pods, workloads(b)...)
	}
	matches := func(sel labels.Selector, ns string) int {
		n := 0
		for _, w := range pods {
			if w.namespace == ns && sel.Matches(labels.Set(w.labels)) {
				n++
			}
		}
		return n
	}
	for dir, b := range bs {
		for _, d := range all[*appsv1.Deployment](b.objects) {
			sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
			if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Errorf("%s: Deployment %s: selector %v does not select its pod labels %v", dir, d.Name, d.Spec.Selector, d.Spec.Template.Labels)
			}
		}
		for _, s := range all[*corev1.Service](b.objects) {
			if len(s.Spec.Selector) == 0 || matches(labels.SelectorFromSet(s.Spec.Selector), s.Namespace) == 0 {
				t.Errorf("%s: Service %s: selector %v matches no pod", dir, s.Name, s.Spec.Selector)
			}
		}
		for _, p := range all[*policyv1.PodDisruptionBudget](b.objects) {
			sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
			if err != nil || matches(sel, p.Namespace) == 0 {
				t.Errorf("%s: PodDisruptionBudget %s matches no pod", dir, p.Name)
			}
		}
		for _, m := range all[*podMonitor](b.objects) {
			sel, err := metav1.LabelSelectorAsSelector(&m.Spec.Selector)
			if err != nil || matches(sel, m.Metadata.Namespace) == 0 {
				t.Errorf("%s: PodMonitor %s matches no pod", dir, m.Metadata.Name)
			}
			for _, e := range m.Spec.PodMetricsEndpoints {
				for _, w := range pods {
					if sel.Matches(labels.Set(w.labels)) && containerPort(w.spec, e.Port) == nil {
						t.Errorf("%s: PodMonitor %s: %s has no port %q", dir, m.Metadata.Name, w.where, e.Port)
					}
				}
			}
		}
		for _, m := range all[*serviceMonitor](b.objects) {
			sel, err := metav1.LabelSelectorAsSelector(&m.Spec.Selector)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, s := range all[*corev1.Service](everything(bs)) {
				if s.Namespace != m.Metadata.Namespace || !sel.Matches(labels.Set(s.Labels)) {
					continue
				}
				n++
				for _, e := range m.Spec.Endpoints {
					if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == e.Port }) {
						t.Errorf("%s: ServiceMonitor %s: Service %s has no port %q", dir, m.Metadata.Name, s.Name, e.Port)
					}
				}
			}
			if n == 0 {
				t.Errorf("%s: ServiceMonitor %s selects no Service", dir, m.Metadata.Name)
			}
		}
	}
}

// containerPort finds a port by name in any container of spec.
func containerPort(spec *corev1.PodSpec, name string) *corev1.ContainerPort {
	for _, c := range spec.Containers {
		for i := range c.Ports {
			if c.Ports[i].Name == name {
				return &c.Ports[i]
			}
		}
	}
	return nil
}

// listenFlags are serve's listener flags and the container ports (by name) each binds.
var listenFlags = map[string][]string{
	"https-addr":   {"https"},
	"xmpp-addr":    {"xmpp"},
	"sip-addr":     {"sip"},
	"dns-addr":     {"dns-udp", "dns-tcp"},
	"metrics-addr": {"metrics"},
}

func TestPortsMatchListeners(t *testing.T) {
	bs := builds(t)
	exposed := map[string]bool{}
	for _, in := range dockerfile(t) {
		if in[0] == "EXPOSE" {
			for _, p := range strings.Fields(in[1]) {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				exposed[p] = true
			}
		}
	}
	for dir, b := range bs {
		for _, w := range workloads(b) {
			c, cmd := edgesimContainer(w)
			if c == nil {
				t.Errorf("%s: no edgesim container", w.where)
				continue
			}
			bound := map[string]bool{}
			if cmd == "serve" {
				for flag, names := range listenFlags {
					v, ok := flagValue(c.Args, flag)
					if !ok {
						t.Errorf("%s: serve without --%s (its default listens on loopback only)", w.where, flag)
						continue
					}
					host, port, err := net.SplitHostPort(v)
					if err != nil || host != "0.0.0.0" {
						t.Errorf("%s: --%s=%s: want 0.0.0.0:PORT, reachable from other pods", w.where, flag, v)
						continue
					}
					for _, name := range names {
						p := containerPort(w.spec, name)
						if p == nil || strconv.Itoa(int(p.ContainerPort)) != port {
							t.Errorf("%s: --%s=%s but container port %q is %v", w.where, flag, v, name, p)
						}
						bound[name] = true
					}
				}
				if v, _ := flagValue(c.Args, "admin-addr"); v != "" {
					t.Errorf("%s: --admin-addr=%s: domain certificates uploaded to one replica would not reach the others; keep it off", w.where, v)
				}
			}
			if v, ok := flagValue(c.Args, "metrics-addr"); ok && cmd == "load" {
				_, port, _ := net.SplitHostPort(v)
				p := containerPort(w.spec, "metrics")
				if p == nil || strconv.Itoa(int(p.ContainerPort)) != port {
					t.Errorf("%s: --metrics-addr=%s but container port metrics is %v", w.where, v, p)
				}
				bound["metrics"] = true
			}
			for _, p := range c.Ports {
				if !bound[p.Name] {
					t.Errorf("%s: container port %s (%d) is bound by no flag", w.where, p.Name, p.ContainerPort)
				}
				if key := fmt.Sprintf("%d/%s", p.ContainerPort, strings.ToLower(string(p.Protocol))); !exposed[key] {
					t.Errorf("%s: container port %s not in the Dockerfile's EXPOSE", w.where, key)
				}
			}
		}
		for _, s := range all[*corev1.Service](b.objects) {
			for _, w := range workloads(b) {
				if w.job != nil || !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(w.labels)) {
					continue
				}
				for _, sp := range s.Spec.Ports {
					cp := containerPort(w.spec, sp.TargetPort.StrVal)
					if sp.TargetPort.StrVal == "" || cp == nil || cp.Protocol != sp.Protocol {
						t.Errorf("%s: Service %s port %s: targetPort %s is no %s port of %s", dir, s.Name, sp.Name, sp.TargetPort.String(), sp.Protocol, w.where)
						continue
					}
					// The SRV records carry the HTTPS listener's port and the edge
					// configuration the XMPP and SIP ports: clients connect to those.
					if sp.Protocol == corev1.ProtocolTCP && !strings.HasPrefix(sp.Name, "dns") && sp.Name != "metrics" && sp.Port != cp.ContainerPort {
						t.Errorf("%s: Service %s port %s: %d, but the pod listens on %d and tells clients that port", dir, s.Name, sp.Name, sp.Port, cp.ContainerPort)
					}
					if strings.HasPrefix(sp.Name, "dns") && sp.Port != 53 {
						t.Errorf("%s: Service %s port %s: %d, want 53", dir, s.Name, sp.Name, sp.Port)
					}
				}
			}
		}
	}
}

func TestProbesAndSecurity(t *testing.T) {
	for dir, b := range builds(t) {
		for _, w := range workloads(b) {
			c, cmd := edgesimContainer(w)
			if c == nil {
				continue
			}
			if cmd == "serve" {
				metrics, _ := flagValue(c.Args, "metrics-addr")
				_, port, _ := net.SplitHostPort(metrics)
				for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
					if p == nil || p.HTTPGet == nil {
						t.Errorf("%s: no HTTP %s probe", w.where, name)
						continue
					}
					cp := containerPort(w.spec, p.HTTPGet.Port.StrVal)
					if p.HTTPGet.Path != healthzPath || cp == nil || strconv.Itoa(int(cp.ContainerPort)) != port {
						t.Errorf("%s: %s probe GET %s on port %s: want %s on the --metrics-addr port %s", w.where, name, p.HTTPGet.Path, p.HTTPGet.Port.String(), healthzPath, port)
					}
				}
				data, _ := flagValue(c.Args, "data")
				if v, _ := mountOf(w.spec, c, data); v == nil || v.EmptyDir == nil {
					t.Errorf("%s: --data=%s is not an emptyDir volume (the root filesystem is read-only)", w.where, data)
				}
			}
			sc, psc := c.SecurityContext, w.spec.SecurityContext
			if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
				t.Errorf("%s: the pod does not run as a non-root user", w.where)
			}
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
				t.Errorf("%s: want readOnlyRootFilesystem, no privilege escalation, all capabilities dropped", w.where)
			}
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				req, lim := c.Resources.Requests[r], c.Resources.Limits[r]
				if req.IsZero() || lim.IsZero() || req.Cmp(lim) > 0 {
					t.Errorf("%s: %s request %s, limit %s: want both, request ≤ limit", w.where, r, req.String(), lim.String())
				}
			}
			// Every mount names a volume, every volume is mounted.
			for _, m := range c.VolumeMounts {
				if !slices.ContainsFunc(w.spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name }) {
					t.Errorf("%s: mount %s: no volume %s", w.where, m.MountPath, m.Name)
				}
			}
			for _, v := range w.spec.Volumes {
				if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == v.Name }) {
					t.Errorf("%s: volume %s is not mounted", w.where, v.Name)
				}
			}
		}
		_ = dir
	}
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// serviceLinkVar is the variable Kubernetes sets in pods for a Service's ClusterIP.
func serviceLinkVar(service string) string {
	return strings.ToUpper(strings.ReplaceAll(service, "-", "_")) + "_SERVICE_HOST"
}

func TestVariableReferences(t *testing.T) {
	bs := builds(t)
	services := all[*corev1.Service](everything(bs))
	for _, b := range bs {
		for _, w := range workloads(b) {
			known := map[string]bool{}
			for _, s := range services {
				if s.Namespace == w.namespace && s.Spec.ClusterIP != corev1.ClusterIPNone {
					known[serviceLinkVar(s.Name)] = true
				}
			}
			if w.job != nil && w.job.Spec.CompletionMode != nil && *w.job.Spec.CompletionMode == batchv1.IndexedCompletion {
				known["JOB_COMPLETION_INDEX"] = true // set by the Job controller
			}
			for _, c := range w.spec.Containers {
				for _, e := range c.Env {
					for _, m := range varRef.FindAllStringSubmatch(e.Value, -1) {
						if !known[m[1]] {
							t.Errorf("%s: env %s refers to $(%s), defined neither before it nor by a Service", w.where, e.Name, m[1])
						}
					}
					known[e.Name] = true
				}
				for _, a := range append(slices.Clone(c.Command), c.Args...) {
					for _, m := range varRef.FindAllStringSubmatch(a, -1) {
						if !known[m[1]] {
							t.Errorf("%s: argument %q refers to $(%s), which is not set", w.where, a, m[1])
						}
					}
				}
			}
			if c, _ := edgesimContainer(w); c != nil && slices.Contains(argFlags(c.Args), "advertise-addr") && w.spec.EnableServiceLinks != nil && !*w.spec.EnableServiceLinks {
				t.Errorf("%s: service links are off, so no _SERVICE_HOST variable is set", w.where)
			}
		}
	}
}

func TestFlagsExist(t *testing.T) {
	bs := builds(t)
	var uses []flagUse
	for _, b := range bs {
		for _, w := range workloads(b) {
			if c, cmd := edgesimContainer(w); c != nil {
				for _, f := range argFlags(c.Args[1:]) {
					uses = append(uses, flagUse{w.where, cmd, f})
				}
			}
		}
	}
	checkFlags(t, uses)
}
