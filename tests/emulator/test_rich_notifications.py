"""Rich notifications: encryptedContent decrypts with an independent implementation of Microsoft's documented
algorithm, and validationTokens carry the documented claims and verify against the emulator's JWKS."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json

import jwt
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import NameOID

from tests.emulator.conftest import subscribe

ALICE = "alice@contoso.com"
GRAPH_PUBLISHER = "0bf30f3b-4a52-48df-9a82-234910c4a086"


def decrypt(encrypted: dict, private_key) -> dict:
    """https://learn.microsoft.com/graph/change-notifications-with-resource-data#decrypting-resource-data:
    RSA-OAEP (SHA-1) unwraps the key; HMAC-SHA256(key, data) must equal dataSignature; AES-256-CBC with
    IV = key[:16] and PKCS7 padding yields the JSON."""
    key = private_key.decrypt(base64.b64decode(encrypted["dataKey"]), rsa_padding.OAEP(
        mgf=rsa_padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None))
    assert len(key) == 32
    data = base64.b64decode(encrypted["data"])
    expected = base64.b64encode(hmac.new(key, data, hashlib.sha256).digest()).decode()
    assert hmac.compare_digest(expected, encrypted["dataSignature"]), "signature mismatch: do not decrypt"
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    return json.loads(padded[:-padded[-1]].decode("utf-8"))  # strip PKCS7 by hand


def _certificate():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "notifications")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=9))
            .sign(key, hashes.SHA256()))
    return key, cert


def test_encrypted_content_and_validation_tokens(emulator, graph, sink):
    emulator.add_user(ALICE)
    key, cert = _certificate()
    der = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    sub = subscribe(graph, sink, f"users/{ALICE}/mailFolders('Inbox')/messages?$select=subject,from,receivedDateTime",
                    includeResourceData=True, encryptionCertificate=der, encryptionCertificateId="key-2024",
                    expirationDateTime=(emulator.clock.now() + dt.timedelta(minutes=1440)).isoformat())
    message = emulator.deliver(ALICE, {"subject": "Rich", "from": {"name": "Eve", "address": "eve@evil.example"},
                                       "body": "secret body"})
    sink.wait(lambda s: s.items())
    post = next(p["body"] for p in sink.posts if p["path"] == "/notifications")
    (item,) = post["value"]
    encrypted = item["encryptedContent"]
    assert encrypted["encryptionCertificateId"] == "key-2024"
    assert encrypted["encryptionCertificateThumbprint"] == cert.fingerprint(hashes.SHA1()).hex().upper()
    resource = decrypt(encrypted, key)
    assert resource["id"] == message["id"] and resource["subject"] == "Rich"
    assert resource["from"]["emailAddress"]["address"] == "eve@evil.example"
    assert resource["receivedDateTime@odata.type"] == "#DateTimeOffset"
    assert "body" not in resource and "toRecipients" not in resource  # only the $select-ed properties

    (token,) = post["validationTokens"]  # one per app and tenant, at the collection level
    keys = requests.get(f"{emulator.url}/common/discovery/v2.0/keys", verify=str(emulator.ca_path)).json()
    jwk = next(k for k in keys["keys"] if k["kid"] == jwt.get_unverified_header(token)["kid"])
    claims = jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=["RS256"], audience=emulator.client_id,
                        issuer=f"https://sts.windows.net/{emulator.tenant_id}/",
                        options={"require": ["exp", "nbf", "aud", "iss"]})
    assert claims["appid"] == GRAPH_PUBLISHER and claims["tid"] == emulator.tenant_id

    tampered = dict(encrypted, data=base64.b64encode(b"\0" * 32).decode())
    try:
        decrypt(tampered, key)
    except AssertionError as exc:
        assert "signature" in str(exc)
    else:
        raise AssertionError("tampered data decrypted")
    assert sub["includeResourceData"] is True


def test_rich_subscriptions_live_at_most_1440_minutes(emulator, graph, sink):
    emulator.add_user(ALICE)
    _, cert = _certificate()
    der = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    body = {"changeType": "created", "notificationUrl": f"{sink.url}/notifications",
            "resource": f"users/{ALICE}/messages?$select=subject", "includeResourceData": True,
            "encryptionCertificate": der, "encryptionCertificateId": "k",
            "expirationDateTime": (emulator.clock.now() + dt.timedelta(minutes=1500)).isoformat()}
    refused = graph.post("/subscriptions", json=body)
    assert refused.status_code == 400 and "1440 minutes" in refused.json()["error"]["message"]
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    weak = x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.subject).public_key(
        small.public_key()).serial_number(2).not_valid_before(cert.not_valid_before_utc).not_valid_after(
        cert.not_valid_after_utc).sign(small, hashes.SHA256())
    body.update(expirationDateTime=(emulator.clock.now() + dt.timedelta(minutes=60)).isoformat(),
                encryptionCertificate=base64.b64encode(weak.public_bytes(serialization.Encoding.DER)).decode())
    assert graph.post("/subscriptions", json=body).status_code == 400
