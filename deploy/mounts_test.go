package deploy

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// mountOf returns the volume and the path inside it of the file or folder p in container c.
// A subPath mount counts for its exact path.
func mountOf(spec *corev1.PodSpec, c *corev1.Container, p string) (*corev1.Volume, string) {
	var best *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		inside := p == m.MountPath || (m.SubPath == "" && strings.HasPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/"))
		if inside && (best == nil || len(m.MountPath) > len(best.MountPath)) {
			best = &c.VolumeMounts[i]
		}
	}
	if best == nil {
		return nil, ""
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(p, best.MountPath), "/")
	if best.SubPath != "" {
		rel = best.SubPath
	}
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == best.Name {
			return &spec.Volumes[i], rel
		}
	}
	return nil, ""
}

// secretFile reports whether a secret volume's items (or, without items, the Secret's keys)
// give the file rel, and from which key.
func secretFile(s *corev1.SecretVolumeSource, rel string) (key string, ok bool) {
	for _, it := range s.Items {
		if it.Path == rel {
			return it.Key, true
		}
	}
	return rel, len(s.Items) == 0
}

// tenantsFile mirrors the part of edgesim's tenants YAML these checks read.
type tenantsFile struct {
	Provider struct {
		EdgeHost string `json:"edge_host"`
	} `json:"provider"`
	Tenants []struct {
		Domain      string `json:"domain"`
		EdgeHost    string `json:"edge_host"`
		Certificate string `json:"certificate"`
	} `json:"tenants"`
}

