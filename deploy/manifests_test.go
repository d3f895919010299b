package deploy

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// standalone manifests are applied by hand (README), not through a kustomization.
var standalone = []string{"k8s/driver/results-reader.yaml"}

// kustomization mirrors the fields of kustomize.config.k8s.io/v1beta1 Kustomization used here.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace,omitempty"`
	Resources  []string `json:"resources"`
	Patches    []struct {
		Path string `json:"path"`
	} `json:"patches,omitempty"`
}

// serviceMonitor and podMonitor mirror the monitoring.coreos.com/v1 fields used here.
type serviceMonitor struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []scrapeEndpoint     `json:"endpoints"`
	} `json:"spec"`
}

type podMonitor struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Selector            metav1.LabelSelector `json:"selector"`
		PodMetricsEndpoints []scrapeEndpoint     `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

type scrapeEndpoint struct {
	Port     string `json:"port"`
	Path     string `json:"path"`
	Interval string `json:"interval"`
}

// issuer and certificate mirror the cert-manager.io/v1 fields used here.
type issuer struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		CA struct {
			SecretName string `json:"secretName"`
		} `json:"ca"`
	} `json:"spec"`
}

type certificate struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		SecretName  string   `json:"secretName"`
		CommonName  string   `json:"commonName"`
		DNSNames    []string `json:"dnsNames"`
		Duration    string   `json:"duration"`
		RenewBefore string   `json:"renewBefore"`
		PrivateKey  struct {
			Algorithm      string `json:"algorithm"`
			Size           int    `json:"size"`
			RotationPolicy string `json:"rotationPolicy"`
		} `json:"privateKey"`
		Usages    []string `json:"usages"`
		IssuerRef struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"issuerRef"`
	} `json:"spec"`
}

// kinds maps apiVersion/kind to the type a document decodes into.
var kinds = map[string]func() any{
	"v1/Namespace":                  func() any { return new(corev1.Namespace) },
	"v1/ConfigMap":                  func() any { return new(corev1.ConfigMap) },
	"v1/Secret":                     func() any { return new(corev1.Secret) },
	"v1/Service":                    func() any { return new(corev1.Service) },
	"v1/PersistentVolumeClaim":      func() any { return new(corev1.PersistentVolumeClaim) },
	"v1/Pod":                        func() any { return new(corev1.Pod) },
	"apps/v1/Deployment":            func() any { return new(appsv1.Deployment) },
	"batch/v1/Job":                  func() any { return new(batchv1.Job) },
	"policy/v1/PodDisruptionBudget": func() any { return new(policyv1.PodDisruptionBudget) },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return new(serviceMonitor) },
	"monitoring.coreos.com/v1/PodMonitor":     func() any { return new(podMonitor) },
	"cert-manager.io/v1/Issuer":               func() any { return new(issuer) },
	"cert-manager.io/v1/Certificate":          func() any { return new(certificate) },
}

// object is one Kubernetes object: its document as JSON-like maps (for patching) and the
// typed value decoded strictly from it.
type object struct {
	file      string
	kind      string
	name      string
	namespace string
	raw       map[string]any
	typed     any
}

func (o *object) String() string {
	return fmt.Sprintf("%s %s/%s (%s)", o.kind, o.namespace, o.name, o.file)
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// readObjects decodes every document of a manifest file strictly into its API type.
func readObjects(file string) ([]*object, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var objs []*object
	for i, doc := range docSep.Split(string(data), -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		o, err := decodeObject(file, []byte(doc))
		if err != nil {
			return nil, fmt.Errorf("%s document %d: %w", file, i+1, err)
		}
		objs = append(objs, o)
	}
	return objs, nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for line := range strings.Lines(doc) {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
		}
	}
	return b.String()
}

func decodeObject(file string, doc []byte) (*object, error) {
	var raw map[string]any
	if err := yaml.UnmarshalStrict(doc, &raw); err != nil { // refuses duplicate keys
		return nil, err
	}
	o := &object{file: file, raw: raw}
	if err := o.decode(); err != nil {
		return nil, err
	}
	return o, nil
}

// decode (re)makes typed from raw, refusing unknown and duplicate fields.
func (o *object) decode() error {
	api, _ := o.raw["apiVersion"].(string)
	kind, _ := o.raw["kind"].(string)
	mk := kinds[api+"/"+kind]
	if mk == nil {
		return fmt.Errorf("apiVersion %q kind %q: not a type this test knows", api, kind)
	}
	data, err := json.Marshal(o.raw)
	if err != nil {
		return err
	}
	typed := mk()
	if err := yaml.UnmarshalStrict(data, typed); err != nil {
		return fmt.Errorf("%s: %w", kind, err)
	}
	meta, _ := o.raw["metadata"].(map[string]any)
	o.kind, o.typed = kind, typed
	o.name, _ = meta["name"].(string)
	o.namespace, _ = meta["namespace"].(string)
	if o.name == "" {
		return fmt.Errorf("%s without metadata.name", kind)
	}
	return nil
}

// build is what 'kustomize build dir' gives, for the features used here: resources (files and
// folders), namespace, and strategic-merge patches (maps merge, lists of named items merge by
// name, other lists are replaced).
type build struct {
	dir     string
	objects []*object
	files   []string // every manifest file read, kustomization files included
}

