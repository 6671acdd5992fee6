"""The store against an etcd that demands TLS client certificates, or a password."""

import subprocess
from pathlib import Path

import pytest

from discovery.errors import DiscoveryError, EtcdUnavailable
from discovery.store import EtcdStore
from labs.etcd_server import EtcdCluster, EtcdMember, TlsFiles, etcdctl
from tests.fixtures.etcd import settings_for
from tests.prerequisites import require_binary

pytestmark = pytest.mark.etcd


def make_certificates(directory: Path) -> TlsFiles:
    """A throw-away CA and one certificate for 127.0.0.1, good for server and client."""
    require_binary("openssl")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=lab-ca",
            "-keyout", "ca.key", "-out", "ca.pem")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "member.key", "-out", "member.csr")  # fmt: skip
    (directory / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"
    )
    openssl("x509", "-req", "-in", "member.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-extfile", "ext.cnf",
            "-out", "member.pem")  # fmt: skip
    return TlsFiles(
        str(directory / "ca.pem"), str(directory / "member.pem"), str(directory / "member.key")
    )


async def test_tls_with_client_certificates(tmp_path):
    tls = make_certificates(tmp_path)
    member = EtcdMember("tls1", tmp_path / "data" / "tls1.data", tls=tls)
    member.start()
    try:
        assert member.client_url.startswith("https://")
        settings = settings_for(
            [member.client_url],
            tls_ca_file=tls.ca_file,
            tls_cert_file=tls.cert_file,
            tls_key_file=tls.key_file,
        )
        async with EtcdStore(settings) as store:
            await store.put(f"{settings.prefix}/secret", b"1")
            assert (await store.get(f"{settings.prefix}/secret")).value == b"1"
        # Trusting the CA but presenting no client certificate is refused.
        no_client_cert = settings_for([member.client_url], tls_ca_file=tls.ca_file)
        async with EtcdStore(no_client_cert) as store:
            with pytest.raises(EtcdUnavailable, match=r"https://127\.0\.0\.1"):
                await store.get("/x")
    finally:
        member.stop()


async def test_user_and_password(tmp_path):
    with EtcdCluster(1, base_dir=tmp_path / "etcd") as cluster:
        endpoints = cluster.endpoints
        etcdctl(endpoints, "user", "add", "root:lab-secret")
        etcdctl(endpoints, "auth", "enable")
        good = settings_for(endpoints, etcd_user="root", etcd_password="lab-secret")
        async with EtcdStore(good) as store:
            await store.put(f"{good.prefix}/k", b"v")
            assert (await store.get(f"{good.prefix}/k")).value == b"v"
        anonymous = settings_for(endpoints)
        async with EtcdStore(anonymous) as store:
            with pytest.raises(DiscoveryError, match="etcd refused put"):
                await store.put(f"{anonymous.prefix}/k", b"v")
