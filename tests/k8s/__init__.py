"""Tests of the Kubernetes manifests in deploy/k8s (kustomize base and overlays)."""
