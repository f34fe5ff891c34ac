"""Who may say "this ran in acceptance": signed activity records and the `mxinfra:signing` stack config.

Every activity record is signed (ECDSA P-256 over SHA-256) with a key held by whoever may deploy the
environment, and the signature travels in the record with the signer's public key. A reader checks the
signature against that public key and then decides whether the key is trusted: a gated environment
accepts a deploy record of its source only when the public key's fingerprint is one of the keys
trusted for that source. Writing to the repository store is therefore not enough to forge a record:
the private key never leaves KMS, Key Vault (or, for development, a local key file).

Key references (in `mxinfra:signing`):
    kms:arn:aws:kms:REGION:ACCOUNT:key/KEY-ID
                                        an AWS KMS asymmetric key, KeySpec ECC_NIST_P256, KeyUsage SIGN_VERIFY
                                        (kms:Sign to sign; kms:GetPublicKey to trust it by reference)
    azurekv:https://VAULT.vault.azure.net/keys/NAME/VERSION
                                        an Azure Key Vault EC P-256 key version (keys/sign; keys/get to trust it)
    file:PATH                           a PEM key file (PKCS#8 private key to sign; private or public to trust),
                                        relative to the project directory: development only
    sha256:<64 hex>                     a public key's fingerprint (SHA-256 of its DER SubjectPublicKeyInfo):
                                        trust only, needs no call to KMS or Key Vault

Only references that name one key for good are accepted in the config: a KMS alias (or a bare key id,
looked up in whatever account and region the caller's credentials use) and a Key Vault key without a
version are pointers someone can move to another key, and trusting one let a re-pointed alias make the
gate accept a forged record (issue 19, F8). Trust is always decided on the fingerprint of the public key
that actually verifies the record's signature.

The stack config (pure schema, no I/O here):
    mxinfra:signing:
      signers:                          # environment -> the key its `pulumi up` signs records with
        production: kms:arn:aws:kms:eu-west-1:111122223333:key/...
      trustedSigners:                   # source environment -> keys whose records gated environments accept
        acceptance: [kms:arn:aws:kms:eu-west-1:111122223333:key/..., sha256:...]
      publishers:                       # who may give a package a version label (`mxinfra package push`)
        - arn:aws:iam::111122223333:role/build

On a file:// repository with no `mxinfra:signing`, records are signed with a development key created on
first use beside the repository (`<repository>/keys/dev-signing.pem`, i.e. `.mxinfra/keys/` for the
default) and that key is trusted: the gate then still refuses unsigned and edited records, but anyone
who can read the key file can sign. On s3:// and azblob:// repositories nothing is trusted by default:
a gated environment must name the keys trusted for its source, and its own signer; a production
environment must name its signer whether gated or not (issue 19, F6: unsigned records prove nothing).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigIssue, UserError

if TYPE_CHECKING:
    from ..config import StackConfig
    from ..schema import RawConfig
    from .signing_block import SigningConfig
    from ..environments import Environment

KEY = "mxinfra:signing"
ALGORITHM = "ECDSA_P256_SHA256"
DEV_KEY = Path("keys") / "dev-signing.pem"
_FINGERPRINT = re.compile(r"sha256:[0-9a-f]{64}")
_ENV = re.compile(r"[a-z]([a-z0-9-]*[a-z0-9])?")
REF_FORMS = "kms:arn:aws:kms:REGION:ACCOUNT:key/KEY-ID, azurekv:https://VAULT.vault.azure.net/keys/NAME/VERSION, file:PATH or sha256:FINGERPRINT"
KMS_KEY_FORM = "kms:arn:aws:kms:REGION:ACCOUNT:key/KEY-ID"
KEYVAULT_KEY_FORM = "azurekv:https://VAULT.vault.azure.net/keys/NAME/VERSION"
# A key ARN names one key for good (region, account, key id); key ids are UUIDs, or mrk- plus 32 hex
# digits for multi-region keys. Nothing else (aliases, wildcards) may reach a trust list or a policy.
_KMS_KEY_ARN = re.compile(
    r"arn:aws(?:-cn|-us-gov|-iso|-iso-b)?:kms:[a-z]{2}(?:-[a-z]+)+-\d+:\d{12}:key/"
    r"(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})"
)


class SigningError(UserError):
    """A key cannot be used (missing, unreachable, wrong type); the message names the key and the cause."""


def signed_message(record_hash: str) -> bytes:
    """The bytes a record's signature covers: its hash (which covers every other field), domain-separated."""
    return b"mxinfra-activity-record-v1:" + record_hash.encode()


