"""The Azure names and ids of one environment, known before deployment (scopes, role definition GUIDs). Pure."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

from mxinfra.naming import Naming, shorten

# Role definition and assignment names are GUIDs; these derive them from stable inputs (uuid5).
# The blob container of an environment's files (the runtime's, the backups' data source).
FILES_CONTAINER = "mendix-files"
NAMESPACE = uuid.UUID("5b0c1a4e-8a43-4f5e-9a62-6d1f7c2b9e10")


def stable_guid(*parts: str) -> str:
    """A GUID that is the same on every run for the same parts."""
    return str(uuid.uuid5(NAMESPACE, "/".join(p.lower() for p in parts)))


@dataclass(frozen=True)
class Names:
    """Physical names (Azure's length and character rules) and the scope of one environment."""

    naming: Naming
    subscription: str
    suffix: str  # a short hash of the subscription: for names that are global across Azure

    @classmethod
    def of(cls, naming: Naming, subscription: str) -> Names:
        """The names of `naming`'s environment in `subscription`."""
        return cls(naming, subscription.lower(), hashlib.sha256(subscription.lower().encode()).hexdigest()[:6])

    @property
    def resource_group(self) -> str:
        """`<app>-<env>-rg`: the environment's resource group, the scope of its permissions."""
        return self.naming.physical("rg", max_len=90)

    @property
    def scope(self) -> str:
        """The resource group's id."""
        return f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"

    @property
    def restores_group(self) -> str:
        """`<app>-<env>-restores-rg`: where `mxinfra backup restore` creates a restore's new server (the
        backups permission writes servers there, never in the environment's own group)."""
        return self.naming.physical("restores-rg", max_len=90)

    @property
    def restores_scope(self) -> str:
        """The restores resource group's id."""
        return f"/subscriptions/{self.subscription}/resourceGroups/{self.restores_group}"

    @property
    def subscription_scope(self) -> str:
        """The subscription's id: the scope of the few actions ARM authorizes above the resource group."""
        return f"/subscriptions/{self.subscription}"

    @property
    def workspace(self) -> str:
        """Log Analytics workspace."""
        return self.naming.physical("logs", max_len=63)

    @property
    def environment(self) -> str:
        """Container Apps managed environment."""
        return self.naming.physical("env", max_len=60)

    @property
    def leader_app(self) -> str:
        """The leader's container app (one replica, CF_INSTANCE_INDEX=0)."""
        return self.naming.physical("", max_len=32)

    @property
    def worker_app(self) -> str:
        """The workers' container app (instances - 1 replicas, CF_INSTANCE_INDEX=1)."""
        return self.naming.physical("worker", max_len=32)

    @property
    def identity(self) -> str:
        """The runtime's user-assigned managed identity."""
        return self.naming.physical("runtime", max_len=128)

    @property
    def key_vault(self) -> str:
        """Key Vault (3-24 characters, global)."""
        digest = hashlib.sha256(f"{self.naming.prefix}/{self.subscription}".encode()).hexdigest()[:6]
        return shorten(f"{self.naming.prefix}-{digest}", 24)

    @property
    def storage_account(self) -> str:
        """Storage account (3-24 lowercase letters and digits, global)."""
        clean = "".join(c for c in self.naming.prefix.lower() if c.isascii() and c.isalnum())
        digest = hashlib.sha256(f"{self.naming.prefix}/{self.subscription}".encode()).hexdigest()[:6]
        return clean[:18] + digest

    @property
    def backup_vault(self) -> str:
        """The Azure Backup vault of the environment's weekly and monthly backups (2-50, in its group)."""
        return self.naming.physical("backups", max_len=50)

    def backup_instance(self, kind: str) -> str:
        """The vault's backup instance of `kind` (`files`: the container, `db`: the server)."""
        return self.naming.physical(f"{kind}-backup", max_len=100)

    @property
    def database_server(self) -> str:
        """PostgreSQL Flexible Server (3-63, global DNS name)."""
        return self.naming.physical(f"db-{self.suffix}", max_len=63)

    @property
    def database_zone(self) -> str:
        """The database's private DNS zone (must end in .postgres.database.azure.com)."""
        return f"{self.naming.physical('', max_len=63)}.private.postgres.database.azure.com"

    def role_definition_guid(self, permission: str) -> str:
        """The GUID of the environment's custom role for `permission`."""
        return stable_guid(self.scope, "role", permission)

    def role_definition_id(self, guid: str) -> str:
        """The full id of a role definition (custom and built-in ones live under the subscription)."""
        return f"/subscriptions/{self.subscription}/providers/Microsoft.Authorization/roleDefinitions/{guid}"

    def assignment_guid(self, *parts: str) -> str:
        """The name (GUID) of a role assignment or eligibility at this scope."""
        return stable_guid(self.scope, "assignment", *parts)
