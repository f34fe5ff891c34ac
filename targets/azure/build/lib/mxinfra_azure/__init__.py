"""mxinfra's Azure target: Mendix apps on Container Apps with PostgreSQL Flexible Server, Blob Storage,
Key Vault and RBAC/PIM per environment permission. Importing this package does not import pulumi_azure_native."""

from __future__ import annotations

from .target import AzureTarget

target = AzureTarget()

__all__ = ["AzureTarget", "target"]
