#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, carbon254 platform engineering <platform@254carbon.com>
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type
# ruff: noqa: E402 - validate-modules wants the imports after DOCUMENTATION, EXAMPLES and RETURN

DOCUMENTATION = r"""
module: cloudflare_zone_info
short_description: Check Cloudflare credentials and look up a zone (and the DNS records of one name)
version_added: 0.1.0
description:
  - Verifies the credentials first - C(GET /user/tokens/verify) for an API token, which must be C(active);
    C(GET /user) for a global API key - and fails naming the problem when they are refused.
  - Then looks the zone up by name (C(GET /zones?name=)) and fails when no zone of that name is visible to the
    credentials.
  - With O(record), also returns every DNS record of that name (C(GET /zones/{zone_id}/dns_records?name=)).
  - Read-only; never reports a change.
author:
  - carbon254 platform team (@carbon254)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - carbon254.mlflow.cloudflare_api
attributes:
  check_mode:
    support: full
    details: Only reads, so it runs in check mode too.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
options:
  zone:
    description:
      - Name of the zone, for example V(254carbon.com).
    type: str
    required: true
  record:
    description:
      - Fully qualified name whose DNS records to return in RV(dns_records).
    type: str
seealso:
  - module: community.general.cloudflare_dns
  - name: Verify a token (Cloudflare API)
    description: C(GET /user/tokens/verify).
    link: https://developers.cloudflare.com/api/resources/user/subresources/tokens/methods/verify/
"""

EXAMPLES = r"""
- name: Check the token and find the zone
  carbon254.mlflow.cloudflare_zone_info:
    zone: 254carbon.com
    record: mlflow.254carbon.com
    api_token: "{{ vault_cloudflare_api_token }}"
  register: cf
"""

RETURN = r"""
credentials:
  description: What the credential check found.
  returned: always
  type: dict
  contains:
    type:
      description: V(token) or V(global_key).
      type: str
    status:
      description: Status of the token (V(active)); V(active) for a global key that was accepted.
      type: str
zone:
  description: The zone.
  returned: success
  type: dict
  contains:
    id:
      description: Zone identifier.
      type: str
    name:
      description: Zone name.
      type: str
    status:
      description: Zone status, for example V(active) or V(pending).
      type: str
    account_id:
      description: Identifier of the account owning the zone.
      type: str
dns_records:
  description: DNS records named O(record) (empty without O(record)), as the API returns them.
  returned: success
  type: list
  elements: dict
api:
  description: Requests this module sent (C(requests)), how many of them wrote (C(writes), always 0) and retried.
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


def main():
    argument_spec = cloudflare_argument_spec()
    argument_spec.update(zone=dict(type="str", required=True), record=dict(type="str"))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, **CLOUDFLARE_MODULE_KWARGS)
    client = CloudflareClient(module)
    zone_name = module.params["zone"].rstrip(".").lower()
    credentials = {}
    try:
        if module.params["api_token"]:
            credentials["type"] = "token"
            token = client.get("/user/tokens/verify")
            credentials["status"] = token.get("status")
            if token.get("status") != "active":
                module.fail_json(
                    msg="the API token is %s, not active" % token.get("status"),
                    credentials=credentials,
                    api=client.stats(),
                )
        else:
            credentials["type"] = "global_key"
            client.get("/user")
            credentials["status"] = "active"
    except CloudflareError as exc:
        module.fail_json(msg="the credentials were refused: %s" % exc, credentials=credentials, api=client.stats())
    try:
        zones = client.list("/zones", {"name": zone_name})
        matching = [z for z in zones if z.get("name", "").lower() == zone_name]
        if not matching:
            module.fail_json(
                msg="zone %s not found: no zone of that name is visible to these credentials "
                "(wrong name, another account, or the token lacks Zone Read)" % zone_name,
                credentials=credentials,
                api=client.stats(),
            )
        zone = matching[0]
        records = []
        if module.params["record"]:
            records = client.list(
                "/zones/%s/dns_records" % path_segment(zone["id"]),
                {"name": module.params["record"].rstrip(".").lower()},
            )
    except CloudflareError as exc:
        module.fail_json(msg=str(exc), credentials=credentials, api=client.stats())
    module.exit_json(
        changed=False,
        credentials=credentials,
        zone=dict(
            id=zone["id"],
            name=zone["name"],
            status=zone.get("status"),
            account_id=(zone.get("account") or {}).get("id"),
        ),
        dns_records=records,
        api=client.stats(),
    )


if __name__ == "__main__":
    main()
