#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, carbon254 platform engineering <platform@254carbon.com>
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type
# ruff: noqa: E402 - validate-modules wants the imports after DOCUMENTATION, EXAMPLES and RETURN

DOCUMENTATION = r"""
module: cloudflare_access_app
short_description: Protect a hostname with a Cloudflare Access application and an allow policy
version_added: 0.1.0
description:
  - Ensures a reusable Access policy named O(policy_name) (C(/accounts/{account_id}/access/policies)) that
    allows the identities in O(include) (and O(require), O(exclude)), and a self-hosted Access application for
    O(domain) (C(/accounts/{account_id}/access/apps)) that uses exactly that policy.
  - Lists before it writes, and writes only what differs (C(POST) to create, C(PUT) to update).
  - The application is found by O(domain), the policy by O(policy_name). With O(state=absent) the application
    is deleted only when its name is O(name), and the policy only when no other application still uses it.
author:
  - carbon254 platform team (@carbon254)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - carbon254.mlflow.cloudflare_api
attributes:
  check_mode:
    support: full
    details: Reads the current application and policy and reports the change without writing.
  diff_mode:
    support: full
    details: Shows the application and the policy before and after.
  platform:
    support: full
    platforms: posix
options:
  account_id:
    description:
      - Identifier of the account.
    type: str
    required: true
  domain:
    description:
      - Hostname (and optional path) the application protects, for example V(mlflow.254carbon.com).
    type: str
    required: true
  name:
    description:
      - Name of the application.
    type: str
    required: true
  policy_name:
    description:
      - Name of the reusable allow policy.
    type: str
    required: true
  session_duration:
    description:
      - How long an Access session lasts, for example V(24h) or V(30m).
    type: str
    default: 24h
  allowed_idps:
    description:
      - Identifiers of the identity providers users may log in with; empty allows every configured one.
    type: list
    elements: str
    default: []
  auto_redirect_to_identity:
    description:
      - Skip the identity provider selection page (needs exactly one O(allowed_idps)).
    type: bool
    default: false
  include:
    description:
      - >-
        Access rules of which any one admits a user, in the API's form, for example
        C({"email": {"email": "alice@254carbon.com"}}), C({"email_domain": {"domain": "254carbon.com"}}) or
        C({"group": {"id": "..."}}).
      - Required (non-empty) with O(state=present).
    type: list
    elements: dict
    default: []
  require:
    description:
      - >-
        Access rules every admitted user must also satisfy, for example C({"login_method": {"id": "..."}}).
    type: list
    elements: dict
    default: []
  exclude:
    description:
      - Access rules that refuse a user whatever else matches.
    type: list
    elements: dict
    default: []
  state:
    description:
      - V(present) creates or updates the policy and the application; V(absent) deletes them (see above).
    type: str
    choices: [present, absent]
    default: present
seealso:
  - name: Access applications (Cloudflare API)
    description: C(/accounts/{account_id}/access/apps).
    link: https://developers.cloudflare.com/api/resources/zero_trust/subresources/access/subresources/applications/
  - name: Access reusable policies (Cloudflare API)
    description: C(/accounts/{account_id}/access/policies).
    link: https://developers.cloudflare.com/api/resources/zero_trust/subresources/access/subresources/policies/
"""

EXAMPLES = r"""
- name: Only 254carbon.com staff reach MLflow
  carbon254.mlflow.cloudflare_access_app:
    account_id: 0123456789abcdef0123456789abcdef
    domain: mlflow.254carbon.com
    name: MLflow
    policy_name: MLflow - allow
    include:
      - email_domain: {domain: 254carbon.com}
    api_token: "{{ vault_cloudflare_api_token }}"
"""

