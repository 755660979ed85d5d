"""The identity platform: discovery, client credentials (secret and certificate), Microsoft's error shapes, JWKS."""

from __future__ import annotations

import datetime as dt

import jwt
import msal
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

SCOPE = "https://graph.microsoft.com/.default"


def _token(emulator, **form):
    data = {"client_id": emulator.client_id, "client_secret": emulator.client_secret,
            "grant_type": "client_credentials", "scope": SCOPE, **form}
    data = {k: v for k, v in data.items() if v is not None}
    return requests.post(f"{emulator.url}/{emulator.tenant_id}/oauth2/v2.0/token", data=data, verify=str(emulator.ca_path))


def _certificate():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "graphhook-test")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return key, cert, pem_key, cert.public_bytes(serialization.Encoding.PEM).decode()


def _aad_shape(body, error, code):
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert {"timestamp", "trace_id", "correlation_id"} <= set(body)


def test_discovery_is_tenant_scoped(emulator):
    doc = requests.get(f"{emulator.url}/{emulator.tenant_id}/v2.0/.well-known/openid-configuration",
                       verify=str(emulator.ca_path)).json()
    assert doc["token_endpoint"] == f"{emulator.url}/{emulator.tenant_id}/oauth2/v2.0/token"
    assert doc["authorization_endpoint"] and doc["jwks_uri"].endswith("/discovery/v2.0/keys")
    unknown = requests.get(f"{emulator.url}/not-a-tenant/v2.0/.well-known/openid-configuration", verify=str(emulator.ca_path))
    assert unknown.status_code == 400 and unknown.json()["error_codes"] == [90002]


def test_secret_grant_and_the_errors_microsoft_returns(emulator):
    ok = _token(emulator)
    assert ok.status_code == 200
    body = ok.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3599
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["aud"] == "https://graph.microsoft.com" and claims["tid"] == emulator.tenant_id
    assert claims["exp"] - claims["iat"] == 3599

    wrong = _token(emulator, client_secret="not-it")
    assert wrong.status_code == 401  # observed: 401, not 400
    _aad_shape(wrong.json(), "invalid_client", 7000215)
    unknown = _token(emulator, client_id="00000000-0000-0000-0000-000000000000")
    assert unknown.status_code == 400
    _aad_shape(unknown.json(), "unauthorized_client", 700016)
    missing = _token(emulator, client_id="")
    assert missing.status_code == 400
    _aad_shape(missing.json(), "invalid_request", 900144)
    scope = _token(emulator, scope="Mail.Read")
    assert scope.status_code == 400 and scope.json()["error"] == "invalid_scope"
    no_credential = _token(emulator, client_secret=None)
    assert no_credential.status_code == 401 and no_credential.json()["error"] == "invalid_client"
    emulator.app_registration.disabled = True
    _aad_shape(_token(emulator).json(), "unauthorized_client", 7000112)


def test_msal_with_a_secret_then_the_cache(emulator):
    app = msal.ConfidentialClientApplication(emulator.client_id, client_credential=emulator.client_secret,
                                             authority=f"{emulator.url}/{emulator.tenant_id}", instance_discovery=False)
    first = app.acquire_token_for_client(scopes=[SCOPE])
    assert "access_token" in first, first
    second = app.acquire_token_for_client(scopes=[SCOPE])
    assert second["access_token"] == first["access_token"]
    assert emulator.directory.tokens_issued == 1


@pytest.mark.parametrize("with_public_certificate", [True, False])
def test_msal_certificate_assertion(emulator, with_public_certificate):
    _, cert, pem_key, pem_cert = _certificate()
    emulator.app_registration.certificates.append(cert)
    credential = {"private_key": pem_key}
    if with_public_certificate:  # MSAL then signs PS256 with x5t#S256
        credential["public_certificate"] = pem_cert
    else:  # RS256 with the SHA-1 x5t
        credential["thumbprint"] = cert.fingerprint(hashes.SHA1()).hex()
    app = msal.ConfidentialClientApplication(emulator.client_id, client_credential=credential,
                                             authority=f"{emulator.url}/{emulator.tenant_id}", instance_discovery=False)
    result = app.acquire_token_for_client(scopes=[SCOPE])
    assert "access_token" in result, result


def test_unregistered_certificate_is_invalid_client(emulator):
    _, _, pem_key, pem_cert = _certificate()
    app = msal.ConfidentialClientApplication(emulator.client_id,
                                             client_credential={"private_key": pem_key, "public_certificate": pem_cert},
                                             authority=f"{emulator.url}/{emulator.tenant_id}", instance_discovery=False)
    result = app.acquire_token_for_client(scopes=[SCOPE])
    assert result["error"] == "invalid_client" and 700027 in result["error_codes"]


def test_jwks_verifies_the_tokens_the_emulator_signs(emulator):
    keys = requests.get(f"{emulator.url}/common/discovery/v2.0/keys", verify=str(emulator.ca_path)).json()
    assert keys == requests.get(f"{emulator.url}/common/discovery/keys", verify=str(emulator.ca_path)).json()
    token = emulator.directory.issue_validation_token(emulator.client_id)
    header = jwt.get_unverified_header(token)
    jwk = next(k for k in keys["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=["RS256"], audience=emulator.client_id,
                        issuer=f"https://sts.windows.net/{emulator.tenant_id}/")
    assert claims["appid"] == "0bf30f3b-4a52-48df-9a82-234910c4a086"
    v1 = requests.get(f"{emulator.url}/common/.well-known/openid-configuration", verify=str(emulator.ca_path)).json()
    assert v1["jwks_uri"].endswith("/common/discovery/keys")


def test_graph_rejects_missing_and_forged_tokens(emulator, graph):
    emulator.add_user("alice@contoso.com")
    assert graph.session.get(f"{emulator.graph_url}/users").status_code == 401
    forged = jwt.encode({"aud": "https://graph.microsoft.com", "appid": "x", "exp": 9999999999},
                        rsa.generate_private_key(public_exponent=65537, key_size=2048), algorithm="RS256")
    response = graph.session.get(f"{emulator.graph_url}/users", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401 and response.json()["error"]["code"] == "InvalidAuthenticationToken"
