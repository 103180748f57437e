#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, carbon254 platform engineering <platform@254carbon.com>
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type
# ruff: noqa: E402 - validate-modules wants the imports after DOCUMENTATION, EXAMPLES and RETURN

DOCUMENTATION = r"""
module: cloudflare_tunnel_ingress
short_description: Route one hostname through a remotely managed Cloudflare tunnel
version_added: 0.1.0
description:
  - Reads the configuration of a remotely managed tunnel
    (C(GET /accounts/{account_id}/cfd_tunnel/{tunnel_id}/configurations)), sets or removes the ingress rule of
    O(hostname) (and O(path)), and writes the configuration back
    (C(PUT /accounts/{account_id}/cfd_tunnel/{tunnel_id}/configurations)) only when the rules differ.
  - The PUT replaces the whole configuration, so every other rule, the tunnel-wide C(originRequest) and the
    catch-all rule (the last rule, without hostname) are sent back unchanged. A new rule goes right before the
    catch-all; a configuration without a catch-all gets O(catch_all_service).
  - Fails for a tunnel whose configuration is managed locally (C(source=local)); render its config file instead.
author:
  - carbon254 platform team (@carbon254)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - carbon254.mlflow.cloudflare_api
attributes:
  check_mode:
    support: full
    details: Reads the configuration and reports the change without writing it.
  diff_mode:
    support: full
    details: Shows the ingress rules before and after.
  platform:
    support: full
    platforms: posix
options:
  account_id:
    description:
      - Identifier of the account owning the tunnel.
    type: str
    required: true
  tunnel_id:
    description:
      - UUID of the tunnel.
    type: str
    required: true
  hostname:
    description:
      - Public hostname the rule matches, for example V(mlflow.254carbon.com).
    type: str
    required: true
  path:
    description:
      - Path regular expression the rule matches as well; none matches every path.
    type: str
  service:
    description:
      - Origin the hostname is routed to, for example V(http://mlflow.mlflow.svc.cluster.local:5000).
      - Required with O(state=present).
    type: str
  origin_request:
    description:
      - C(originRequest) settings of the rule, with the API's camelCase keys (for example C(connectTimeout)).
    type: dict
    default: {}
  catch_all_service:
    description:
      - Service of the catch-all rule added when the configuration has none.
    type: str
    default: http_status:404
  state:
    description:
      - V(present) sets the rule; V(absent) removes the rules of O(hostname) and O(path), and nothing else.
    type: str
    choices: [present, absent]
    default: present
seealso:
  - name: Put tunnel configuration (Cloudflare API)
    description: C(PUT /accounts/{account_id}/cfd_tunnel/{tunnel_id}/configurations).
    link: https://developers.cloudflare.com/api/resources/zero_trust/subresources/tunnels/subresources/cloudflared/subresources/configurations/methods/update/
"""

EXAMPLES = r"""
- name: Route mlflow.254carbon.com to the MLflow service
  carbon254.mlflow.cloudflare_tunnel_ingress:
    account_id: 0123456789abcdef0123456789abcdef
    tunnel_id: c1a2b3c4-d5e6-4f70-8a9b-0c1d2e3f4a5b
    hostname: mlflow.254carbon.com
    service: http://mlflow.mlflow.svc.cluster.local:5000
    api_token: "{{ vault_cloudflare_api_token }}"
"""

RETURN = r"""
ingress:
  description: The ingress rules after the change (what a real run writes, in check mode).
  returned: success
  type: list
  elements: dict
  sample: [{"hostname": "mlflow.254carbon.com", "service": "http://mlflow.mlflow.svc.cluster.local:5000"},
           {"service": "http_status:404"}]
version:
  description: Configuration version the API reports after the change.
  returned: success
  type: int
api:
  description: Requests this module sent (C(requests)), how many wrote (C(writes)) and were retried (C(retries)).
  returned: always
  type: dict
"""

import copy

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.carbon254.mlflow.plugins.module_utils.cloudflare_api import (
    CLOUDFLARE_MODULE_KWARGS,
    CloudflareClient,
    CloudflareError,
    cloudflare_argument_spec,
    path_segment,
)


def is_catch_all(rule):
    return not rule.get("hostname") and not rule.get("path")


def desired_ingress(ingress, rule, state, catch_all_service):
    """The ingress list with `rule` set (present) or removed (absent); other rules keep their order."""
    hostname, path = rule["hostname"], rule.get("path")

    def matches(other):
        return other.get("hostname", "").lower() == hostname.lower() and other.get("path") == path

    rules = [r for r in ingress if not is_catch_all(r)]
    catch_all = [r for r in ingress if is_catch_all(r)][-1:] or [{"service": catch_all_service}]
    if state == "absent":
        return [r for r in rules if not matches(r)] + catch_all
    positions = [i for i, r in enumerate(rules) if matches(r)]
    if positions:
        rules[positions[0]] = rule
        rules = [r for i, r in enumerate(rules) if i not in positions[1:]]
    else:
        rules.append(rule)
    return rules + catch_all


def main():
    argument_spec = cloudflare_argument_spec()
    argument_spec.update(
        account_id=dict(type="str", required=True),
        tunnel_id=dict(type="str", required=True),
        hostname=dict(type="str", required=True),
        path=dict(type="str"),
        service=dict(type="str"),
        origin_request=dict(type="dict", default={}),
        catch_all_service=dict(type="str", default="http_status:404"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )
    kwargs = dict(CLOUDFLARE_MODULE_KWARGS, required_if=[("state", "present", ["service"])])
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, **kwargs)
    params = module.params
    client = CloudflareClient(module)
    path = "/accounts/%s/cfd_tunnel/%s/configurations" % (
        path_segment(params["account_id"]),
        path_segment(params["tunnel_id"]),
    )
    rule = {"hostname": params["hostname"].lower(), "service": params["service"]}
    if params["path"]:
        rule["path"] = params["path"]
    if params["origin_request"]:
        rule["originRequest"] = params["origin_request"]
    try:
        current = client.get(path) or {}
        if current.get("source") == "local":
            module.fail_json(
                msg="tunnel %s is managed locally (its configuration source is the cloudflared config "
                "file), so its ingress cannot be set through the API; render the config file "
                "instead" % params["tunnel_id"],
                api=client.stats(),
            )
        config = copy.deepcopy(current.get("config") or {})
        before = config.get("ingress") or []
        after = desired_ingress(before, rule, params["state"], params["catch_all_service"])
        changed = after != before
        if params["state"] == "absent" and not [r for r in before if not is_catch_all(r)]:
            changed = False  # nothing of ours to remove; do not add a catch-all to an empty configuration
            after = before
        version = current.get("version")
        if changed and not module.check_mode:
            config["ingress"] = after
            written = client.request("PUT", path, body={"config": config})["result"] or {}
            version = written.get("version", version)
    except CloudflareError as exc:
        module.fail_json(msg=str(exc), api=client.stats())
    module.exit_json(
        changed=changed,
        ingress=after,
        version=version,
        diff=dict(before={"ingress": before}, after={"ingress": after}),
        api=client.stats(),
    )


if __name__ == "__main__":
    main()
