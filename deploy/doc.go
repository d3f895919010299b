// Package deploy holds no code: its folder has edgesim's container image (Dockerfile,
// build.sh), the Kubernetes manifests (k8s/), the Prometheus configuration and the Grafana
// dashboard. Its tests decode every manifest into the Kubernetes API types, cross-check them
// against each other and against the built binary, and check that every metric the dashboard
// queries is served by a running edge and driver.
package deploy
