"""Registry credentials for Amazon ECR (the `mxinfra.registry_credentials` plug-in of mxinfra-aws).

For `<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`, ECR's GetAuthorizationToken in that region
for that account, with the AWS SDK's usual credentials (environment, profile, SSO, instance or task
role): its token is base64 of `AWS:<password>`, good for 12 hours. Any other host is not ECR's: None.
boto3 is imported only for an ECR host. Not covered: ECR Public (public.ecr.aws, pulled anonymously),
the dual-stack `dkr-ecr.<region>.on.aws` hosts and the isolated partitions.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from mxinfra.registry import Credentials, RegistryAuthError, RegistryUnavailable

_ECR_HOST = re.compile(r"(?P<account>\d{12})\.dkr\.ecr(?P<fips>-fips)?\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+)\.amazonaws\.com(?:\.cn)?")


def ecr_registry(registry_host: str) -> tuple[str, str, bool] | None:
    """(account, region, FIPS) of an ECR registry host, or None when it is not one."""
    m = _ECR_HOST.fullmatch(registry_host.lower())
    return (m["account"], m["region"], bool(m["fips"])) if m else None


def ecr_credentials(registry_host: str, *, session: Any = None) -> Credentials | None:
    """Credentials for an ECR registry host from ECR's authorization token, or None for another host.

    `session` is a boto3 Session (default: a new one, so the usual environment and profile apply)."""
    parsed = ecr_registry(registry_host)
    if parsed is None:
        return None
    account, region, fips = parsed
    import boto3
    import botocore.config
    import botocore.exceptions

    config = botocore.config.Config(connect_timeout=10, read_timeout=30, use_fips_endpoint=fips or None)
    what = f"ECR registry {registry_host} (account {account}, region {region})"
    try:
        client = (session or boto3.session.Session()).client("ecr", region_name=region, config=config)
        resp = client.get_authorization_token(registryIds=[account])
    except botocore.exceptions.NoCredentialsError:
        raise RegistryAuthError(
            f"{what}: no AWS credentials were found to ask ECR for a token: sign in (`aws sso login`, AWS_PROFILE, "
            "or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), or `docker login` to it"
        ) from None
    except botocore.exceptions.ClientError as exc:
        err = exc.response.get("Error", {})
        raise RegistryAuthError(
            f"{what}: ECR refused GetAuthorizationToken ({err.get('Code', '?')}: {str(err.get('Message', ''))[:300]}): "
            "the AWS identity needs ecr:GetAuthorizationToken (and pull rights on the repository)"
        ) from None
    except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError, botocore.exceptions.ReadTimeoutError) as exc:
        raise RegistryUnavailable(f"{what}: ECR's API cannot be reached to get a token: {exc}") from None
    except botocore.exceptions.BotoCoreError as exc:  # expired SSO session, broken profile, ...
        raise RegistryAuthError(f"{what}: the AWS SDK could not ask ECR for a token: {exc}") from None
    data = resp.get("authorizationData") or []
    token = data[0].get("authorizationToken") if data and isinstance(data[0], dict) else None
    try:
        user, sep, password = base64.b64decode(token or "", validate=True).decode("utf-8").partition(":")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        sep = ""
    if not sep or not user or not password:
        raise RegistryAuthError(f"{what}: ECR's authorization token is not base64 of user:password (not shown)")
    return Credentials(user, password, source=f"ECR GetAuthorizationToken in {region}")