// sniHost is the name a Jabber client sends for domain: the SRV target when it is inside the
// domain, else the target's first label joined to the domain.
func (f *tenantsFile) sniHost(domain string) string {
	for _, tn := range f.Tenants {
		if tn.Domain != domain {
			continue
		}
		target := cmpOr(tn.EdgeHost, f.Provider.EdgeHost)
		if strings.HasSuffix(target, "."+domain) {
			return target
		}
		first, _, _ := strings.Cut(target, ".")
		return first + "." + domain
	}
	return ""
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// configFile returns the file --config names, from the ConfigMap mounted there.
func configFile(t *testing.T, objs []*object, w workload, c *corev1.Container) (name string, data string) {
	t.Helper()
	p, ok := flagValue(c.Args, "config")
	if !ok {
		return "", ""
	}
	v, rel := mountOf(w.spec, c, p)
	if v == nil || v.ConfigMap == nil {
		t.Fatalf("%s: --config=%s is not in a mounted ConfigMap", w.where, p)
	}
	key := rel
	for _, it := range v.ConfigMap.Items {
		if it.Path == rel {
			key = it.Key
		}
	}
	for _, cm := range all[*corev1.ConfigMap](objs) {
		if cm.Name == v.ConfigMap.Name && cm.Namespace == w.namespace {
			d, ok := cm.Data[key]
			if !ok {
				t.Fatalf("%s: --config=%s: ConfigMap %s has no key %s", w.where, p, cm.Name, key)
			}
			return cm.Name, d
		}
	}
	t.Fatalf("%s: --config=%s: no ConfigMap %s in namespace %s", w.where, p, v.ConfigMap.Name, w.namespace)
	return "", ""
}

func TestMountedFiles(t *testing.T) {
	bs := builds(t)
	objs := everything(bs)
	for _, b := range bs {
		for _, w := range workloads(b) {
			c, cmd := edgesimContainer(w)
			if c == nil {
				continue
			}
			if _, data := configFile(t, objs, w, c); data != "" {
				var f tenantsFile
				if err := yaml.Unmarshal([]byte(data), &f); err != nil || len(f.Tenants) == 0 {
					t.Errorf("%s: tenants file: %v, %d tenants", w.where, err, len(f.Tenants))
				}
			}
			switch cmd {
			case "serve":
				data, _ := flagValue(c.Args, "data")
				for _, name := range []string{"ca.pem", "ca.key"} {
					v, rel := mountOf(w.spec, c, data+"/"+name)
					if v == nil || v.Secret == nil {
						t.Errorf("%s: %s/%s is not from a Secret: each replica would make its own CA", w.where, data, name)
					} else if key, ok := secretFile(v.Secret, rel); !ok || key != map[string]string{"ca.pem": "tls.crt", "ca.key": "tls.key"}[name] {
						t.Errorf("%s: %s/%s from Secret %s key %q, want the kubernetes.io/tls key", w.where, data, name, v.Secret.SecretName, key)
					}
				}
				keys, _ := flagValue(c.Args, "session-ticket-keys")
				if v, rel := mountOf(w.spec, c, keys); v == nil || v.Secret == nil {
					t.Errorf("%s: --session-ticket-keys=%s is not from a Secret", w.where, keys)
				} else if _, ok := secretFile(v.Secret, rel); !ok || (v.Secret.Optional != nil && *v.Secret.Optional) {
					t.Errorf("%s: --session-ticket-keys=%s: not a required item of Secret %s", w.where, keys, v.Secret.SecretName)
				}
				dir, _ := flagValue(c.Args, "cert-dir")
				if v, rel := mountOf(w.spec, c, dir); v == nil || v.Projected == nil || rel != "" {
					t.Errorf("%s: --cert-dir=%s is not a projected volume's mount", w.where, dir)
				}
			case "load":
				ca, _ := flagValue(c.Args, "ca")
				if v, rel := mountOf(w.spec, c, ca); v == nil || v.Secret == nil {
					t.Errorf("%s: --ca=%s is not from a Secret", w.where, ca)
				} else if key, ok := secretFile(v.Secret, rel); !ok || key != "tls.crt" {
					t.Errorf("%s: --ca=%s: from key %q, want tls.crt of the edge's CA Secret", w.where, ca, key)
				}
				out, _ := flagValue(c.Args, "out")
				if v, _ := mountOf(w.spec, c, out); v == nil || v.PersistentVolumeClaim == nil {
					t.Errorf("%s: --out=%s is not on a PersistentVolumeClaim: the results would go with the pod", w.where, out)
				}
			}
		}
	}
}

// TestDomainCertificates checks the --cert-dir layout: <domain>/tls.crt and tls.key from a
// kubernetes.io/tls Secret per tenant domain, and cert-manager Certificates that fill them.
func TestDomainCertificates(t *testing.T) {
	bs := builds(t)
	objs := everything(bs)
	var caSecret string
	secrets := map[string]string{} // Secret name -> domain
	var tenants tenantsFile
	for _, w := range workloads(bs["k8s/base"]) {
		c, _ := edgesimContainer(w)
		_, data := configFile(t, objs, w, c)
		if err := yaml.Unmarshal([]byte(data), &tenants); err != nil {
			t.Fatal(err)
		}
		dataDir, _ := flagValue(c.Args, "data")
		if v, _ := mountOf(w.spec, c, dataDir+"/ca.pem"); v != nil && v.Secret != nil {
			caSecret = v.Secret.SecretName
		}
		dir, _ := flagValue(c.Args, "cert-dir")
		v, _ := mountOf(w.spec, c, dir)
		if v == nil || v.Projected == nil {
			t.Fatalf("%s: no projected --cert-dir", w.where)
		}
		for _, src := range v.Projected.Sources {
			s := src.Secret
			if s == nil || len(s.Items) != 2 {
				t.Errorf("%s: cert-dir source %+v: want a Secret's tls.crt and tls.key", w.where, src)
				continue
			}
			domain, _, _ := strings.Cut(s.Items[0].Path, "/")
			for _, it := range s.Items {
				if want := domain + "/" + it.Key; it.Path != want || (it.Key != "tls.crt" && it.Key != "tls.key") {
					t.Errorf("%s: Secret %s item %s -> %s, want tls.crt/tls.key -> %s", w.where, s.Name, it.Key, it.Path, want)
				}
			}
			if s.Name != "edgesim-tls-"+strings.ReplaceAll(domain, ".", "-") {
				t.Errorf("%s: Secret %s for %s: want edgesim-tls-<domain, dots as dashes>", w.where, s.Name, domain)
			}
			if tenants.sniHost(domain) == "" {
				t.Errorf("%s: cert-dir has %s, which is no tenant", w.where, domain)
			}
			secrets[s.Name] = domain
		}
	}
	if caSecret == "" || len(secrets) == 0 {
		t.Fatalf("base: CA Secret %q, domain Secrets %v", caSecret, secrets)
	}
	cm := bs["k8s/cert-manager"].objects
	issuers := map[string]*issuer{}
	for _, is := range all[*issuer](cm) {
		issuers[is.Metadata.Name] = is
		if is.Spec.CA.SecretName != caSecret {
			t.Errorf("Issuer %s signs with Secret %s, the edge's CA is %s", is.Metadata.Name, is.Spec.CA.SecretName, caSecret)
		}
	}
	for _, c := range all[*certificate](cm) {
		domain, ok := secrets[c.Spec.SecretName]
		if !ok {
			t.Errorf("Certificate %s writes Secret %s, which the edge does not mount", c.Metadata.Name, c.Spec.SecretName)
			continue
		}
		for _, name := range []string{tenants.sniHost(domain), domain} {
			if !slices.Contains(c.Spec.DNSNames, name) {
				t.Errorf("Certificate %s: dnsNames %v lack %s", c.Metadata.Name, c.Spec.DNSNames, name)
			}
		}
		if c.Spec.IssuerRef.Kind == "Issuer" && issuers[c.Spec.IssuerRef.Name] == nil {
			t.Errorf("Certificate %s: no Issuer %s", c.Metadata.Name, c.Spec.IssuerRef.Name)
		}
		for _, u := range []string{"server auth", "client auth"} {
			if !slices.Contains(c.Spec.Usages, u) {
				t.Errorf("Certificate %s: usages %v lack %s (Expressway certificates carry both)", c.Metadata.Name, c.Spec.Usages, u)
			}
		}
		delete(secrets, c.Spec.SecretName)
	}
	for s, d := range secrets {
		t.Errorf("no cert-manager Certificate fills Secret %s (%s)", s, d)
	}
}
