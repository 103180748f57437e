"""The way tests and benchmarks drive the collection against the sandbox.

Ansible runs (harness.ansible), the sandbox's Kubernetes API and audit log (harness.kube), its PostgreSQL and S3 as
their administrators (harness.stores), a real MLflow server for the verification modules (harness.modules) and the
MLflow client as users set it up (harness.client). tests/ and bench/ import from here; nothing here imports them.
"""
