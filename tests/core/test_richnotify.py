"""Rich notifications: Microsoft's test vector, signature and key failures, rotation, and validation tokens
checked against the emulator's published signing keys over HTTPS."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from emulator.richcrypto import encrypt_resource
from graphhook.core.errors import ConfigError, DecryptionError, RejectedNotification
from graphhook.core.richnotify import (
    GRAPH_NOTIFICATION_APPID,
    KeyRing,
    OpenIdJwks,
    SigningKeysUnavailable,
    TokenValidator,
    decrypt_content,
    load_key_file,
)
from tests.conftest import ROOT
from tests.receiver.conftest import make_key_pair

# Microsoft's own vector (msgraph-sdk-dotnet-core IDecryptableContentExtensionsTests), copied from shared testdata.
VECTOR = ROOT / "tests" / "samples" / "ms-sdk-encrypted-content.json"


@pytest.fixture(scope="module")
def vector(tmp_path_factory):
    data = json.loads(VECTOR.read_text())
    p12 = tmp_path_factory.mktemp("vector") / "rich.p12"
    p12.write_bytes(base64.b64decode(data["pkcs12_base64"]))
    return data, p12


def test_microsoft_test_vector_decrypts_exactly(vector):
    data, p12 = vector
    key = load_key_file(p12, password=data["pkcs12_password"])
    assert key.thumbprint == "4B95353E086AD37196606ACF834A14532F03E6DB"
    resource = decrypt_content(data["encryptedContent"], KeyRing([key]))  # found by thumbprint
    for name, value in data["expected"].items():
        assert resource[name] == value
    assert resource["body"]["content"] == "Hello World"


def test_altered_data_is_refused_before_decryption(vector):
    data, p12 = vector
    content = dict(data["encryptedContent"])
    raw = bytearray(base64.b64decode(content["data"]))
    raw[-1] ^= 1
    content["data"] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(DecryptionError, match="dataSignature does not match"):
        decrypt_content(content, load_key_file(p12, password="rich"))


def test_wrong_key_is_named(vector, tmp_path):
    data, _ = vector
    other, _cert = make_key_pair(tmp_path)
    with pytest.raises(DecryptionError, match="wrong key"):
        decrypt_content(data["encryptedContent"], load_key_file(other, certificate_id="custom-id-for-testing"))


def test_unknown_certificate_id_lists_loaded_ids(vector, tmp_path):
    data, _ = vector
    other, _cert = make_key_pair(tmp_path)
    ring = KeyRing.from_spec(f"current={other}")
    with pytest.raises(DecryptionError, match="custom-id-for-testing.*'current'"):
        decrypt_content(data["encryptedContent"], ring)


def test_wrong_pkcs12_password_is_a_config_error_without_the_password(vector):
    _, p12 = vector
    with pytest.raises(ConfigError) as info:
        load_key_file(p12, password="not-the-password")
    assert "not-the-password" not in str(info.value)


def test_key_ring_holds_old_and_new_keys_for_rotation(tmp_path):
    old_path, old_cert = make_key_pair(tmp_path, "old")
    new_path, new_cert = make_key_pair(tmp_path, "new")
    ring = KeyRing.from_spec(f"cert-2024={old_path}, cert-2025={new_path}")
    for cert, cert_id in ((old_cert, "cert-2024"), (new_cert, "cert-2025")):
        content = encrypt_resource({"id": "AAMk1", "subject": cert_id}, cert, cert_id)
        assert decrypt_content(content, ring)["subject"] == cert_id


# --- validation tokens ------------------------------------------------------------------------

def openid_config_url(emulator) -> str:
    """The emulator's OpenID configuration, where validation-token signing keys are published."""
    return f"{emulator.url}/common/.well-known/openid-configuration"


@pytest.fixture
def validator(emulator):
    return TokenValidator(client_id=emulator.client_id,
                          key_source=OpenIdJwks(openid_config_url(emulator), ca_bundle=str(emulator.ca_path)).key_for)


def _claims(emulator, **changes):
    now = int(time.time())
    claims = {"aud": emulator.client_id, "iss": f"https://sts.windows.net/{emulator.tenant_id}/",
              "iat": now, "nbf": now, "exp": now + 3600, "appid": GRAPH_NOTIFICATION_APPID, "appidacr": "2",
              "tid": emulator.tenant_id, "ver": "1.0"}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def test_emulator_validation_token_is_accepted(emulator, validator):
    token = emulator.directory.issue_validation_token(emulator.client_id)
    claims = validator.validate(token, tenants=[emulator.tenant_id])
    assert claims["appid"] == GRAPH_NOTIFICATION_APPID


