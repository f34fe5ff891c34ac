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


def test_old_stand_ins_would_be_refused() -> None:
    # the form the stacks had before: base64 of a word, not a ciphertext; the check above must fail on it
    key = _key(b"salt")
    with pytest.raises(Exception):
        _decrypt(key, "v1:" + base64.b64encode(b"production-database-url").decode())
