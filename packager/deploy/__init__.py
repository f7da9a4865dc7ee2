"""Deployment assets for GPU hosts: Dockerfile and compose, Kubernetes and KServe manifests, and the repository footprint they are sized from."""
