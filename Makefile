# carbon254.mlflow — developer entry points. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
# Ansible reads the collection from this checkout (linked below as .cache/collections/.../carbon254/mlflow) and never
# asks Galaxy.
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.cache/collections
export ANSIBLE_ROLES_PATH := $(CURDIR)/roles

.PHONY: help demo demo-down setup system-packages sandbox-mlflow mlflow-client datahub cluster ee venv checkov-venv test lint sanity unit sandbox integration molecule upgrade quickstart build sandbox-up sandbox-down sandbox-status constraints clean evidence

help:
	@echo "make setup     - virtualenv with pinned tools, Debian packages, the sandbox's builds; idempotent"
	@echo "make demo      - setup, sandbox up, then playbooks/site.yml -i inventories/sandbox: MLflow deployed and verified"
	@echo "make demo-down - remove the demo deployment, its database and bucket, and stop the sandbox"
	@echo "make test      - setup, then the stages lint, sanity, unit, build, integration, molecule, upgrade, quickstart (what CI runs)"
	@echo "make evidence  - run the bad-input and fault tests and write docs/reliability.md from what they recorded"
	@echo "make ee        - the execution environment image for AWX (execution-environment.yml), built with podman here"
	@echo "make sandbox-up / sandbox-down / sandbox-status - local PostgreSQL + S3 on 127.0.0.1"

setup: system-packages venv checkov-venv sandbox-mlflow mlflow-client datahub cluster

system-packages:
	@scripts/install-system-packages.sh postgresql python3-venv iproute2 util-linux chromium \
	  runc iptables podman debootstrap

# MLflow as a plain process, for the module tests outside Kubernetes (tests/integration/test_mlflow_modules.py) and
# the render test that reads the auth ini with MLflow's own reader; the pods run the image built from the Containerfile.
sandbox-mlflow: system-packages
	@scripts/install-sandbox-mlflow.sh

# The MLflow Python client of the deployed release, as a user would pip install it (no S3 libraries): the real-client
# tests (tests/demo) run it against `make demo`'s deployment.
MLFLOW_VERSION = $(shell sed -n 's/^mlflow==//p' images/mlflow/requirements.txt)
mlflow-client:
	@scripts/install-opt-venv.sh mlflow-client -c images/mlflow/requirements.txt mlflow==$(MLFLOW_VERSION)

# DataHub's own ingestion, for the DataHub recipe render.yml writes (tests/demo/test_datahub.py); a virtualenv of its
# own, as for checkov: it takes mlflow-skinny 2.20.
datahub:
	@scripts/install-opt-venv.sh datahub -r tests/demo/datahub-requirements.txt

# The execution environment AWX runs the job templates in (execution-environment.yml): the collection's tarball,
# `ansible-builder create`, podman on the debootstrap base; cached under /opt/carbon254-sandbox/images by its inputs.
ee: cluster
	@$(BIN)/python -m sandbox ee

# The sandbox's Kubernetes from upstream sources (sandbox/cluster, Go), containerd, the CNI plugins and the images
# (pause, test tool, MLflow from images/mlflow/Containerfile), cached under /opt/carbon254-sandbox by their inputs:
# cold 35-45 minutes on 2 cores (18 of them the Kubernetes build, ~10 Prometheus), then seconds. Needs Go on PATH.
cluster: system-packages venv
	@$(BIN)/python -m sandbox build

venv: $(VENV)/.installed

# checkov lives in its own virtualenv: its pins conflict with ansible's (see requirements-checkov.txt).
checkov-venv: .cache/checkov-venv/.installed

.cache/checkov-venv/.installed: requirements-checkov.txt
	@test -x .cache/checkov-venv/bin/python || $(PYTHON) -m venv .cache/checkov-venv
	.cache/checkov-venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	@touch $@

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -r requirements.txt -r requirements-dev.txt
	@touch $@

# Link this checkout as carbon254.mlflow where ansible-playbook / molecule / ansible-lint look for it.
.cache/collections/ansible_collections/carbon254/mlflow:
	@mkdir -p $(@D)
	@ln -sfn $(CURDIR) $@

# The sandbox's state (SANDBOX_STATE_DIR moves it, as for `python -m sandbox`) and the MLflow client settings
# site.yml writes there (inventories/sandbox: mlflow_client_env_file).
SANDBOX_DIR = $${SANDBOX_STATE_DIR:-$(CURDIR)/.sandbox}
DEMO_CLIENT_ENV = "$(SANDBOX_DIR)/mlflow-client.env"

# The main job on the local sandbox: deploy MLflow with site.yml and prove it healthy (its last play verifies).
demo: setup .cache/collections/ansible_collections/carbon254/mlflow
	$(BIN)/python -m sandbox up
	$(BIN)/ansible-playbook playbooks/site.yml -i inventories/sandbox
	@echo "MLflow URL: $$($(BIN)/python -m sandbox service-url mlflow mlflow)"
	@if grep -qs '^MLFLOW_TRACKING_USERNAME=' $(DEMO_CLIENT_ENV); then echo "MLflow credentials: $(DEMO_CLIENT_ENV)"; fi
	@echo "MLflow client: pip install mlflow==$(MLFLOW_VERSION)   (or /opt/carbon254-sandbox/mlflow-client/bin/python)"
	@echo "Use it from an MLflow client: set -a; . $(DEMO_CLIENT_ENV); set +a"
	@if grep -qs '^MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD=false' $(DEMO_CLIENT_ENV); then \
	  echo "  (the file sets MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD/UPLOAD=false: artifacts go through the server, because"; \
	  echo "   the S3 endpoint it signs download URLs for is not reachable from here; clients set up without it hang"; \
	  echo "   in load_model. docs/artifacts.md)"; fi
	@echo "Then, for example: python -c 'import mlflow; print(mlflow.search_experiments())'"
	@echo "Remove it: make demo-down"

# Undo `make demo`: remove the deployment, the database and the bucket, then stop the sandbox.
demo-down:
	@if [ -x $(BIN)/python ] && $(BIN)/python -m sandbox status >/dev/null 2>&1 && [ -f "$(SANDBOX_DIR)/facts.json" ]; then \
	  $(BIN)/ansible-playbook playbooks/teardown.yml -i inventories/sandbox -e mlflow_teardown_delete_data=true || true; \
	fi
	$(MAKE) sandbox-down

test: setup .cache/collections/ansible_collections/carbon254/mlflow
	$(BIN)/python scripts/run_stages.py

lint sanity unit sandbox build integration molecule upgrade quickstart: setup .cache/collections/ansible_collections/carbon254/mlflow
	$(BIN)/python scripts/run_stages.py $@

# docs/reliability.md, written from what the bad-input and fault tests record (bench/evidence.py).
evidence: setup .cache/collections/ansible_collections/carbon254/mlflow
	$(BIN)/python bench/evidence.py

sandbox-up: setup
	$(BIN)/python -m sandbox up
sandbox-down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m sandbox down; fi
sandbox-status: setup
	$(BIN)/python -m sandbox status

# Re-resolve the full pinned set after changing requirements*.txt.
constraints:
	rm -rf .cache/constraints-venv && $(PYTHON) -m venv .cache/constraints-venv
	.cache/constraints-venv/bin/pip install --quiet -r requirements.txt -r requirements-dev.txt
	{ echo "# Full resolved set for requirements.txt + requirements-dev.txt (pip freeze). Regenerate with make constraints."; \
	  .cache/constraints-venv/bin/pip freeze; } > constraints.txt

clean: sandbox-down
	rm -rf $(VENV) .cache .sandbox tests/output .pytest_cache .ruff_cache
