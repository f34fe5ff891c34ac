"""Issue 19, F11: `pulumi up` applied a change and only then signed its record, so a signer that could not
sign (a key file gone, KMS access refused) left the change applied and unrecorded. Now the program asks
every environment's signer to sign a probe before anything is declared (fail closed); the offline plan
does not (it must work without the keys)."""

from __future__ import annotations

from pathlib import Path

import pytest
from scaffold import app_config

from mxinfra.config import RawConfig
from mxinfra.deployment import prepare
from mxinfra.errors import ConfigError
from mxinfra.governance.signing import PROBE, generate_key_file, signed_message
from mxinfra.imagebinding import Check


def _raw(tmp_path: Path, signer: str) -> RawConfig:
    cfg = app_config(**{"mxinfra:repository": f"file://{tmp_path / 'repo'}", "mxinfra:signing": {"signers": {"test": signer}}})
    return RawConfig(cfg, frozenset())


def test_a_signer_that_cannot_sign_stops_pulumi_up_before_anything(fake_target, tmp_path: Path) -> None:
    raw = _raw(tmp_path, "file:keys/missing.pem")
    with pytest.raises(ConfigError) as refused:
        prepare(raw, project="orders", stack="test", base_dir=tmp_path, images=Check.REQUIRED)
    said = str(refused.value)
    assert "mxinfra:signing.signers.test" in said and "the signer of 'test' (file:keys/missing.pem) cannot sign" in said, said
    # the offline plan and the preview do not need the key
    assert prepare(raw, project="orders", stack="test", base_dir=tmp_path, images=Check.PLAN).environment("test")


def test_a_signer_that_signs_lets_pulumi_up_go_on(fake_target, tmp_path: Path) -> None:
    generate_key_file(tmp_path / "keys" / "test.pem")
    d = prepare(_raw(tmp_path, "file:keys/test.pem"), project="orders", stack="test", base_dir=tmp_path, images=Check.REQUIRED)
    assert d.environment("test")


def test_the_probe_can_never_be_a_records_signature() -> None:
    assert not PROBE.startswith(signed_message("")[: len(b"mxinfra-activity-record-v1:")])
