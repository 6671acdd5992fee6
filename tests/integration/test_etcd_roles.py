"""The lab's etcd security on a real etcd: TLS only, and each component's certificate
can do exactly what its role allows.

One member with the certificates, users and roles `lab up` makes (lab_certs,
etcd_tls.lab_roles, etcd_server.enable_auth). Every component tries to read and
write one key of every kind the lab has, and etcd's answer must be what the role
table says: no write a role does not grant gets through.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from discovery import flannel, schema
from discovery.errors import DiscoveryError, EtcdUnavailable
from discovery.settings import Settings
from discovery.store import EtcdStore
from labs import docker_tls, etcd_tls, lab_certs
from labs.etcd_server import EtcdMember, EtcdServerError, TlsFiles, enable_auth, etcdctl
from labs.testing.waiting import wait_until
from tests.prerequisites import require_binary

pytestmark = pytest.mark.etcd

LAB = Settings()  # the lab's prefixes and domain: /skydns, /coreos.com/network, lab
ROLES = etcd_tls.lab_roles(LAB)

# One key of every kind the lab keeps, and a few it does not.
KEYS = {
    "network config": flannel.config_key(LAB.network_prefix),
    "subnet lease": LAB.network_prefix + "/subnets/10.5.7.0-24",
    "tunnel report": LAB.network_prefix + "/observed/10.5.7.0-24",
    "service record": schema.endpoint_key(LAB.prefix, LAB.domain, "web", "abc-10-5-7-2-80tcp"),
    "node record": schema.node_key(LAB.prefix, LAB.domain, "host7"),
    "exercise 08 key": "/ex08/greeting",
    "another key": "/elsewhere/x",
}


@dataclasses.dataclass(frozen=True)
class SecuredEtcd:
    member: EtcdMember
    certs: etcd_tls.EtcdCertLayout
    layout: docker_tls.CertLayout

    def settings(self, component: str) -> Settings:
        base = Settings(etcd_endpoints=(self.member.client_url,), request_timeout_s=1.0)
        return self.certs.client(component).settings(base)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredEtcd]:
    root = tmp_path_factory.mktemp("secured-etcd")
    layout = docker_tls.CertLayout(root)
    certs = lab_certs.ensure_etcd_certs(layout, "t", {"etcd1": "127.0.0.1"}, etcd_tls.COMPONENTS)
    tls = TlsFiles(str(certs.ca_file), str(certs.cert_file("etcd1")), str(certs.key_file("etcd1")))
    member = EtcdMember("etcd1", root / "etcd" / "etcd1.data", tls=tls)
    member.start()
    try:
        assert member.client_url.startswith("https://") and member.peer_url.startswith("https://")
        enable_auth([member.client_url], certs.client(etcd_tls.ROOT), etcd_tls.auth_commands(ROLES))
        secured = SecuredEtcd(member, certs, layout)
        for key in KEYS.values():  # something to read, written as root
            etcdctl([member.client_url], "put", key, "seed", tls=certs.client(etcd_tls.ROOT))
        yield secured
    finally:
        member.stop()


async def _can_write(settings: Settings, key: str) -> bool:
    async with EtcdStore(settings) as store:
        try:
            await store.put(key, b"written")
        except DiscoveryError as error:
            assert "permission denied" in str(error), error
            return False
    return True


async def _can_read(settings: Settings, key: str) -> bool:
    async with EtcdStore(settings) as store:
        try:
            await store.get(key)
        except DiscoveryError as error:
            assert "permission denied" in str(error), error
            return False
    return True


@pytest.mark.parametrize("component", etcd_tls.COMPONENTS)
async def test_each_certificate_writes_exactly_what_its_role_allows(secured, component):
    role = etcd_tls.role_of(ROLES, component)
    settings = secured.settings(component)
    allowed = {kind for kind, key in KEYS.items() if await _can_write(settings, key)}
    expected = {kind for kind, key in KEYS.items() if role.may_write(key)}
    assert allowed == expected
    if component != etcd_tls.ROOT:
        assert "another key" not in allowed  # nobody but root writes outside the lab's keys


@pytest.mark.parametrize("component", etcd_tls.COMPONENTS)
async def test_each_certificate_reads_exactly_what_its_role_allows(secured, component):
    role = etcd_tls.role_of(ROLES, component)
    settings = secured.settings(component)
    readable = {kind for kind, key in KEYS.items() if await _can_read(settings, key)}
    assert readable == {kind for kind, key in KEYS.items() if role.may_read(key)}


def test_the_roles_are_least_privilege_as_the_table_says():
    writes = {
        role.name: {kind for kind, key in KEYS.items() if role.may_write(key)} for role in ROLES
    }
    assert writes[etcd_tls.NETWORK_AGENT] == {"subnet lease", "tunnel report"}
    assert writes[etcd_tls.SERVICES_AGENT] == {"service record", "node record"}
    assert writes[etcd_tls.DNS_SERVER] == writes[etcd_tls.MAP] == set()
    assert writes[etcd_tls.LEARNER] == {"service record", "exercise 08 key"}
    assert writes[etcd_tls.ROOT] == set(KEYS)


async def test_agents_hold_their_records_under_a_lease_they_may_revoke(secured):
    """Leases: an agent grants one, attaches its records, and revokes it on the way out
    (etcd checks the revoker may write every key attached)."""
    for component, kind in ((etcd_tls.NETWORK_AGENT, "subnet lease"),
                            (etcd_tls.SERVICES_AGENT, "node record")):  # fmt: skip
        async with EtcdStore(secured.settings(component)) as store:
            lease = await store.grant_lease(10)
            await store.put(KEYS[kind], b"held", lease)
            await store.revoke_lease(lease)
            assert await store.get(KEYS[kind]) is None


async def test_watches_need_read_on_the_whole_prefix(secured):
    dns = secured.settings(etcd_tls.DNS_SERVER)
    root = schema.domain_root(LAB.prefix, LAB.domain) + "/"
    async with EtcdStore(dns) as store:
        items, _ = await store.get_prefix(root)
        assert KEYS["service record"] in items
        with pytest.raises(DiscoveryError, match="permission denied"):
            await store.get_prefix(flannel.subnets_prefix(LAB.network_prefix))


async def test_a_certificate_of_the_lab_s_ca_naming_no_etcd_user_is_refused(secured, tmp_path):
    ca = lab_certs.Issued(secured.layout.ca_cert.read_bytes(), secured.layout.ca_key.read_bytes())
    intruder = lab_certs.issue(etcd_tls.component_spec("intruder", lab_certs.now()), ca)
    settings = _with_files(secured, tmp_path, intruder)
    for key in (KEYS["service record"], KEYS["another key"]):
        assert not await _can_read(settings, key)
        assert not await _can_write(settings, key)


async def test_a_plain_http_client_is_refused(secured):
    plain = Settings(
        etcd_endpoints=(secured.member.client_url.replace("https://", "http://"),),
        request_timeout_s=1.0,
    )
    async with EtcdStore(plain) as store:
        with pytest.raises(EtcdUnavailable, match="serves only TLS closes plain http"):
            await store.get(KEYS["service record"])
    with pytest.raises(EtcdServerError):
        etcdctl([plain.etcd_endpoints[0]], "--dial-timeout=1s", "--command-timeout=2s",
                "get", "/x")  # fmt: skip


async def test_a_client_without_a_certificate_is_refused_in_one_line(secured):
    learner = secured.settings(etcd_tls.LEARNER)
    ca_only = dataclasses.replace(learner, tls_cert_file=None, tls_key_file=None)
    async with EtcdStore(ca_only) as store:
        with pytest.raises(EtcdUnavailable) as raised:
            await store.get(KEYS["service record"])
    message = str(raised.value)
    assert "TLS handshake failed" in message and "\n" not in message


async def test_a_certificate_of_another_ca_or_expired_is_refused(secured, tmp_path):
    other_ca = lab_certs.issue(docker_tls.ca_spec("other", lab_certs.now()))
    foreign = lab_certs.issue(etcd_tls.component_spec(etcd_tls.LEARNER, lab_certs.now()), other_ca)
    ca = lab_certs.Issued(secured.layout.ca_cert.read_bytes(), secured.layout.ca_key.read_bytes())
    long_ago = lab_certs.now() - dt.timedelta(days=30)
    expired = lab_certs.issue(etcd_tls.component_spec(etcd_tls.LEARNER, long_ago, days=1), ca)
    for issued in (foreign, expired):
        settings = _with_files(secured, tmp_path, issued)
        async with EtcdStore(settings) as store:
            with pytest.raises(EtcdUnavailable, match="etcd refused this client's certificate"):
                await store.get(KEYS["service record"])


async def test_a_client_that_does_not_trust_the_member_says_so(secured, tmp_path):
    other_ca = lab_certs.issue(docker_tls.ca_spec("other", lab_certs.now()))
    (tmp_path / "other-ca.pem").write_bytes(other_ca.cert_pem)
    learner = secured.settings(etcd_tls.LEARNER)
    distrusting = dataclasses.replace(learner, tls_ca_file=str(tmp_path / "other-ca.pem"))
    async with EtcdStore(distrusting) as store:
        with pytest.raises(EtcdUnavailable, match="does not trust etcd's certificate"):
            await store.get(KEYS["service record"])


def _with_files(secured: SecuredEtcd, directory: Path, issued: lab_certs.Issued) -> Settings:
    cert, key = directory / f"client-{id(issued)}.pem", directory / f"client-{id(issued)}-key.pem"
    cert.write_bytes(issued.cert_pem)
    key.write_bytes(issued.key_pem)
    learner = secured.settings(etcd_tls.LEARNER)
    return dataclasses.replace(learner, tls_cert_file=str(cert), tls_key_file=str(key))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_dns_server_with_another_component_s_certificate_says_so_once_and_keeps_serving(
    secured, tmp_path
):
    """The DNS server handed the network agent's certificate: etcd refuses its reads; it
    says so in one line, keeps answering, and never crashes."""
    require_binary("dig")
    port = _free_port()
    log = tmp_path / "dns.log"
    wrong = secured.certs.client(etcd_tls.NETWORK_AGENT)
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "discovery-dns"), "--listen", f"127.0.0.1:{port}",
             "--etcd-endpoints", secured.member.client_url, *wrong.flags()],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until(lambda: "permission denied" in log.read_text(), 10, "the refusal in the log")
        soa = subprocess.run(
            ["dig", "+time=1", "+tries=3", "-p", str(port), "@127.0.0.1", "lab", "SOA"],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        # It answers (with no catalog ever read: SERVFAIL, as a resolver expects) and lives.
        assert "status: SERVFAIL" in soa.stdout, soa.stdout + soa.stderr
        assert server.poll() is None
        refusals = [line for line in log.read_text().splitlines() if "permission denied" in line]
        assert len(refusals) == 1, refusals
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_discoveryctl_with_a_read_only_certificate_is_refused_in_one_line(secured):
    dns = secured.certs.client(etcd_tls.DNS_SERVER)
    result = subprocess.run(
        [sys.executable, "-m", "discovery.cli", "--etcd-endpoints", secured.member.client_url,
         *dns.flags(), "register", "hand-made", "--address", "10.5.7.9"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "discoveryctl: etcd refused put "
        "/skydns/lab/service/hand-made/manual-10-5-7-9-ip: etcdserver: permission denied"
    ]
