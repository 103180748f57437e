# -*- coding: utf-8 -*-
# Copyright: (c) 2026, carbon254 platform engineering <platform@254carbon.com>
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # How the carbon254.mlflow Cloudflare modules reach the Cloudflare API. Keep in sync with
    # plugins/module_utils/cloudflare_api.py:cloudflare_argument_spec().
    DOCUMENTATION = r"""
options:
  api_token:
    description:
      - "Cloudflare API token (preferred). Sent as C(Authorization: Bearer <token>)."
      - Exactly one of O(api_token) or O(account_api_key) (with O(account_email)) is required.
    type: str
  account_email:
    description:
      - Email of the Cloudflare user, for the global API key (O(account_api_key)).
    type: str
  account_api_key:
    description:
      - Global API key of O(account_email). Prefer a scoped O(api_token).
    type: str
  api_base_url:
    description:
      - Base URL of the Cloudflare v4 API.
    type: str
    default: https://api.cloudflare.com/client/v4
  validate_certs:
    description:
      - Verify the API's TLS certificate. The standard C(SSL_CERT_FILE) and C(https_proxy) environment
        variables are honoured.
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for each HTTP answer.
    type: int
    default: 30
  max_retries:
    description:
      - How many times to retry a request answered with HTTP 429 or 5xx, or not answered at all.
    type: int
    default: 5
  retry_delay:
    description:
      - Seconds before the first retry; the wait doubles with every further retry (up to 60 seconds), and is
        at least what a C(Retry-After) header asks for.
    type: float
    default: 1.0
"""
