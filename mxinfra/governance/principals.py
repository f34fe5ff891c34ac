"""The principal forms a repository's policies name: an IAM role or user ARN (S3), an Entra object id
(Azure Blob). Pure: the package policy and the signing block's publishers check them alike."""

from __future__ import annotations

import re

AWS_PRINCIPAL_FORM = "an IAM role or user ARN, arn:aws:iam::ACCOUNT:role/NAME (no wildcard)"
AZURE_PRINCIPAL_FORM = "an Entra object id, a GUID such as 0f8fad5b-d9cb-469f-a165-70867728950e"
# IAM names: letters, digits and + = , . @ _ -; a path of such names may precede the last one.
IAM_PRINCIPAL = re.compile(r"arn:aws(?:-cn|-us-gov)?:iam::\d{12}:(?:role|user)/(?:[A-Za-z0-9+=,.@_-]+/)*[A-Za-z0-9+=,.@_-]{1,128}")
OBJECT_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def principal_problem(cloud: str, principal: str) -> str | None:
    """Why `principal` is not a principal of this cloud's form ('s3' or 'azblob'), or None if it is."""
    if cloud == "s3":
        return None if IAM_PRINCIPAL.fullmatch(principal) else f"expected {AWS_PRINCIPAL_FORM}"
    if cloud == "azblob":
        return None if OBJECT_ID.fullmatch(principal) else f"expected {AZURE_PRINCIPAL_FORM}"
    return None if principal.strip() and principal == principal.strip() else "expected a principal name"
