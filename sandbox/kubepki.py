"""Certificates and kubeconfigs of the sandbox's Kubernetes, made once and kept (x509 with `cryptography`).

One CA of the sandbox's own signs every certificate, as kubeadm lays them out: etcd's server and the API server's
etcd client; the API server's serving certificate (the `kubernetes` Service names and address, the node address,
127.0.0.1 where the host reaches it); its kubelet client; the kubelet's serving certificate and its client
`system:node:<node>` in `system:nodes` (Node authorizer); the controller-manager, the scheduler and kube-proxy as
themselves; the admin `kubernetes-admin` in group `kubeadm:cluster-admins`, which `up` binds to cluster-admin with
the break-glass `system:masters` certificate (used for nothing else); and the service-account signing keys.
ECDSA P-256 keys: quick to make, accepted by every component.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID = dt.timedelta(days=3650)  # a sandbox's data may be kept for long; nothing here guards anything real
ADMIN_USER = "kubernetes-admin"
ADMIN_GROUP = "kubeadm:cluster-admins"


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())  # fmt: skip


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    return x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


class ClusterPKI:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        self.ca_key, self.ca_cert = self._ca()

    def path(self, stem: str, suffix: str = "crt") -> Path:
        return self.dir / f"{stem}.{suffix}"

    def _save(self, stem: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        _write(self.path(stem, "key"), _key_pem(key), 0o600)
        _write(self.path(stem), cert.public_bytes(serialization.Encoding.PEM), 0o644)

    def _ca(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key_file, cert_file = self.path("ca", "key"), self.path("ca")
        if key_file.exists() and cert_file.exists():
            key = serialization.load_pem_private_key(key_file.read_bytes(), None)
            return key, x509.load_pem_x509_certificate(cert_file.read_bytes())  # type: ignore[return-value]
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        name = _name("carbon254.mlflow sandbox Kubernetes CA")
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + VALID)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )  # fmt: skip
        self._save("ca", key, cert)
        return key, cert

    def leaf(self, stem: str, common_name: str, organizations: tuple[str, ...] = (), *, server: bool = False,
             client: bool = False, dns: tuple[str, ...] = (), ips: tuple[str, ...] = ()) -> None:  # fmt: skip
        """A certificate signed by the CA, made unless it exists with the same names."""
        sans = [x509.DNSName(name) for name in dns] + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        if self.path(stem).exists():
            current = x509.load_pem_x509_certificate(self.path(stem).read_bytes())
            try:
                had = list(current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
            except x509.ExtensionNotFound:
                had = []
            if current.subject == _name(common_name, organizations) and set(had) == set(sans):
                return
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] * server + [ExtendedKeyUsageOID.CLIENT_AUTH] * client
        builder = (
            x509.CertificateBuilder().subject_name(_name(common_name, organizations))
            .issuer_name(self.ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + VALID)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()), critical=False)
        )  # fmt: skip
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        self._save(stem, key, builder.sign(self.ca_key, hashes.SHA256()))

    def service_account_keys(self) -> None:
        if self.path("sa", "key").exists():
            return
        key = ec.generate_private_key(ec.SECP256R1())
        _write(self.path("sa", "key"), _key_pem(key), 0o600)
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        _write(self.path("sa", "pub"), public, 0o644)

    def ensure(self, node_name: str, node_ip: str, service_ip: str) -> None:
        loopback = ("127.0.0.1",)
        self.leaf("etcd-server", "etcd-server", server=True, client=True, dns=("localhost",), ips=loopback)
        self.leaf("apiserver-etcd-client", "kube-apiserver-etcd-client", client=True)
        self.leaf("apiserver", "kube-apiserver", server=True, ips=(service_ip, node_ip, *loopback),
                  dns=("kubernetes", "kubernetes.default", "kubernetes.default.svc",
                       "kubernetes.default.svc.cluster.local", "localhost", node_name))  # fmt: skip
        self.leaf("apiserver-kubelet-client", "kube-apiserver-kubelet-client", (ADMIN_GROUP,), client=True)
        self.leaf("super-admin", "kubernetes-super-admin", ("system:masters",), client=True)
        self.leaf("admin", ADMIN_USER, (ADMIN_GROUP,), client=True)
        self.leaf("controller-manager", "system:kube-controller-manager", client=True)
        self.leaf("scheduler", "system:kube-scheduler", client=True)
        self.leaf("kube-proxy", "system:kube-proxy", client=True)
        self.kubelet(node_name, node_ip)
        self.service_account_keys()

    def kubelet(self, node_name: str, node_ip: str, suffix: str = "") -> None:
        """A node's kubelet: its client `system:node:<node>` (Node authorizer) and its serving certificate
        (`kubelet-client<suffix>`, `kubelet-server<suffix>`)."""
        self.leaf(f"kubelet-client{suffix}", f"system:node:{node_name}", ("system:nodes",), client=True)
        self.leaf(f"kubelet-server{suffix}", node_name, server=True, dns=(node_name, "localhost"),
                  ips=(node_ip, "127.0.0.1"))  # fmt: skip

    def kubeconfig(self, path: Path, stem: str, user: str, server: str, cluster: str = "carbon254-sandbox") -> None:
        """A kubeconfig carrying the CA and the client certificate `stem` (mode 0600: it holds the key)."""

        def b64(file: Path) -> str:
            return base64.b64encode(file.read_bytes()).decode()

        text = (
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: {cluster}\n  cluster:\n    server: {server}\n"
            f"    certificate-authority-data: {b64(self.path('ca'))}\n"
            f"users:\n- name: {user}\n  user:\n"
            f"    client-certificate-data: {b64(self.path(stem))}\n"
            f"    client-key-data: {b64(self.path(stem, 'key'))}\n"
            f"contexts:\n- name: {user}@{cluster}\n  context:\n    cluster: {cluster}\n    user: {user}\n"
            f"current-context: {user}@{cluster}\n"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, text.encode(), 0o600)
