"""Deployment assets for GPU hosts: Dockerfile and compose, Kubernetes and KServe manifests, canary routes through a service mesh, and the repository footprint they are sized from."""
