"""The AWX double's task system: project updates, inventory updates, jobs and workflow jobs, run for real.

As AWX 24.6.1 does (docs/research/awx-job-execution.md): a project update checks the project out with git inside the
execution environment and installs its collections/requirements.yml; a job template launch validates the survey
answers, merges extra vars (template <- survey defaults <- answers), refuses credentials that lack required inputs,
lays out the job's private data directory and hands it to `ansible-runner transmit | worker | process` in the
execution environment (tests/awx_double/execution.py); a workflow runs its nodes along success/failure/always edges.
Every run happens in a thread; the API answers at once and clients poll, as with AWX.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import execution
from .resources import Invalid, Record, parse_vars, survey_answer_errors
from .store import Store, now

FINISHED = ("successful", "failed", "error", "canceled")
ADMIN = {"id": 1, "name": "admin", "email": "admin@example.com", "first_name": "", "last_name": ""}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower())


def playbook_files(checkout: Path) -> list[str]:
    """What AWX offers as a project's playbooks (awx/main/utils/ansible.py skip_directory, could_be_playbook)."""
    import re  # noqa: PLC0415 - only this scan needs it

    pattern = re.compile(
        r"^\s*?-?\s*?(?:hosts|(ansible\.builtin\.)?include|(ansible\.builtin\.)?import_playbook):\s*?.*?$"
    )
    found = []
    for path in checkout.rglob("*"):
        if path.suffix not in (".yml", ".yaml") or not path.is_file():
            continue
        parts = path.relative_to(checkout).parts[:-1]
        if any(p in ("roles", "tasks", "group_vars", "host_vars") or p.startswith(".") for p in parts):
            continue
        with open(path, encoding="utf-8", errors="ignore") as handle:
            for number, line in enumerate(handle):
                if pattern.match(line) or (number == 0 and line.startswith("$ANSIBLE_VAULT;")):
                    found.append(str(path.relative_to(checkout)))
                    break
    return sorted(found, key=str.lower)


