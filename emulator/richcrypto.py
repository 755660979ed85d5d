"""Encrypting resource data for rich notifications exactly as Microsoft documents it.

https://learn.microsoft.com/graph/change-notifications-with-resource-data#decrypting-resource-data-from-change-notifications
(graph-protocol.md §4): a fresh 32-byte key per item, RSA-OAEP (SHA-1, MGF1-SHA-1)
with the subscriber's certificate, AES-256-CBC with PKCS7 and IV = key[:16],
and HMAC-SHA256(key, ciphertext) as ``dataSignature``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def load_certificate(encoded: str) -> x509.Certificate:
    """Parse ``encryptionCertificate`` (base64 DER, or PEM); RSA 2,048–4,096 bits only."""
    try:
        if "BEGIN CERTIFICATE" in encoded:
            cert = x509.load_pem_x509_certificate(encoded.encode())
        else:
            cert = x509.load_der_x509_certificate(base64.b64decode(encoded, validate=False))
    except (ValueError, TypeError) as exc:
        raise ValueError("encryptionCertificate is not a valid base64-encoded X.509 certificate.") from exc
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or not 2048 <= key.key_size <= 4096:
        raise ValueError("encryptionCertificate must hold an RSA public key of 2048 to 4096 bits.")
    return cert


def thumbprint(cert: x509.Certificate) -> str:
    """Uppercase hex SHA-1 of the DER certificate, as in ``encryptionCertificateThumbprint``."""
    return cert.fingerprint(hashes.SHA1()).hex().upper()


def encrypt_resource(resource: dict[str, Any], cert: x509.Certificate, certificate_id: str) -> dict[str, str]:
    """Return the ``encryptedContent`` object for ``resource``."""
    key = os.urandom(32)
    padder = padding.PKCS7(128).padder()
    plaintext = padder.update(json.dumps(resource).encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    data = encryptor.update(plaintext) + encryptor.finalize()
    data_key = cert.public_key().encrypt(
        key, asym_padding.OAEP(mgf=asym_padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    )
    signature = hmac.new(key, data, hashlib.sha256).digest()
    return {
        "data": base64.b64encode(data).decode(),
        "dataSignature": base64.b64encode(signature).decode(),
        "dataKey": base64.b64encode(data_key).decode(),
        "encryptionCertificateId": certificate_id,
        "encryptionCertificateThumbprint": thumbprint(cert),
    }
