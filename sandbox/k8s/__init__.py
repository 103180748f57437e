"""Kubernetes sandbox: an API server emulator (and, later, a process kubelet) for machines without a cluster.

A test double, not a distribution: see sandbox/README.md.
"""