RETURN = r"""
app:
  description: The application after the change (as it would be, in check mode); empty when absent.
  returned: success
  type: dict
policy:
  description: The policy after the change (as it would be, in check mode); empty when absent.
  returned: success
  type: dict
api:
  description: Requests this module sent (C(requests)), how many wrote (C(writes)) and were retried (C(retries)).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.carbon254.mlflow.plugins.module_utils.cloudflare_api import (
    CLOUDFLARE_MODULE_KWARGS,
    CloudflareClient,
    CloudflareError,
    cloudflare_argument_spec,
    path_segment,
)

PLANNED_ID = "(created by this run)"


def policy_differs(current, desired):
    for key, value in desired.items():
        if key == "name":
            continue
        default = [] if isinstance(value, list) else None
        if current.get(key, default) != value:
            return True
    return False


def app_view(app):
    """The fields of an application this module manages, in the form it sends them."""
    return dict(
        name=app.get("name"),
        domain=app.get("domain"),
        type=app.get("type"),
        session_duration=app.get("session_duration"),
        allowed_idps=sorted(app.get("allowed_idps") or []),
        auto_redirect_to_identity=bool(app.get("auto_redirect_to_identity")),
        policies=[
            dict(id=p.get("id"), precedence=p.get("precedence", i + 1)) for i, p in enumerate(app.get("policies") or [])
        ],
    )


def remove(module, client, base, app, policy, all_apps):  # noqa: PLR0917
    """Delete the application (when its name is ours) and the policy (when no other application uses it)."""
    changed = False
    after = dict(app={}, policy={})
    if app and app.get("name") == module.params["name"]:
        changed = True
        if not module.check_mode:
            client.request("DELETE", "%s/apps/%s" % (base, path_segment(app["id"])))
    elif app:
        after["app"] = app_view(app)
    if policy:
        deleted_id = app.get("id") if changed else None
        users = [
            a
            for a in all_apps
            if a.get("id") != deleted_id and any(p.get("id") == policy["id"] for p in a.get("policies") or [])
        ]
        if users:
            after["policy"] = dict(policy)
        else:
            changed = True
            if not module.check_mode:
                client.request("DELETE", "%s/policies/%s" % (base, path_segment(policy["id"])))
    return changed, after


def ensure_policy(module, client, base, policy):
    params = module.params
    desired = dict(
        name=params["policy_name"],
        decision="allow",
        include=params["include"],
        require=params["require"],
        exclude=params["exclude"],
        session_duration=params["session_duration"],
    )
    if not policy:
        if module.check_mode:
            return True, dict(desired, id=PLANNED_ID)
        return True, client.request("POST", base + "/policies", body=desired)["result"]
    if not policy_differs(policy, desired):
        return False, policy
    if module.check_mode:
        return True, dict(policy, **desired)
    return True, client.request("PUT", "%s/policies/%s" % (base, path_segment(policy["id"])), body=desired)["result"]


def ensure_app(module, client, base, app, policy):
    params = module.params
    desired = dict(
        name=params["name"],
        domain=params["domain"].lower(),
        type="self_hosted",
        session_duration=params["session_duration"],
        allowed_idps=sorted(params["allowed_idps"]),
        auto_redirect_to_identity=params["auto_redirect_to_identity"],
        policies=[dict(id=policy["id"], precedence=1)],
    )
    if not app:
        if module.check_mode:
            return True, desired
        return True, client.request("POST", base + "/apps", body=desired)["result"]
    if app_view(app) == desired:
        return False, app
    if module.check_mode:
        return True, dict(app, **desired)
    return True, client.request("PUT", "%s/apps/%s" % (base, path_segment(app["id"])), body=desired)["result"]


def main():
    argument_spec = cloudflare_argument_spec()
    argument_spec.update(
        account_id=dict(type="str", required=True),
        domain=dict(type="str", required=True),
        name=dict(type="str", required=True),
        policy_name=dict(type="str", required=True),
        session_duration=dict(type="str", default="24h"),
        allowed_idps=dict(type="list", elements="str", default=[]),
        auto_redirect_to_identity=dict(type="bool", default=False),
        include=dict(type="list", elements="dict", default=[]),
        require=dict(type="list", elements="dict", default=[]),
        exclude=dict(type="list", elements="dict", default=[]),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, **CLOUDFLARE_MODULE_KWARGS)
    params = module.params
    if params["state"] == "present" and not params["include"]:
        module.fail_json(msg="include is empty: the policy would admit nobody")
    client = CloudflareClient(module)
    base = "/accounts/%s/access" % path_segment(params["account_id"])
    domain = params["domain"].lower()
    try:
        policy = next((p for p in client.list(base + "/policies") if p.get("name") == params["policy_name"]), {})
        all_apps = client.list(base + "/apps")
        app = next((a for a in all_apps if (a.get("domain") or "").lower() == domain), {})
        before = dict(app=app_view(app) if app else {}, policy=dict(policy))
        if params["state"] == "absent":
            changed, after = remove(module, client, base, app, policy, all_apps)
            module.exit_json(
                changed=changed,
                app=after["app"],
                policy=after["policy"],
                diff=dict(before=before, after=after),
                api=client.stats(),
            )
        policy_changed, policy = ensure_policy(module, client, base, policy)
        app_changed, app = ensure_app(module, client, base, app, policy)
    except CloudflareError as exc:
        module.fail_json(msg=str(exc), api=client.stats())
    after = dict(app=app_view(app), policy=dict(policy))
    module.exit_json(
        changed=policy_changed or app_changed,
        app=app,
        policy=policy,
        diff=dict(before=before, after=after),
        api=client.stats(),
    )


if __name__ == "__main__":
    main()
