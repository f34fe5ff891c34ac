"""The `mxinfra:signing` stack config block's schema.

Apart from mxinfra.governance.signing, which the records' provider process imports for every record it
writes: pydantic and the config schema cost it a tenth of a second on the first record of a `pulumi up`,
which every other change of the environment waits for (issue 18), and that process never reads the block.
"""

from __future__ import annotations

from pydantic import Field

from ..schema import StrictModel


class SigningConfig(StrictModel):
    """`mxinfra:signing`."""

    signers: dict[str, str] = Field(default_factory=dict, description="environment -> the key that signs its records")
    trustedSigners: dict[str, list[str]] = Field(
        default_factory=dict, description="source environment -> keys whose records gated environments accept"
    )
    publishers: list[str] | None = Field(
        default=None,
        description="the principals that push packages with version labels (IAM ARNs, Entra object ids; on file:// a user or e-mail)",
    )