def test_v2_issuer_is_accepted(emulator, validator):
    token = emulator.directory.key.sign(_claims(emulator, iss=f"https://login.microsoftonline.com/{emulator.tenant_id}/v2.0"))
    validator.validate(token, tenants=[emulator.tenant_id])


@pytest.mark.parametrize("changes,why", [
    ({"aud": "someone-else"}, "Audience"),
    ({"appid": "11111111-1111-1111-1111-111111111111"}, "appid"),
    ({"iss": "https://sts.windows.net/00000000-0000-0000-0000-000000000000/"}, "issuer"),
    ({"exp": int(time.time()) - 3600, "nbf": int(time.time()) - 7200}, "expired"),
    ({"nbf": int(time.time()) + 3600}, "not yet valid"),
    ({"exp": None}, "exp"),
])
def test_tokens_failing_a_claim_are_rejected(emulator, validator, changes, why):
    token = emulator.directory.key.sign(_claims(emulator, **changes))
    with pytest.raises(RejectedNotification, match=why) as info:
        validator.validate(token, tenants=[emulator.tenant_id])
    assert info.value.reason == "validation_token_invalid"


def test_token_signed_by_another_key_is_rejected(emulator, validator):
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(_claims(emulator), forger, algorithm="RS256", headers={"kid": emulator.directory.key.kid})
    with pytest.raises(RejectedNotification, match="Signature"):
        validator.validate(token, tenants=[emulator.tenant_id])


def test_symmetric_or_unsigned_tokens_are_rejected(emulator, validator):
    for token in (jwt.encode(_claims(emulator), "k" * 32, algorithm="HS256"),
                  jwt.encode(_claims(emulator), None, algorithm="none"), "not.a.jwt"):
        with pytest.raises(RejectedNotification):
            validator.validate(token, tenants=[emulator.tenant_id])


def test_unreachable_key_endpoint_means_retry_not_reject(emulator):
    validator = TokenValidator(client_id=emulator.client_id,
                               key_source=OpenIdJwks("https://127.0.0.1:9/.well-known/openid-configuration").key_for)
    token = emulator.directory.issue_validation_token(emulator.client_id)
    with pytest.raises(SigningKeysUnavailable):
        validator.validate(token, tenants=[emulator.tenant_id])


def test_signing_keys_are_fetched_once_for_many_tokens(emulator, validator):
    for i in range(3):
        token = emulator.directory.key.sign(_claims(emulator, jti=str(i)))
        validator.validate(token, tenants=[emulator.tenant_id])
    fetched = [r["path"] for r in emulator.request_log if "discovery" in r["path"] or "openid" in r["path"]]
    assert fetched == ["/common/.well-known/openid-configuration", "/common/discovery/keys"]


def test_without_a_client_id_no_token_passes(emulator):
    validator = TokenValidator(client_id="", key_source=OpenIdJwks(openid_config_url(emulator),
                                                                  ca_bundle=str(emulator.ca_path)).key_for)
    with pytest.raises(RejectedNotification, match="AZURE_CLIENT_ID"):
        validator.validate(emulator.directory.issue_validation_token(""), tenants=[emulator.tenant_id])


def test_more_tokens_than_graph_would_send_are_refused_unread(emulator, validator):
    with pytest.raises(RejectedNotification, match="51 validation tokens"):
        validator.validate_all(["x"] * 51, tenants=[emulator.tenant_id])


def test_tokens_must_be_for_an_app_and_tenant_pair_of_the_post(emulator, validator):
    """Several tenants and apps in one POST: each token for a pair the POST's subscriptions have, each pair covered."""
    other_tenant, other_app = "84bd8158-0000-4000-8000-000000000002", "11111111-2222-4333-8444-555555555555"
    issue, tenant = emulator.directory.issue_validation_token, emulator.tenant_id
    pairs = {(emulator.client_id, tenant), (other_app, other_tenant)}
    both = [issue(emulator.client_id, tenant_id=tenant), issue(other_app, tenant_id=other_tenant)]
    validator.validate_all(both, parties=pairs, required=pairs)
    crossed = issue(emulator.client_id, tenant_id=other_tenant)  # a real app and a real tenant, not together
    with pytest.raises(RejectedNotification, match="no subscription of that app in that tenant"):
        validator.validate_all([crossed], parties=pairs)
    with pytest.raises(RejectedNotification, match="no validation token for app") as info:
        validator.validate_all(both[:1], parties=pairs, required=pairs)
    assert info.value.reason == "validation_token_missing"
    with pytest.raises(RejectedNotification, match="cannot check the audience"):
        validator.validate_all(both, parties=pairs, required=pairs | {("", tenant)})