class Tasks:
    """Starts and runs every unified job of the double."""

    def __init__(self, store: Store, root: Path, mode: Callable[[Record], str]) -> None:
        self.store = store
        self.root = root
        self.projects_root = root / "projects"
        self.mode = mode  # 'execution_node' or 'container_group' for a job template (its instance group)
        self.threads: list[threading.Thread] = []

    # --- helpers -----------------------------------------------------------------------------------------------

    def _job(self, endpoint: str, name: str, **values: Any) -> Record:
        with self.store.lock:
            record = self.store._new(endpoint)
            record.values = {"name": name, "status": "pending", "failed": False, "started": None, "finished": None,
                             "elapsed": 0.0, "job_explanation": "", "launch_type": "manual", **values}  # fmt: skip
            if endpoint != "workflow_jobs":
                record.values["event_processing_finished"] = False
            record.extra.update(events=[], stdout="")
        return record

    def _start(self, record: Record, work: Callable[[Record], str]) -> None:
        def body() -> None:
            with self.store.lock:
                record.values.update(status="running", started=now())
            began = time.monotonic()
            try:
                status = work(record)
            except Exception:
                status = "error"
                record.values["job_explanation"] = traceback.format_exc()[-2000:]
            with self.store.lock:
                record.values.update(status=status, failed=status != "successful", finished=now(),
                                     elapsed=round(time.monotonic() - began, 3))  # fmt: skip
                if "event_processing_finished" in record.values:
                    record.values["event_processing_finished"] = True
                self._finish_parent(record)

        thread = threading.Thread(target=body, name=f"awx-{record.endpoint}-{record.id}", daemon=True)
        self.threads.append(thread)
        thread.start()

    def _finish_parent(self, record: Record) -> None:
        parent = record.extra.get("parent")
        if parent is None:
            return
        owner = self.store.get(*parent)
        owner.extra.pop("current_update" if record.endpoint != "jobs" else "current_job", None)
        owner.extra["last_update" if record.endpoint != "jobs" else "last_job"] = (record.endpoint, record.id)
        owner.values["status"] = record.values["status"]
        if owner.endpoint == "projects":
            owner.values["last_update_failed"] = record.values["failed"]

    def _absorb(self, record: Record, result: execution.RunResult) -> None:
        with self.store.lock:
            record.extra["events"] = result.events
            record.extra["stdout"] = result.stdout
            record.extra["private_data_dir"] = result.private_data_dir
            record.values["job_explanation"] = result.explanation
            record.values["result_traceback"] = result.result_traceback
            record.values["job_args"] = json.dumps(result.job_args)
            record.values["job_env"] = result.job_env

    # --- projects ----------------------------------------------------------------------------------------------

    def checkout(self, project: Record) -> Path:
        return self.projects_root / f"_{project.id}__{_slug(project.values['name'])}"

    def cache(self, project: Record) -> Path:
        return self.projects_root / ".__awx_cache" / self.checkout(project).name

    def image_for(self, *records: Record | None) -> str:
        """The execution environment AWX picks: the template's, the project's default, the organization's."""
        for record in records:
            if record is None:
                continue
            for key in ("execution_environment", "default_environment"):
                if record.values.get(key):
                    return self.store.get("execution_environments", record.values[key]).values["image"]
        raise Invalid({"execution_environment": ["No execution environment: set one on the template, the project or "
                                                 "the organization."]})  # fmt: skip

    def update_project(self, project: Record, job_type: str = "check") -> Record:
        """Start a project update (POST /projects/N/update/, or AWX's own on creation)."""
        record = self._job("project_updates", project.values["name"], project=project.id, job_type=job_type,
                           scm_revision="", unified_job_template=project.id)  # fmt: skip
        record.extra["parent"] = ("projects", project.id)
        project.extra["current_update"] = ("project_updates", record.id)
        project.values["status"] = "pending"
        self._start(record, lambda job: self._run_project_update(project, job))
        return record

    def _run_project_update(self, project: Record, job: Record) -> str:
        org = (
            self.store.get("organizations", project.values["organization"]) if project.values["organization"] else None
        )
        image = self.image_for(project, org)
        stage = self.cache(project) / "stage"
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
        branch = project.values["scm_branch"] or "HEAD"
        result, revision = execution.run_project_update(job.id, project.values["scm_url"], branch, self.checkout(project),
                                                        stage, image, self.root / "runs", project.values["scm_clean"])  # fmt: skip
        self._absorb(job, result)
        if result.status != "successful" or not revision:
            return result.status if result.status != "successful" else "failed"
        cache_id = str(job.id)
        for old in self.cache(project).iterdir():
            if old.name != "stage":
                shutil.rmtree(old, ignore_errors=True)
        stage.rename(self.cache(project) / cache_id)
        with self.store.lock:
            job.values["scm_revision"] = revision
            project.values["scm_revision"] = revision
            project.extra["playbook_files"] = playbook_files(self.checkout(project))
            project.extra["cache_id"] = cache_id
        return "successful"

    def wait(self, record: Record, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while record.values["status"] not in FINISHED:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{record.endpoint}/{record.id} still {record.values['status']} after {timeout} s")
            time.sleep(0.2)
        return record.values["status"]

    # --- inventories -------------------------------------------------------------------------------------------

    def update_inventory_source(self, source: Record) -> Record:
        record = self._job("inventory_updates", source.values["name"], inventory=source.values["inventory"],
                           inventory_source=source.id, unified_job_template=source.id)  # fmt: skip
        record.extra["parent"] = ("inventory_sources", source.id)
        source.extra["current_update"] = ("inventory_updates", record.id)
        self._start(record, lambda job: self._run_inventory_update(source, job))
        return record

    def _run_inventory_update(self, source: Record, job: Record) -> str:
        project = self.store.get("projects", source.values["source_project"])
        if project.values["last_update_failed"] or not project.values["scm_revision"]:
            job.values["job_explanation"] = "Missing a revision to run due to failed project update."
            return "failed"
        inventory = self.store.get("inventories", source.values["inventory"])
        org = (
            self.store.get("organizations", inventory.values["organization"])
            if inventory.values["organization"]
            else None
        )
        image = self.image_for(source, project, org)
        collections = self.cache(project) / project.extra.get("cache_id", "") / "requirements_collections"
        result, data = execution.run_inventory_update(job.id, self.checkout(project), source.values["source_path"], image,
                                                      self.root / "runs", collections if collections.is_dir() else None)  # fmt: skip
        self._absorb(job, result)
        if result.status != "successful" or data is None:
            return result.status if result.status != "successful" else "failed"
        with self.store.lock:
            self._import(inventory, source, data)
        return "successful"

    def _import(self, inventory: Record, source: Record, data: dict[str, Any]) -> None:
        """awx-manage inventory_import's effect: `all` vars into the inventory, groups, hosts (overwrite honoured)."""
        all_group = data.get("all", {})
        variables = {**parse_vars(inventory.values["variables"]), **all_group.get("vars", {})}
        inventory.values["variables"] = json.dumps(variables) if variables else inventory.values["variables"]
        groups = {name: {"vars": g.get("vars", {}), "hosts": g.get("hosts", []), "children": g.get("children", [])}
                  for name, g in data.items() if name not in ("_meta", "all", "ungrouped")}  # fmt: skip
        inventory.extra["groups"] = (
            groups if source.values["overwrite"] else {**inventory.extra.get("groups", {}), **groups}
        )
        hostvars = data.get("_meta", {}).get("hostvars", {})
        names = set(hostvars) | {h for g in data.values() if isinstance(g, dict) for h in g.get("hosts", [])}
        for name in sorted(names):
            existing = self.store.find("hosts", name=name, inventory=inventory.id)
            if existing:
                existing[0].values["variables"] = json.dumps(hostvars.get(name, {}))
            else:
                host = self.store._new("hosts")
                host.values = {"name": name, "description": "", "inventory": inventory.id, "enabled": True,
                               "instance_id": "", "variables": json.dumps(hostvars.get(name, {}))}  # fmt: skip
        if source.values["overwrite"]:
            for host in self.store.find("hosts", inventory=inventory.id):
                if host.values["name"] not in names:
                    self.store.delete(host)
        inventory.values["total_hosts"] = len(self.store.find("hosts", inventory=inventory.id))

    def script_data(self, inventory: Record) -> dict[str, Any]:
        """Inventory.get_script_data(hostvars=True, towervars=True) (awx/main/models/inventory.py)."""
        hosts = sorted((h for h in self.store.find("hosts", inventory=inventory.id) if h.values["enabled"]),
                       key=lambda h: h.values["name"])  # fmt: skip
        groups: dict[str, dict[str, Any]] = inventory.extra.get("groups", {})
        grouped = {h for g in groups.values() for h in g["hosts"]}
        data: dict[str, Any] = {"all": {}}
        variables = parse_vars(inventory.values["variables"])
        if variables:
            data["all"]["vars"] = variables
        data["all"]["hosts"] = [h.values["name"] for h in hosts if h.values["name"] not in grouped]
        if groups:
            data["all"]["children"] = sorted(groups)
        for name, group in sorted(groups.items()):
            entry = {k: group[k] for k in ("hosts", "children", "vars") if group[k]}
            if entry:
                data[name] = entry
        data["_meta"] = {"hostvars": {h.values["name"]: {**parse_vars(h.values["variables"]),
                                                          "remote_tower_enabled": "true", "remote_tower_id": h.id,
                                                          "remote_host_enabled": "true", "remote_host_id": h.id}
                                      for h in hosts}}  # fmt: skip
        return data

    # --- job templates -----------------------------------------------------------------------------------------

    def launch(self, template: Record, data: dict[str, Any], workflow: Record | None = None) -> tuple[Record, dict]:
        """POST /job_templates/N/launch/: the checks AWX runs, then a pending job."""
        extra = data.get("extra_vars") or {}
        if isinstance(extra, str):
            extra = parse_vars(extra, "extra_vars")
        survey = template.extra.get("survey_spec") or {}
        questions = survey.get("spec", []) if template.values["survey_enabled"] else []
        asked = {q["variable"] for q in questions}
        ignored: dict[str, Any] = {}
        accepted = {
            k: v
            for k, v in extra.items()
            if workflow is not None or template.values["ask_variables_on_launch"] or k in asked
        }
        if len(accepted) < len(extra):
            ignored["extra_vars"] = {k: v for k, v in extra.items() if k not in accepted}
        for key, value in data.items():
            if key != "extra_vars" and not template.values.get(f"ask_{key}_on_launch"):
                ignored[key] = value
        errors = []
        values = {**parse_vars(template.values["extra_vars"])}
        for question in questions:
            variable = question["variable"]
            if variable in accepted:
                errors += survey_answer_errors(question, accepted[variable])
            elif question["required"]:
                errors.append(f"'{variable}' value missing")
            elif question.get("default", "") != "" and not survey_answer_errors(question, question["default"]):
                values[variable] = question["default"]
        if errors:
            raise Invalid({"variables_needed_to_start": errors})
        if template.values["inventory"] is None:
            raise Invalid({"resources_needed_to_start": ["Job Template inventory is missing or undefined."]})
        project = self.store.get("projects", template.values["project"])
        if project.values["last_update_failed"] and not project.values["scm_update_on_launch"]:
            raise Invalid({"playbook": ["Missing a revision to run due to failed project update."]})
        values.update(accepted)
        job = self._job("jobs", template.values["name"], job_template=template.id, unified_job_template=template.id,
                        inventory=template.values["inventory"], project=project.id, playbook=template.values["playbook"],
                        extra_vars=json.dumps(values), scm_revision="", job_type=template.values["job_type"],
                        launch_type="workflow" if workflow else "manual", artifacts={}, job_args="", job_env={})  # fmt: skip
        job.extra["parent"] = ("job_templates", template.id)
        job.extra["workflow"] = workflow
        template.extra["current_job"] = ("jobs", job.id)
        self._start(job, lambda record: self._run_job(template, record, values))
        return job, ignored

    def _run_job(self, template: Record, job: Record, extra_vars: dict[str, Any]) -> str:
        project = self.store.get("projects", template.values["project"])
        if project.values["scm_update_on_launch"]:
            update = self.update_project(project, job_type="run")
            if self.wait(update, 1800) != "successful":
                job.values["job_explanation"] = (f"Previous Task Failed: {{\"job_type\": \"project_update\", "
                                                 f"\"job_name\": \"{project.values['name']}\", \"job_id\": \"{update.id}\"}}")  # fmt: skip
                return "failed"
        inventory = self.store.get("inventories", template.values["inventory"])
        for source in self.store.find("inventory_sources", inventory=inventory.id, update_on_launch=True):
            update = self.update_inventory_source(source)
            if self.wait(update, 1800) != "successful":
                job.values["job_explanation"] = (
                    f"Previous Task Failed: inventory update {update.id} ({source.values['name']})"
                )
                return "failed"
        credentials = []
        for ident in template.extra.get("credentials", []):
            cred = self.store.get("credentials", ident)
            ctype = self.store.get("credential_types", cred.values["credential_type"])
            sourced = [
                s.values["input_field_name"]
                for s in self.store.find("credential_input_sources", target_credential=ident)
            ]
            if sourced:
                job.values["job_explanation"] = (f"Credential {cred.values['name']} takes {', '.join(sourced)} from an external "
                                                 "secret lookup, which this AWX double cannot reach (no HashiCorp Vault here).")  # fmt: skip
                return "error"
            missing = [r for r in ctype.values["inputs"].get("required", []) if r not in cred.values["inputs"]]
            if missing:
                job.values["job_explanation"] = (f"Job cannot start because Credential {cred.values['name']} does not provide "
                                                 f"one or more required fields ({', '.join(missing)}).")  # fmt: skip
                return "failed"
            credentials.append(execution.Credential(
                name=cred.values["name"], kind=ctype.values["kind"],
                namespace=ctype.values["namespace"] if ctype.values["managed"] else None,
                fields=ctype.values["inputs"].get("fields", []), injectors=ctype.values["injectors"],
                inputs=dict(cred.values["inputs"])))  # fmt: skip
        org = (
            self.store.get("organizations", project.values["organization"]) if project.values["organization"] else None
        )
        cache = self.cache(project) / project.extra.get("cache_id", "none")
        job.values["scm_revision"] = project.values["scm_revision"]
        spec = execution.JobSpec(
            id=job.id, playbook=template.values["playbook"], project_checkout=self.checkout(project),
            requirements_collections=cache / "requirements_collections", requirements_roles=cache / "requirements_roles",
            inventory=self.script_data(inventory), extra_vars=extra_vars,
            template_extra_vars=parse_vars(template.values["extra_vars"]), meta_vars=self.meta_vars(job, template, inventory, project),
            credentials=credentials, image=self.image_for(template, project, org), mode=self.mode(template),
            job_type=template.values["job_type"], limit=template.values["limit"], job_tags=template.values["job_tags"],
            skip_tags=template.values["skip_tags"], verbosity=template.values["verbosity"], forks=template.values["forks"],
            diff_mode=template.values["diff_mode"], timeout=template.values["timeout"],
            env={"INVENTORY_ID": str(inventory.id), "PROJECT_REVISION": project.values["scm_revision"],
                 "AWX_HOST": "https://towerhost"},
        )  # fmt: skip
        result = execution.run_job(spec, self.root / "runs")
        self._absorb(job, result)
        return result.status

    def meta_vars(self, job: Record, template: Record, inventory: Record, project: Record) -> dict[str, Any]:
        """awx_* and tower_* variables (awx/main/models/unified_jobs.py awx_meta_vars, models/jobs.py)."""
        pairs: list[tuple[str, Any]] = [("job_id", job.id), ("job_launch_type", job.values["launch_type"])]
        workflow = job.extra.get("workflow")
        if workflow is not None:
            pairs += [("workflow_job_id", workflow.id), ("workflow_job_name", workflow.values["name"]),
                      ("workflow_job_launch_type", workflow.values["launch_type"])]  # fmt: skip
        pairs += [(f"user_{k}", v) for k, v in ADMIN.items()]
        pairs += [("inventory_id", inventory.id), ("inventory_name", inventory.values["name"]),
                  ("project_revision", project.values["scm_revision"]), ("project_scm_branch", project.values["scm_branch"]),
                  ("job_template_id", template.id), ("job_template_name", template.values["name"])]  # fmt: skip
        meta: dict[str, Any] = {}
        for key, value in pairs:
            meta[f"awx_{key}"] = value
            meta[f"tower_{key}"] = value
        return meta

    # --- workflows ---------------------------------------------------------------------------------------------

    def launch_workflow(self, template: Record, data: dict[str, Any]) -> Record:
        extra = data.get("extra_vars") or {}
        if isinstance(extra, str):
            extra = parse_vars(extra, "extra_vars")
        if extra and not template.values["ask_variables_on_launch"] and not template.values["survey_enabled"]:
            raise Invalid({"extra_vars": [f"Variables {', '.join(extra)} are not allowed on launch. Check the Prompt on "
                                          "Launch setting on the Workflow Job Template to include Extra Variables."]})  # fmt: skip
        values = {**parse_vars(template.values["extra_vars"]), **extra}
        job = self._job("workflow_jobs", template.values["name"], workflow_job_template=template.id,
                        unified_job_template=template.id, extra_vars=json.dumps(values))  # fmt: skip
        job.extra["parent"] = ("workflow_job_templates", template.id)
        self._start(job, lambda record: self._run_workflow(template, record, values))
        return job

    def _run_workflow(self, template: Record, job: Record, extra_vars: dict[str, Any]) -> str:
        nodes = {n.id: n for n in self.store.find("workflow_job_template_nodes", workflow_job_template=template.id)}
        children = {
            c
            for n in nodes.values()
            for e in ("success_nodes", "failure_nodes", "always_nodes")
            for c in n.extra.get(e, [])
        }
        todo = [i for i in sorted(nodes) if i not in children]
        unhandled_failure = False
        job.extra["jobs"] = []
        while todo:
            node = nodes[todo.pop(0)]
            target = self.store.get(node.extra["ujt_endpoint"], node.values["unified_job_template"])
            if node.extra["ujt_endpoint"] != "job_templates":
                raise Invalid({"detail": [f"workflow node {node.values['identifier']}: only job templates run here"]})
            child, _ = self.launch(target, {"extra_vars": {**node.values["extra_data"], **extra_vars}}, workflow=job)
            job.extra["jobs"].append(child.id)
            status = self.wait(child, 7200)
            edges = ["always_nodes"] + (["success_nodes"] if status == "successful" else ["failure_nodes"])
            following = [c for e in edges for c in node.extra.get(e, [])]
            if status != "successful" and not node.extra.get("failure_nodes") and not node.extra.get("always_nodes"):
                unhandled_failure = True
            todo.extend(following)
        return "failed" if unhandled_failure else "successful"