def fingerprint(public_der: bytes) -> str:
    """'sha256:<hex>' of a DER SubjectPublicKeyInfo."""
    return "sha256:" + hashlib.sha256(public_der).hexdigest()


def _load_public(der: bytes) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    key = load_der_public_key(der)
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("not an EC P-256 public key")
    return key


def _der_public(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


class Signer(ABC):
    """A private key that can sign activity records; `ref` is how the config names it."""

    ref: str

    @abstractmethod
    def public_key_der(self) -> bytes:
        """The public key, DER SubjectPublicKeyInfo."""

    @abstractmethod
    def sign(self, message: bytes) -> bytes:
        """A DER-encoded ECDSA P-256 signature over SHA-256(message)."""

    def signature(self, record_hash: str) -> dict[str, str]:
        """The `signature` field of a record with this hash, checked against the public key it carries."""
        public = self.public_key_der()
        value = self.sign(signed_message(record_hash))
        # The public key and the signature come from two calls: a reference that moved to another key in
        # between (an alias) would write a record nobody can verify. Refuse it here, loudly.
        if not _verifies(public, value, signed_message(record_hash)):
            raise SigningError(
                f"signing key {self.ref}: the signature does not verify with the public key read for it "
                f"({fingerprint(public)}): the reference named another key while signing (a re-pointed alias?); "
                f"name the key itself ({KMS_KEY_FORM} or {KEYVAULT_KEY_FORM})"
            )
        return {
            "alg": ALGORITHM,
            "signer": self.ref,
            "publicKey": base64.b64encode(public).decode(),
            "value": base64.b64encode(value).decode(),
        }


def _verifies(public_der: bytes, signature: bytes, message: bytes) -> bool:
    """Whether an ECDSA P-256/SHA-256 signature over `message` verifies with this public key."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        _load_public(public_der).verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


class LocalKeySigner(Signer):
    """A PEM private key file (development, file:// repositories)."""

    def __init__(self, path: Path, ref: str | None = None) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        self.ref = ref or f"file:{path}"
        try:
            key = load_pem_private_key(Path(path).read_bytes(), password=None)
        except FileNotFoundError:
            raise SigningError(f"signing key {self.ref}: {path} does not exist") from None
        except (OSError, ValueError, TypeError) as exc:
            raise SigningError(f"signing key {self.ref}: {path} is not an unencrypted PEM private key ({exc})") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise SigningError(f"signing key {self.ref}: {path} is not an EC P-256 key")
        self._key = key

    def public_key_der(self) -> bytes:
        """The key's public half, DER (SubjectPublicKeyInfo)."""
        return _der_public(self._key.public_key())

    def sign(self, message: bytes) -> bytes:
        """ECDSA P-256 over SHA-256 of `message`, DER-encoded."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        return bytes(self._key.sign(message, ec.ECDSA(hashes.SHA256())))


def _ignore_in_git(directory: Path) -> None:
    """A `.gitignore` beside private keys, so `git add -A` in the user's project never commits one."""
    marker = directory / ".gitignore"
    if marker.exists():
        return
    fd, tmp = tempfile.mkstemp(prefix=".gitignore.", dir=directory)
    with os.fdopen(fd, "w") as f:
        f.write("# private signing keys: never commit them (written by mxinfra)\n*\n")
    with contextlib.suppress(FileExistsError):
        os.link(tmp, marker)
    os.unlink(tmp)


def generate_key_file(path: Path) -> Path:
    """Create an EC P-256 PEM private key at `path` (mode 0600) unless one exists; atomic against races."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = Path(path)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    _ignore_in_git(path.parent)
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # the first writer wins; everyone then uses its key
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return path


def _kms_client(region: str | None = None) -> Any:
    try:
        import boto3
        import botocore.config
    except ImportError:
        raise SigningError("kms: signing keys need boto3: pip install 'mxinfra[s3]'") from None
    endpoint = os.environ.get("AWS_ENDPOINT_URL_KMS") or os.environ.get("AWS_ENDPOINT_URL") or None
    config = botocore.config.Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=30)
    return boto3.session.Session().client("kms", region_name=region, endpoint_url=endpoint, config=config)


def kms_key_arn(ref: str) -> str | None:
    """The key ARN of a `kms:` reference that names one key for good (region, account, key id), else None."""
    key = ref[len("kms:") :] if ref.startswith("kms:") else ""
    return key if _KMS_KEY_ARN.fullmatch(key) else None


def _kms_call(ref: str, what: str, call: Any, **kwargs: Any) -> Any:
    import botocore.exceptions

    try:
        return call(**kwargs)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        raise SigningError(f"signing key {ref}: cannot {what}: {code + ': ' if code else ''}{exc}") from None


class KmsSigner(Signer):
    """An AWS KMS asymmetric key (ECC_NIST_P256, SIGN_VERIFY): the private key never leaves KMS."""

    def __init__(self, key_id: str, client: Any = None) -> None:
        self.ref = f"kms:{key_id}"
        self.key_id = key_id
        arn = kms_key_arn(self.ref)
        # A key ARN is asked of its own region: the caller's default region would not find it.
        self._client = client or _kms_client(arn.split(":")[3] if arn else None)
        self._public: bytes | None = None

    def public_key_der(self) -> bytes:
        """The KMS key's public half, DER, checked to be the key named and ECC_NIST_P256/SIGN_VERIFY (asked once)."""
        if self._public is None:
            resp = _kms_call(self.ref, "get its public key (kms:GetPublicKey)", self._client.get_public_key, KeyId=self.key_id)
            spec = resp.get("KeySpec") or resp.get("CustomerMasterKeySpec")  # the older name of the same field
            if spec != "ECC_NIST_P256" or resp.get("KeyUsage") != "SIGN_VERIFY":
                raise SigningError(
                    f"signing key {self.ref}: is {spec}/{resp.get('KeyUsage')}, expected ECC_NIST_P256/SIGN_VERIFY"
                )
            answered = str(resp.get("KeyId") or "")
            # KMS answers with the key ARN (some endpoints with the bare id): either must be the key named
            if kms_key_arn(self.ref) and answered and answered not in (self.key_id, self.key_id.rsplit("/", 1)[-1]):
                raise SigningError(f"signing key {self.ref}: KMS answered with the public key of {answered}, not of the key named")
            self._public = bytes(resp["PublicKey"])
        return self._public

    def sign(self, message: bytes) -> bytes:
        """`message` signed by KMS (ECDSA_SHA_256), DER-encoded."""
        resp = _kms_call(
            self.ref,
            "sign (kms:Sign)",
            self._client.sign,
            KeyId=self.key_id,
            Message=message,
            MessageType="RAW",
            SigningAlgorithm="ECDSA_SHA_256",
        )
        return bytes(resp["Signature"])


# Tests point the Key Vault clients at a loopback double; a real run uses DefaultAzureCredential and the defaults.
KEYVAULT_CLIENT_OPTIONS: dict[str, Any] = {}


def azure_credential() -> Any:
    """The credential Key Vault calls use (DefaultAzureCredential)."""
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        raise SigningError("azurekv: signing keys need azure-identity: pip install 'mxinfra[azure]'") from None
    return DefaultAzureCredential()


def _keyvault_parts(ref: str) -> tuple[str, str, str | None]:
    """(vault URL, key name, version or None) of an azurekv: reference."""
    url = ref[len("azurekv:") :]
    m = re.fullmatch(r"(https://[A-Za-z0-9.-]+(?::\d+)?)/keys/([A-Za-z0-9-]{1,127})(?:/([0-9a-zA-Z]+))?/?", url)
    if not m:
        raise ValueError(f"{ref!r}: expected azurekv:https://VAULT.vault.azure.net/keys/NAME[/VERSION]")
    return m.group(1), m.group(2), m.group(3)


def _keyvault_error(ref: str, what: str, exc: Exception) -> SigningError:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return SigningError(f"signing key {ref}: cannot {what}: {first}")


def _jwk_public_der(ref: str, jwk: Any) -> bytes:
    from cryptography.hazmat.primitives.asymmetric import ec

    crv = str(getattr(getattr(jwk, "crv", None), "value", getattr(jwk, "crv", "")) or "")
    kty = str(getattr(getattr(jwk, "kty", None), "value", getattr(jwk, "kty", "")) or "")
    if not kty.startswith("EC") or not crv.endswith("P-256"):
        raise SigningError(f"signing key {ref}: is {kty} {crv}, expected an EC P-256 key")
    x, y = int.from_bytes(bytes(jwk.x), "big"), int.from_bytes(bytes(jwk.y), "big")
    return _der_public(ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key())


def _keyvault_key(ref: str) -> Any:
    try:
        from azure.keyvault.keys import KeyClient
    except ImportError:
        raise SigningError("azurekv: signing keys need azure-keyvault-keys: pip install 'mxinfra[azure]'") from None
    vault, name, version = _keyvault_parts(ref)
    client = KeyClient(vault, azure_credential(), **KEYVAULT_CLIENT_OPTIONS)
    try:
        key = client.get_key(name, version)
    except Exception as exc:  # azure-core and azure-identity raise their own types
        raise _keyvault_error(ref, "read it (keys/get)", exc) from None
    answered = str(getattr(key, "id", "") or "").rstrip("/")
    if version is not None and answered and answered.lower() != f"{vault}/keys/{name}/{version}".lower():
        raise SigningError(f"signing key {ref}: Key Vault answered with the key {answered}, not the version named")
    return key


class KeyVaultSigner(Signer):
    """An Azure Key Vault EC P-256 key: Key Vault signs the digest (ES256); the private key never leaves it."""

    def __init__(self, ref: str) -> None:
        _keyvault_parts(ref)
        self.ref = ref
        self._key = _keyvault_key(ref)
        self._public = _jwk_public_der(ref, self._key.key)
        from azure.keyvault.keys.crypto import CryptographyClient

        self._crypto = CryptographyClient(self._key, azure_credential(), **KEYVAULT_CLIENT_OPTIONS)

    def public_key_der(self) -> bytes:
        """The Key Vault key's public half, DER (read when the signer was made)."""
        return self._public

    def sign(self, message: bytes) -> bytes:
        """`message` signed by Key Vault (ES256), DER-encoded."""
        from azure.keyvault.keys.crypto import SignatureAlgorithm
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

        digest = hashlib.sha256(message).digest()
        try:
            raw = bytes(self._crypto.sign(SignatureAlgorithm.es256, digest).signature)
        except Exception as exc:
            raise _keyvault_error(self.ref, "sign (keys/sign)", exc) from None
        if len(raw) != 64:
            raise SigningError(f"signing key {self.ref}: Key Vault returned a {len(raw)}-byte ES256 signature, expected 64")
        # JWS form (r || s) -> DER, the form KMS and the cryptography package use
        return bytes(encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")))


def mutable_reason(ref: str) -> str | None:
    """Why a key reference can come to name another key (an alias, a key without a version), or None."""
    if ref.startswith("kms:"):
        if kms_key_arn(ref):
            return None
        key = ref[len("kms:") :]
        if key.startswith("alias/") or ":alias/" in key:
            return "a KMS alias can be re-pointed to another key at any time"
        if re.fullmatch(r"(?:mrk-)?[0-9a-fA-F-]{32,36}", key):
            return "a bare key id is looked up in whatever account and region the caller's credentials use"
        return "it is not a full KMS key ARN (with region, account and key id)"
    if ref.startswith("azurekv:"):
        try:
            version = _keyvault_parts(ref)[2]
        except ValueError:
            return None  # malformed: check_reference says so
        if version is None:
            return "a Key Vault key without a version follows its newest version, which a rotation or anyone with keys/create replaces"
    return None


def check_pinned(ref: str, *, for_signing: bool = False) -> str:
    """Return `ref` if it names one key for good (no I/O), else raise ValueError saying what is expected."""
    why = mutable_reason(ref)
    if why is None:
        return ref
    expected = KMS_KEY_FORM if ref.startswith("kms:") else KEYVAULT_KEY_FORM
    pin = "" if for_signing else ", or the key's sha256:FINGERPRINT"
    raise ValueError(f"{ref!r} is a mutable reference: {why}; expected {expected}{pin}")


def check_reference(ref: Any, *, for_signing: bool) -> str:
    """Return `ref` if it is a valid key reference (no I/O), else raise ValueError."""
    if not isinstance(ref, str) or not ref:
        raise ValueError(f"expected a key reference ({REF_FORMS})")
    if ref.startswith("kms:") and len(ref) > 4:
        return ref
    if ref.startswith("azurekv:"):
        _keyvault_parts(ref)
        return ref
    if ref.startswith("file:") and len(ref) > 5:
        return ref
    if _FINGERPRINT.fullmatch(ref):
        if for_signing:
            raise ValueError("a fingerprint can be trusted but cannot sign: name the key (kms:, azurekv: or file:)")
        return ref
    raise ValueError(f"{ref!r} is not a key reference: expected {REF_FORMS}")


def _file_path(ref: str, base_dir: Path) -> Path:
    path = Path(os.path.expanduser(ref[len("file:") :]))
    return path if path.is_absolute() else base_dir / path


def open_signer(ref: str, base_dir: Path) -> Signer:
    """The signer a key reference names (file: paths relative to `base_dir`)."""
    try:
        check_reference(ref, for_signing=True)
    except ValueError as exc:
        raise SigningError(f"signing key: {exc}") from None
    if ref.startswith("kms:"):
        return KmsSigner(ref[len("kms:") :])
    if ref.startswith("azurekv:"):
        return KeyVaultSigner(ref)
    return LocalKeySigner(_file_path(ref, base_dir), ref)


def dev_key_path(repository_url: str) -> Path | None:
    """Where the development key of a file:// repository lives (None for other backends)."""
    if not repository_url.startswith("file://"):
        return None
    return Path(repository_url[len("file://") :]) / DEV_KEY


def dev_signer(repository_url: str) -> Signer | None:
    """The development signer of a file:// repository, created on first use; None for cloud backends."""
    path = dev_key_path(repository_url)
    if path is None:
        return None
    return LocalKeySigner(generate_key_file(path), f"file:{path}")


_trusted_cache: dict[str, str] = {}


def trusted_fingerprint(ref: str, base_dir: Path) -> str:
    """The fingerprint of the public key a trusted-signer reference names (one lookup per key and process)."""
    if _FINGERPRINT.fullmatch(ref):
        return ref
    try:
        # Only a reference that cannot move may be looked up (and cached: the key it names never changes).
        check_pinned(ref)
    except ValueError as exc:
        raise SigningError(f"trusted signer: {exc}") from None
    cache_key = ref if not ref.startswith("file:") else f"file:{_file_path(ref, base_dir)}"
    if cache_key in _trusted_cache:
        return _trusted_cache[cache_key]
    if ref.startswith("kms:"):
        found = fingerprint(KmsSigner(ref[len("kms:") :]).public_key_der())
    elif ref.startswith("azurekv:"):
        found = fingerprint(_jwk_public_der(ref, _keyvault_key(ref).key))
    elif ref.startswith("file:"):
        found = fingerprint(_file_public_der(ref, _file_path(ref, base_dir)))
    else:
        raise SigningError(f"trusted signer {ref!r}: expected {REF_FORMS}")
    _trusted_cache[cache_key] = found
    return found


def _file_public_der(ref: str, path: Path) -> bytes:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SigningError(f"trusted signer {ref}: cannot read {path}: {exc.strerror or exc}") from None
    try:
        if b"PRIVATE KEY" in data:
            return _der_public(load_pem_private_key(data, password=None).public_key())
        return _der_public(load_pem_public_key(data))
    except (ValueError, TypeError) as exc:
        raise SigningError(f"trusted signer {ref}: {path} is not a PEM key ({exc})") from None


@dataclass(frozen=True)
class Trust:
    """The keys whose records count for one environment, and how they were named (for messages)."""

    fingerprints: frozenset[str]
    names: tuple[str, ...]

    def describe(self) -> str:
        """The keys' names, for messages."""
        return ", ".join(self.names) or "(no key)"


def check_signature(record: Mapping[str, Any], record_hash: str) -> tuple[str | None, str | None]:
    """(fingerprint of the signing key, None) if the record's signature verifies; (None, why) if it is absent or bad."""
    sig = record.get("signature")
    if sig is None:
        return None, "is unsigned"
    try:
        if not isinstance(sig, Mapping) or sig.get("alg") != ALGORITHM:
            raise ValueError(f"unknown signature algorithm {sig.get('alg') if isinstance(sig, Mapping) else sig!r}")
        public_der = base64.b64decode(str(sig["publicKey"]), validate=True)
        value = base64.b64decode(str(sig["value"]), validate=True)
        key = _load_public(public_der)
    except (KeyError, ValueError, TypeError) as exc:
        return None, f"has an unreadable signature ({exc})"
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key.verify(value, signed_message(record_hash), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return None, f"has a signature that does not verify (claimed signer {sig.get('signer')!r}): forged or edited"
    return fingerprint(public_der), None


# -- stack config


def signing_config(raw_values: Mapping[str, Any]) -> SigningConfig:
    """The parsed `mxinfra:signing` (empty when absent); assumes `check_signing` found nothing."""
    from .signing_block import SigningConfig

    value = raw_values.get(KEY)
    return SigningConfig.model_validate(value or {})


def is_cloud(url: str | None) -> bool:
    """True for s3:// and azblob:// repositories (where nothing is trusted by default)."""
    return bool(url) and not str(url).lower().startswith("file://")


def _signing_block(raw: RawConfig, repository: str | None, file: str) -> tuple[SigningConfig | None, list[ConfigIssue]]:
    """`mxinfra:signing` parsed, with every key reference and publisher checked (no I/O, no environment rules)."""
    from ..schema import parse_model
    from .principals import principal_problem
    from .signing_block import SigningConfig

    value = raw.values.get(KEY)
    cfg, issues = parse_model(SigningConfig, value if value is not None else {}, KEY, file, raw)
    if cfg is None:
        return None, issues
    for env, ref in cfg.signers.items():
        try:
            # a signer's key is trusted too (`activity verify` checks its environment's records against it)
            check_pinned(check_reference(ref, for_signing=True), for_signing=True)
        except ValueError as exc:
            issues.append(ConfigIssue(f"{KEY}.signers.{env}", str(exc), "the key whoever deploys this environment signs with", file))
    for source, refs in cfg.trustedSigners.items():
        path = f"{KEY}.trustedSigners.{source}"
        if not _ENV.fullmatch(source):
            issues.append(ConfigIssue(path, f"{source!r} is not an environment name", "the environment whose records are trusted", file))
        if not refs:
            issues.append(ConfigIssue(path, "no key: nothing from this environment would be accepted", f"list its signers' keys ({REF_FORMS})", file))
        for i, ref in enumerate(refs):
            try:
                check_pinned(check_reference(ref, for_signing=False))
            except ValueError as exc:
                issues.append(ConfigIssue(f"{path}[{i}]", str(exc), "trust only a reference that names one key for good", file))
    cloud = str(repository or "file://").split("://")[0].lower()
    if cfg.publishers is not None and not cfg.publishers:
        issues.append(
            ConfigIssue(f"{KEY}.publishers", "empty: nobody could give a package a version label", "name who runs `mxinfra package push`, or remove the key", file)
        )
    for i, principal in enumerate(cfg.publishers or []):
        if why := principal_problem(cloud, principal):
            issues.append(ConfigIssue(f"{KEY}.publishers[{i}]", f"{principal!r}: {why}", f"who pushes and labels packages on this {cloud}:// repository", file))
    return cfg, issues


def load_signing(raw: RawConfig, repository: str | None) -> SigningConfig:
    """The validated `mxinfra:signing` of a stack read outside a plan (the package commands); ConfigError if invalid."""
    from ..errors import ConfigError

    cfg, issues = _signing_block(raw, repository, raw.source)
    if cfg is None or issues:
        raise ConfigError(issues, raw.source)
    return cfg


def check_signing(raw: RawConfig, envs: Iterable[Environment], repository: str | None, file: str = "") -> list[ConfigIssue]:
    """Validate `mxinfra:signing` and require signers and trusted keys where a cloud repository gates promotion."""
    envs = list(envs)
    cfg, issues = _signing_block(raw, repository, file)
    if cfg is None:
        return issues
    names = [e.name for e in envs]
    for env in cfg.signers:
        if env not in names:
            issues.append(ConfigIssue(f"{KEY}.signers.{env}", f"unknown environment {env!r}", f"environments of this stack: {', '.join(names)}", file))
    if is_cloud(repository):
        # secure by default: on a shared store nothing is trusted unless the stack says which keys
        scheme = str(repository).split(":")[0]
        for env in envs:
            source = env.require_promotion_from
            if source is not None and source not in cfg.trustedSigners:
                issues.append(
                    ConfigIssue(
                        f"{KEY}.trustedSigners.{source}",
                        f"required: {env.name} requires promotion from {source} on a {scheme}:// repository, "
                        f"so the keys that sign {source}'s records must be named",
                        f"e.g. {KEY}: {{trustedSigners: {{{source}: [kms:arn:aws:kms:REGION:ACCOUNT:key/ID]}}}}",
                        file,
                    )
                )
            # production's records are what a later audit or gate reads: unsigned they prove nothing (no opt-out)
            if (source is not None or env.is_production) and env.name not in cfg.signers:
                why = "is gated" if source is not None else "is a production environment"
                issues.append(
                    ConfigIssue(
                        f"{KEY}.signers.{env.name}",
                        f"required: {env.name} {why} on a {scheme}:// repository, so its records must be signed "
                        "(no gate or audit trusts an unsigned record; production has no opt-out)",
                        f"the key whoever deploys {env.name} holds, e.g. {KEY}: {{signers: {{{env.name}: {KMS_KEY_FORM if scheme == 's3' else KEYVAULT_KEY_FORM}}}}}",
                        file,
                    )
                )
    return issues


def signer_reference(cfg: StackConfig, environment: str) -> str | None:
    """The configured signer of an environment, or None (the development key on file://, else unsigned)."""
    return signing_config(cfg.raw.values).signers.get(environment)


def trusted_signer_refs(raw_values: Mapping[str, Any], environment: str) -> list[str]:
    """The references `mxinfra:signing.trustedSigners.<environment>` names (none if not configured)."""
    return list(signing_config(raw_values).trustedSigners.get(environment) or [])


def trust_of_refs(refs: Sequence[str], base_dir: Path) -> Trust:
    """The keys a list of pinned trusted-signer references names."""
    return Trust(frozenset(trusted_fingerprint(r, base_dir) for r in refs), tuple(refs))


def appender_trust(signer: Signer | None, trusted: Trust | None) -> Trust | None:
    """The keys whose records an appender may chain to and checkpoint over: its own and those trusted for
    the environment (a rotated key's); None for an unsigned appender (it proves nothing either way)."""
    if signer is None:
        return None
    others = trusted if trusted is not None else Trust(frozenset(), ())
    return Trust(frozenset({fingerprint(signer.public_key_der())}) | others.fingerprints, ("the appender's own key", *others.names))


def own_trust(raw_values: Mapping[str, Any], environment: str, repository_url: str, base_dir: Path) -> Trust | None:
    """The keys an environment's own records must be signed by (what `mxinfra activity verify -s` and the
    release guard expect): the keys trusted for it, else its configured signer, else a file:// repository's
    development key; None (any valid signature) otherwise."""
    cfg = signing_config(raw_values)
    if environment in cfg.trustedSigners:
        return trust_for(raw_values, environment, repository_url, base_dir)
    if environment in cfg.signers:
        return trust_of_refs([cfg.signers[environment]], base_dir)
    path = dev_key_path(repository_url)
    if path is not None and path.exists():
        return trust_for({}, environment, repository_url, base_dir)
    return None


def trust_for(raw_values: Mapping[str, Any], source: str, repository_url: str, base_dir: Path) -> Trust:
    """The keys whose records of `source` count: the configured ones, else a file:// repository's development key."""
    cfg = signing_config(raw_values)
    refs = cfg.trustedSigners.get(source)
    if refs is not None:
        return trust_of_refs(refs, base_dir)
    path = dev_key_path(repository_url)
    if path is not None and path.exists():
        return Trust(frozenset({fingerprint(_file_public_der(f"file:{path}", path))}), (f"file:{path} (development key)",))
    return Trust(frozenset(), ())


PROBE = b"mxinfra-signer-probe-v1"  # not a record's message (signed_message's prefix differs): proves nothing


def signer_issue(raw_values: Mapping[str, Any], environment: str, repository_url: str, base_dir: Path) -> str | None:
    """Why the environment's records could not be signed now (its signer cannot be opened or refuses to
    sign a probe), or None: `pulumi up` asks before it changes anything, so a deployment never applies
    and then fails to record itself (issue 19, F11)."""
    ref = signing_config(raw_values).signers.get(environment)
    try:
        signer = open_signer(ref, base_dir) if ref else dev_signer(repository_url)
        if signer is None:
            return None  # unsigned by design (a cloud repository without a signer is a config problem already)
        signer.sign(PROBE)
    except (UserError, OSError, ValueError) as exc:
        return f"the signer of {environment!r} ({ref or 'the development key'}) cannot sign: {exc}"
    return None