func kustomize(dir string) (*build, error) {
	kfile := filepath.Join(dir, "kustomization.yaml")
	data, err := os.ReadFile(kfile)
	if err != nil {
		return nil, err
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		return nil, fmt.Errorf("%s: %w", kfile, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		return nil, fmt.Errorf("%s: apiVersion %q kind %q", kfile, k.APIVersion, k.Kind)
	}
	b := &build{dir: dir, files: []string{kfile}}
	if len(k.Resources) == 0 {
		return nil, fmt.Errorf("%s: no resources", kfile)
	}
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%s: resource %s: %w", kfile, r, err)
		}
		if st.IsDir() {
			sub, err := kustomize(p)
			if err != nil {
				return nil, err
			}
			b.objects = append(b.objects, sub.objects...)
			b.files = append(b.files, sub.files...)
			continue
		}
		objs, err := readObjects(p)
		if err != nil {
			return nil, err
		}
		if len(objs) == 0 {
			return nil, fmt.Errorf("%s: resource %s holds no object", kfile, r)
		}
		b.objects = append(b.objects, objs...)
		b.files = append(b.files, p)
	}
	if k.Namespace != "" {
		for _, o := range b.objects {
			if o.kind == "Namespace" {
				continue
			}
			o.raw["metadata"].(map[string]any)["namespace"] = k.Namespace
			if err := o.decode(); err != nil {
				return nil, err
			}
		}
	}
	for _, p := range k.Patches {
		file := filepath.Join(dir, p.Path)
		patches, err := readObjects(file)
		if err != nil {
			return nil, fmt.Errorf("%s: patch: %w", kfile, err)
		}
		b.files = append(b.files, file)
		for _, patch := range patches {
			var target *object
			for _, o := range b.objects {
				if o.kind == patch.kind && o.name == patch.name && (patch.namespace == "" || patch.namespace == o.namespace) {
					target = o
				}
			}
			if target == nil {
				return nil, fmt.Errorf("%s: patch %s targets nothing in %s", kfile, patch, dir)
			}
			merge(target.raw, patch.raw)
			if err := target.decode(); err != nil {
				return nil, fmt.Errorf("%s patched by %s: %w", target, file, err)
			}
		}
	}
	seen := map[string]bool{}
	for _, o := range b.objects {
		id := o.kind + " " + o.namespace + "/" + o.name
		if seen[id] {
			return nil, fmt.Errorf("%s: %s twice", dir, id)
		}
		seen[id] = true
	}
	return b, nil
}

// merge applies a strategic-merge patch the way kustomize does for the fields used here.
func merge(dst, patch map[string]any) {
	for k, pv := range patch {
		switch pv := pv.(type) {
		case map[string]any:
			if dv, ok := dst[k].(map[string]any); ok {
				merge(dv, pv)
				continue
			}
		case []any:
			if dv, ok := dst[k].([]any); ok && named(dv) && named(pv) {
				for _, item := range pv {
					m := item.(map[string]any)
					i := slices.IndexFunc(dv, func(d any) bool { return d.(map[string]any)["name"] == m["name"] })
					if i < 0 {
						dv = append(dv, m)
					} else {
						merge(dv[i].(map[string]any), m)
					}
				}
				dst[k] = dv
				continue
			}
		}
		dst[k] = pv
	}
}

func named(list []any) bool {
	for _, item := range list {
		if m, ok := item.(map[string]any); !ok || m["name"] == nil {
			return false
		}
	}
	return len(list) > 0
}

// builds returns every kustomization under k8s/, by folder.
func builds(t *testing.T) map[string]*build {
	t.Helper()
	all := map[string]*build{}
	err := filepath.WalkDir("k8s", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.Name() != "kustomization.yaml" {
			return err
		}
		b, err := kustomize(filepath.Dir(path))
		if err != nil {
			return err
		}
		all[filepath.Dir(path)] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// all returns the typed objects of type T in objs.
func all[T any](objs []*object) []T {
	var out []T
	for _, o := range objs {
		if v, ok := o.typed.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func TestEveryManifestDecodes(t *testing.T) {
	bs := builds(t)
	for _, dir := range []string{"k8s/base", "k8s/driver", "k8s/monitoring", "k8s/cert-manager",
		"k8s/overlays/small", "k8s/overlays/small/driver", "k8s/overlays/100k", "k8s/overlays/100k/driver"} {
		if bs[dir] == nil {
			t.Errorf("no kustomization in %s", dir)
		}
	}
	used := map[string]bool{}
	for _, b := range bs {
		for _, f := range b.files {
			used[filepath.ToSlash(f)] = true
		}
	}
	for _, f := range standalone {
		used[f] = true
		if _, err := readObjects(f); err != nil {
			t.Error(err)
		}
	}
	// A manifest no kustomization reaches is never applied: refuse it.
	err := filepath.WalkDir("k8s", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) && !used[filepath.ToSlash(path)] {
			t.Errorf("%s: in no kustomization's resources or patches", path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOverlaysChangeWhatTheySay(t *testing.T) {
	bs := builds(t)
	replicas := func(dir string) int32 {
		ds := all[*appsv1.Deployment](bs[dir].objects)
		if len(ds) != 1 {
			t.Fatalf("%s: %d Deployments", dir, len(ds))
		}
		return *ds[0].Spec.Replicas
	}
	if a, b := replicas("k8s/overlays/small"), replicas("k8s/overlays/100k"); a >= b || a < 2 {
		t.Errorf("replicas: small %d, 100k %d", a, b)
	}
	edge := all[*appsv1.Deployment](bs["k8s/overlays/100k"].objects)[0]
	if args := edge.Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, "--tenants=100000") {
		t.Errorf("overlays/100k: edge args %q lack --tenants=100000", args)
	}
	job := all[*batchv1.Job](bs["k8s/overlays/100k/driver"].objects)[0]
	if args := job.Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, "--tenants=100000") {
		t.Errorf("overlays/100k/driver: args %q lack --tenants=100000 (the edge's tenants)", args)
	}
}
