# -*- coding: utf-8 -*-
# Copyright: (c) 2026, carbon254 platform engineering <platform@254carbon.com>
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # How the carbon254.mlflow modules reach an MLflow tracking server. Keep in sync with
    # plugins/module_utils/mlflow_client.py:mlflow_connection_argument_spec().
    DOCUMENTATION = r"""
options:
  url:
    description:
      - Base URL of the MLflow tracking server, without a trailing path, for example
        V(http://mlflow.mlflow.svc.cluster.local:5000).
    type: str
    required: true
  host_header:
    description:
      - Send this value as the HTTP C(Host) header instead of the host and port taken from O(url).
      - MLflow's C(--allowed-hosts) check answers C(403 Invalid Host header) for Host values it does not list, so
        use this when the server is reached through another address than its public name (a
        C(kubectl port-forward) to V(127.0.0.1), a pod IP).
      - Only the header changes; TLS server name checks still use the host of O(url).
    type: str
  username:
    description:
      - User name for HTTP basic authentication (MLflow's C(--app-name basic-auth)).
    type: str
  password:
    description:
      - Password for HTTP basic authentication. Never logged.
    type: str
  validate_certs:
    description:
      - Verify the server's TLS certificate for C(https) URLs.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file with the certificate authorities to trust for C(https) URLs, instead of the system store.
    type: path
  timeout:
    description:
      - Timeout in seconds for each HTTP request (connect and each read).
    type: float
    default: 10
"""
