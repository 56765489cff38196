"""TLS and mutual TLS on the gRPC port, configured the way an operator does (PEM files in the settings)."""

from __future__ import annotations

import datetime
import ipaddress

import grpc
import pytest
from toy import Echo, ToyJob

from flyteconnectors.core.host.app import server_options
from flyteconnectors.core.host.settings import load_settings
from flyteconnectors.core.testing.host import HostThread, PropellerClient

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class CA:
    def __init__(self, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, name: str, *, server: bool) -> tuple[bytes, bytes]:
        """(certificate PEM, key PEM) for a server on 127.0.0.1/localhost or for a client."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (
            x509.CertificateBuilder().subject_name(_name(name)).issuer_name(self.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        )
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    ca, rogue = CA("flyteconnectors test CA"), CA("someone else's CA")
    files = {"ca": ca.pem}
    files["server_cert"], files["server_key"] = ca.issue("connector-host", server=True)
    files["client_cert"], files["client_key"] = ca.issue("propeller", server=False)
    files["rogue_cert"], files["rogue_key"] = rogue.issue("intruder", server=False)
    paths = {}
    for name, data in files.items():
        (root / f"{name}.pem").write_bytes(data)
        paths[name] = str(root / f"{name}.pem")
    return files, paths


def tls_host(pki, *, mtls: bool) -> HostThread:
    _files, paths = pki
    env = {"FLYTECONNECTORS_TLS_CERT": paths["server_cert"], "FLYTECONNECTORS_TLS_KEY": paths["server_key"]}
    if mtls:
        env["FLYTECONNECTORS_TLS_CLIENT_CA"] = paths["ca"]
    settings = load_settings(env=env)
    return HostThread([ToyJob, Echo], server_options=server_options(settings))


def list_agents(host: HostThread, credentials: grpc.ChannelCredentials | None) -> list:
    with (grpc.secure_channel(host.address, credentials) if credentials else
          grpc.insecure_channel(host.address)) as channel:
        return PropellerClient(channel, timeout=3).list_agents()


def test_tls_serves_clients_that_trust_the_ca_and_refuses_plaintext(pki):
    files, _ = pki
    with tls_host(pki, mtls=False) as host:
        agents = list_agents(host, grpc.ssl_channel_credentials(root_certificates=files["ca"]))
        assert {a.name for a in agents} == {"Toy", "Echo"}

        with pytest.raises(grpc.RpcError) as err:
            list_agents(host, None)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mtls_accepts_a_client_certificate_from_the_ca(pki):
    files, _ = pki
    with tls_host(pki, mtls=True) as host:
        creds = grpc.ssl_channel_credentials(files["ca"], files["client_key"], files["client_cert"])
        assert {a.name for a in list_agents(host, creds)} == {"Toy", "Echo"}


@pytest.mark.parametrize("client", ["no certificate", "certificate from another CA"])
def test_mtls_refuses_clients_without_a_valid_certificate(pki, client):
    files, _ = pki
    if client == "no certificate":
        creds = grpc.ssl_channel_credentials(files["ca"])
    else:
        creds = grpc.ssl_channel_credentials(files["ca"], files["rogue_key"], files["rogue_cert"])
    with tls_host(pki, mtls=True) as host, pytest.raises(grpc.RpcError) as err:
        list_agents(host, creds)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
