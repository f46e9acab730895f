"""SSRF: internal addresses are refused at creation and at delivery; delivery connects to the checked address."""
import datetime as dt
import ipaddress
import socket
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from app.jobs.webhooks import run_due
from app.webhooks import service
from app.webhooks.models import WebhookAttempt, WebhookEndpoint
from app.webhooks.ssrf import BlockedAddress, blocked_reason, check_host_literal, resolve_target
from tests.webhooks.conftest import Receiver, emit, make_endpoint

REFUSED_URLS = [
    "http://127.0.0.1/hook", "http://10.0.0.1/hook", "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/hook", "http://[fd00:ec2::254]/", "http://192.168.1.10/", "http://172.16.0.1/",
    "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/", "http://100.64.0.1/", "http://224.0.0.1/",
    "http://localhost:8080/", "http://hooks.localhost/",
]


@pytest.mark.parametrize("address, allowed_in_development", [
    ("127.0.0.1", True), ("10.0.0.1", True), ("192.168.0.5", True), ("::1", True), ("fe80::1", True),
    ("169.254.169.254", False), ("fd00:ec2::254", False), ("0.0.0.0", False), ("::", False),
    ("224.0.0.251", False), ("ff02::1", False), ("::ffff:169.254.169.254", False),
])
def test_blocked_addresses(address, allowed_in_development):
    ip = ipaddress.ip_address(address)
    assert blocked_reason(ip, allow_private=False) is not None
    assert (blocked_reason(ip, allow_private=True) is None) == allowed_in_development


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700::6810:84e5", "8.8.8.8"])
def test_public_addresses_pass(address):
    assert blocked_reason(ipaddress.ip_address(address), allow_private=False) is None


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_internal_urls_are_refused_when_the_endpoint_is_created(db_session, book, settings, url):
    settings.allow_private = False
    with pytest.raises(service.EndpointInvalid) as refused:
        service.create_endpoint(db_session, book, settings, url=url, enabled_events=["*"])
    assert refused.value.param == "url"
    db_session.rollback()


def test_urls_that_are_not_http_are_refused(db_session, book, settings):
    for url in ("ftp://example.com/", "file:///etc/passwd", "https://user:pw@example.com/", "example.com/hook",
                "https://exa mple.com/", "https://example.com/#frag", "gopher://127.0.0.1:6379/"):
        with pytest.raises(service.EndpointInvalid):
            service.create_endpoint(db_session, book, settings, url=url, enabled_events=["*"])
    db_session.rollback()


def test_live_mode_requires_https(db_session, book, settings):
    live = type(book)(book.merchant_id, True)
    with pytest.raises(service.EndpointInvalid, match="https"):
        service.create_endpoint(db_session, live, settings, url="http://example.com/hook", enabled_events=["*"])
    endpoint, _ = service.create_endpoint(db_session, live, settings, url="https://example.com/hook",
                                          enabled_events=["*"])
    assert endpoint.livemode is True
    db_session.rollback()


def _stored_endpoint(db_session, book, settings, url: str) -> WebhookEndpoint:
    """An endpoint whose URL got past creation (allowed then, or a name that resolved elsewhere then)."""
    endpoint, _ = make_endpoint(db_session, book, settings, "https://hooks.example.com/")
    endpoint.url = url  # written straight to the row: creation-time checks are not what stops these
    db_session.commit()
    settings.allow_private = False
    return endpoint


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:{port}/", "http://10.0.0.1:{port}/", "http://169.254.169.254:{port}/latest/meta-data/",
    "http://[::1]:{port}/", "http://localhost:{port}/",
])
def test_ssrf_targets_are_refused_at_delivery(db_session, book, settings, receiver, url):
    receiver_port = receiver.port
    endpoint = _stored_endpoint(db_session, book, settings, url.format(port=receiver_port))
    [event] = emit(db_session, book)
    [result] = run_due(db_session, settings)
    assert result.error.startswith("blocked: ") and not result.succeeded
    assert receiver.requests == []  # nothing reached the receiver on 127.0.0.1
    attempt = db_session.scalars(select(WebhookAttempt).where(WebhookAttempt.event_id == event.id)).one()
    assert attempt.error.startswith("blocked: ") and attempt.endpoint_id == endpoint.id


def test_a_name_that_resolves_to_loopback_is_refused(db_session, book, settings, receiver):
    calls = []

    def rebinding_resolver(host, port, family=0, type=0, *args):
        calls.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    settings.resolver = rebinding_resolver
    _stored_endpoint(db_session, book, settings, f"http://hooks.attacker.example:{receiver.port}/")
    emit(db_session, book)
    [result] = run_due(db_session, settings)
    assert result.error == "blocked: hooks.attacker.example resolves to 127.0.0.1, a loopback address"
    assert calls == ["hooks.attacker.example"] and receiver.requests == []


def test_one_internal_address_among_public_ones_refuses_the_host():
    def mixed(host, port, family=0, type=0, *args):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port))]

    with pytest.raises(BlockedAddress, match="10.1.2.3"):
        resolve_target("https://mixed.example/", allow_private=False, resolver=mixed)


def test_delivery_connects_to_the_address_it_checked(db_session, book, settings, receiver):
    """One lookup per attempt; the request goes to that address with the name in the Host header."""
    answers = iter(["127.0.0.1", "10.9.9.9"])  # a second lookup would get another address
    calls = []

    def resolver(host, port, family=0, type=0, *args):
        calls.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    settings.resolver = resolver
    make_endpoint(db_session, book, settings, f"http://hooks.merchant.example:{receiver.port}/in",
                  receiver=receiver)
    emit(db_session, book)
    [result] = run_due(db_session, settings)
    assert result.succeeded, result.error
    assert calls == ["hooks.merchant.example"]
    [request] = receiver.requests
    assert request.headers["host"] == f"hooks.merchant.example:{receiver.port}" and request.verified


def test_check_host_literal_lets_names_through():
    check_host_literal("https://hooks.example.com/x", allow_private=False)  # resolved only at delivery
    with pytest.raises(BlockedAddress):
        check_host_literal("https://[::1]/x", allow_private=False)


# -- HTTPS: SNI and certificate checks use the name while connecting to the address --------------------------

def _self_signed(tmp_path, name: str):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def tls_receiver(tmp_path):
    cert_path, key_path = _self_signed(tmp_path, "hooks.merchant.example")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_path, key_path)
    instance = Receiver(tls=server_context).start()
    instance.cert_path = cert_path
    yield instance
    instance.stop()


def _to_loopback(host, port, family=0, type=0, *args):
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]


def test_https_delivery_verifies_the_certificate_for_the_name(db_session, book, settings, tls_receiver):
    settings.resolver = _to_loopback
    settings.verify = ssl.create_default_context(cafile=str(tls_receiver.cert_path))
    make_endpoint(db_session, book, settings, f"https://hooks.merchant.example:{tls_receiver.port}/tls",
                  receiver=tls_receiver)
    emit(db_session, book)
    [result] = run_due(db_session, settings)
    assert result.succeeded, result.error
    assert tls_receiver.requests[0].verified


def test_https_to_a_name_the_certificate_does_not_cover_fails(db_session, book, settings, tls_receiver):
    settings.resolver = _to_loopback
    settings.verify = ssl.create_default_context(cafile=str(tls_receiver.cert_path))
    make_endpoint(db_session, book, settings, f"https://other.merchant.example:{tls_receiver.port}/tls")
    emit(db_session, book)
    [result] = run_due(db_session, settings)
    assert not result.succeeded and result.error.startswith("TLS: ")
    assert tls_receiver.requests == []
