"""A loopback HTTPS double of the two Azure Key Vault key operations mxinfra uses, driven through the real
azure-keyvault-keys SDK (KeyClient.get_key, CryptographyClient.sign).

It implements what the SDK sends: the bearer challenge (401 with WWW-Authenticate on a request without
a token), GET /keys/{name}[/{version}] (the public JWK) and POST /keys/{name}/{version}/sign (ES256 over
the 32-byte digest the client sends, answered as JWS r||s). The signing itself is done by the
`cryptography` package with a P-256 key that never leaves the double, as it never leaves a real vault.
TLS uses a certificate made here for 127.0.0.1 (Key Vault clients refuse bearer tokens over plain HTTP).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import json
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature
from cryptography.x509.oid import NameOID


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _certificate(workdir: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = workdir / "kv-cert.pem", workdir / "kv-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class FakeCredential:
    """A TokenCredential handing out an opaque token (the double accepts any bearer token)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken("token-for-the-double", int(time.time()) + 3600)


class KeyVaultDouble:
    """Keys by name, each one version; `calls` lists (method, path) of every authorised request."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[str, ec.EllipticCurvePrivateKey]] = {}
        self.calls: list[tuple[str, str]] = []
        self.url = ""

    def create_key(self, name: str) -> str:
        """A new EC P-256 key; returns its azurekv: reference (with version)."""
        version = uuid.uuid4().hex
        self.keys[name] = (version, ec.generate_private_key(ec.SECP256R1()))
        return f"azurekv:{self.url}/keys/{name}/{version}"

    def public_der(self, name: str) -> bytes:
        return self.keys[name][1].public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def _jwk(self, name: str) -> dict[str, Any]:
        version, key = self.keys[name]
        numbers = key.public_key().public_numbers()
        return {
            "kid": f"{self.url}/keys/{name}/{version}",
            "kty": "EC",
            "crv": "P-256",
            "x": _b64url(numbers.x.to_bytes(32, "big")),
            "y": _b64url(numbers.y.to_bytes(32, "big")),
            "key_ops": ["sign", "verify"],
        }

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        parts = [p for p in path.split("?")[0].split("/") if p]
        if len(parts) < 2 or parts[0] != "keys" or parts[1] not in self.keys:
            return 404, {"error": {"code": "KeyNotFound", "message": f"no key at {path}"}}
        name = parts[1]
        version, key = self.keys[name]
        if len(parts) > 2 and parts[2] != version:
            return 404, {"error": {"code": "KeyNotFound", "message": f"no version {parts[2]}"}}
        now = int(time.time())
        if method == "GET" and len(parts) <= 3:
            return 200, {"key": self._jwk(name), "attributes": {"enabled": True, "created": now, "updated": now}}
        if method == "POST" and len(parts) == 4 and parts[3] == "sign":
            request = json.loads(body)
            if request.get("alg") != "ES256":
                return 400, {"error": {"code": "BadParameter", "message": f"alg {request.get('alg')} not supported"}}
            digest = _unb64url(request["value"])
            if len(digest) != 32:
                return 400, {"error": {"code": "BadParameter", "message": "ES256 needs a 32-byte digest"}}
            r, s = decode_dss_signature(key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256()))))
            return 200, {"kid": self._jwk(name)["kid"], "value": _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))}
        return 405, {"error": {"code": "MethodNotAllowed", "message": f"{method} {path}"}}


@contextlib.contextmanager
def keyvault_double(workdir: Path) -> Iterator[tuple[KeyVaultDouble, str]]:
    """Serve a KeyVaultDouble over HTTPS on a free loopback port; yields (double, CA file for the client)."""
    double = KeyVaultDouble()
    cert, key = _certificate(workdir)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if not (self.headers.get("Authorization") or "").startswith("Bearer "):
                # the SDK's first request carries no token: it learns where to get one from this challenge
                self.send_response(401)
                self.send_header(
                    "WWW-Authenticate",
                    'Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000", '
                    'resource="https://vault.azure.net"',
                )
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            double.calls.append((method, self.path.split("?")[0]))
            status, doc = double.handle(method, self.path, body)
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    double.url = f"https://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield double, str(cert)
    finally:
        server.shutdown()
        server.server_close()
