"""The example stacks' secrets are real Pulumi ciphertexts that decrypt to valid config.

The engine suite showed that the old `secure:` stand-ins (base64 of a word) only worked under the mock
runtime: the real CLI cannot decrypt them, and a database URL that is a word fails validation once
decrypted. These tests decrypt every committed `secure:` value independently of Pulumi (its passphrase
scheme: PBKDF2-HMAC-SHA256 over the stack's salt, 1,000,000 rounds, then AES-256-GCM) and run the
product's whole validation on the decrypted config.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mxinfra.config import RawConfig
from mxinfra.deployment import deferred_gate, prepare
from mxinfra.stackfile import read_project, read_stack_config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "orders"))
import stack_secrets  # noqa: E402

STACK_FILES = sorted((ROOT / "stacks").glob("Pulumi.*.yaml"))


@cache
def _key(salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", stack_secrets.EXAMPLE_PASSPHRASE.encode(), salt, 1_000_000, 32)


def _decrypt(key: bytes, value: str) -> str:
    version, nonce, ciphertext = value.split(":")
    assert version == "v1", value
    return AESGCM(key).decrypt(base64.b64decode(nonce), base64.b64decode(ciphertext), None).decode()


def _stack(f: Path) -> str:
    return f.name[len("Pulumi.") : -len(".yaml")]


def _plaintexts(f: Path) -> dict[str, str]:
    doc = yaml.safe_load(f.read_text())
    leaves = stack_secrets.secure_leaves(doc["config"])
    if not leaves:
        return {}
    # encryptionsalt: v1:<base64 salt>:<the word "pulumi" encrypted with the derived key>
    version, salt, check = doc["encryptionsalt"].split(":", 2)
    assert version == "v1"
    key = _key(base64.b64decode(salt))
    assert _decrypt(key, check) == "pulumi", f"{f.name}: the example passphrase does not open this stack"
    return {stack_secrets.config_path(p): _decrypt(key, s) for p, s in leaves}


def test_every_example_secret_is_listed() -> None:
    with_secrets = {_stack(f) for f in STACK_FILES if stack_secrets.secure_leaves(yaml.safe_load(f.read_text())["config"])}
    assert with_secrets == set(stack_secrets.VALUES)


@pytest.mark.parametrize("stack_file", [f for f in STACK_FILES if _stack(f) in stack_secrets.VALUES], ids=_stack)
def test_secrets_decrypt_with_the_example_passphrase(stack_file: Path) -> None:
    assert _plaintexts(stack_file) == stack_secrets.VALUES[_stack(stack_file)]


def _set(values: dict[str, Any], path: list[str | int], plain: str) -> None:
    cur: Any = values
    for p in path[:-1]:
        cur = cur[p]
    cur[path[-1]] = plain


@pytest.mark.parametrize("stack_file", STACK_FILES, ids=_stack)
def test_decrypted_config_is_valid(stack_file: Path) -> None:
    # what the program gets under the real engine: the stack's config with the secrets decrypted
    stack = _stack(stack_file)
    project = read_project(ROOT)
    raw = read_stack_config(project, stack)
    values = copy.deepcopy(dict(raw.values))
    doc = yaml.safe_load(stack_file.read_text())
    for path, _ in stack_secrets.secure_leaves(doc["config"]):
        _set(values, path, stack_secrets.VALUES[stack][stack_secrets.config_path(path)])
    with deferred_gate() as gate:  # production's promotion gate is not about the config
        deployment = prepare(RawConfig(values, raw.secret_paths, raw.source), project="orders", stack=stack, base_dir=ROOT)
    assert deployment.environments
    assert all(i.path.endswith("requirePromotionFrom") for i in gate), gate


def test_decryption_checks_the_ciphertext() -> None:
    # a value that is not this stack's ciphertext (another key, or one byte changed) never decrypts:
    # GCM authenticates, so the test above cannot pass on stand-ins
    f = ROOT / "stacks" / "Pulumi.acceptance.yaml"
    doc = yaml.safe_load(f.read_text())
    _, salt, _ = doc["encryptionsalt"].split(":", 2)
    key = _key(base64.b64decode(salt))
    (path, value), *_ = stack_secrets.secure_leaves(doc["config"])
    assert _decrypt(key, value)  # the real one opens
    version, nonce, ct = value.split(":")
    raw = bytearray(base64.b64decode(ct))
    raw[0] ^= 1
    with pytest.raises(InvalidTag):
        _decrypt(key, ":".join([version, nonce, base64.b64encode(bytes(raw)).decode()]))
    with pytest.raises(InvalidTag):
        _decrypt(_key(b"another salt"), value)


def test_the_product_knows_every_example_salt() -> None:
    # mxinfra.stackfile.EXAMPLE_SALTS must follow stack_secrets.py: a re-encrypted example changes them
    from mxinfra.stackfile import EXAMPLE_SALTS

    salts = {yaml.safe_load(f.read_text()).get("encryptionsalt") for f in STACK_FILES} - {None}
    assert salts == EXAMPLE_SALTS


def test_a_stack_copied_from_an_example_is_warned_about(tmp_path: Path) -> None:
    import shutil

    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "stacks").mkdir()
    text = (ROOT / "stacks" / "Pulumi.acceptance.yaml").read_text()
    (tmp_path / "stacks" / "Pulumi.mine.yaml").write_text(text)
    salt = yaml.safe_load(text)["encryptionsalt"]
    (tmp_path / "stacks" / "Pulumi.fresh.yaml").write_text(text.replace(salt, "v1:AAAAAAAAAAA=:v1:AAAAAAAAAAAAAAAA:AAAA"))
    project = read_project(tmp_path)
    (warning,) = read_stack_config(project, "mine").warnings
    assert "Pulumi.mine.yaml" in warning and "public example passphrase" in warning and "change-secrets-provider" in warning
    assert read_stack_config(project, "fresh").warnings == ()
