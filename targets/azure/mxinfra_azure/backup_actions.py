"""`mxinfra backup list|create|restore` on an Azure environment: the PostgreSQL Flexible Server's own backups
and the files' blob point-in-time restore (backups.py renders both), run by whoever runs the command with
azure-identity's DefaultAzureCredential (running.py's), as the environment's `backups` role (roles.py) at
its resource group, and for a restore's new server also its `backups-restores` role at the environment's
restores resource group (where that server is created: a server write at the environment's own group would
reach its running server too) and its `backups-network` role on the database subnet
(the linked join ARM checks on the server PUT). No Pulumi imports; the Azure SDKs only when Azure is asked.

Every call goes through one azure-mgmt-postgresqlflexibleservers client at the API version
pulumi-azure-native 3 manages the server with (PG_API_VERSION, pinned: its published description is what
the tests hold the calls to); the one storage call, restoreBlobRanges, which no installed SDK has (no
azure-mgmt-storage), is a plain ARM request sent through the same client's pipeline (`send_request`: the
same credential, retries and endpoint) at the version pulumi-azure-native manages the account with.
Long-running operations are followed by reading the resource they change, never their
Azure-AsyncOperation URL: ARM authorizes that URL at the subscription, above the role's resource group.

A backup is one of the server's backups (`backups`, automatic and on-demand: ListByServer); its id is its
completion time in UTC to the second (`YYYYmmddTHHMMSSZ`, the core's format; two in one second: the later
takes the next free second). A restore takes the files back by the blob service's point-in-time restore
(restorePolicy.days, the daily tier), which returns the container to any instant of its window.

- `refusal`: a dry read of the server's backups (`flexibleServers/backups/read`, which the `backups` role
  holds, and `api`, Azure's built-in Reader, through `*/read`: so an `api` holder lists the backups' names
  and times, and is refused at the first write); Azure's AuthorizationFailed becomes a message naming the
  `backups` role (on production: activate its PIM eligibility first). A restore into production is the
  platform identity's (roles.RESTORE_ONLY: production's `backups` restores nothing, since RBAC cannot make a
  restore wait for a backup): `refusal("restore")` there lists the caller's own permissions at the two
  groups (Permissions_ListForResourceGroup) and refuses unless they allow the files' restore and a server write.
- `create`: an on-demand backup `mxinfra-<request time>` (BackupsAutomaticAndOnDemand_Create), then its
  GET until it exists with a completion time (bounded: BACKUP_TIMEOUT). `keep` needs nothing: the server
  keeps on-demand backups for its retention days like the automatic ones, and no command deletes one.
  With a Backup vault (weekly or monthly tiers), first a backup of the files into it
  (BackupInstances_AdhocBackup of `<app>-<env>-files-backup`: the policy's rule, kept as its Default
  tier, `weekly` weeks, immutable on production), waited for by listing the instance's recovery points
  until one is there that was not before and was taken at or after the request (within the same
  BACKUP_TIMEOUT, or until the job the request's operation names ends Failed or Cancelled; the record names
  it, `backup_details`): what a production restore overwrites is the
  files (the database's restore makes a new server), so its backup first holds them beyond the daily
  window. DataProtection is, like restoreBlobRanges, a plain ARM request at the version
  pulumi-azure-native manages the instance with (DP_API_VERSION; no azure-mgmt-dataprotection installed).
- `restore`: never over the running server: a point-in-time restore into a NEW server in the restores group
  `<server>-<id>` (Servers_Create, createMode PointInTimeRestore at the backup's completion time, in the
  source's location, subnet and private DNS zone, with its tags), refused if that server exists; and the
  blob point-in-time restore of the container `mendix-files` to the same instant (restoreBlobRanges over
  the container's range, in place: the account is the environment's only one). Both are waited for
  (bounded: RESTORE_TIMEOUT) by reading the new server's state and the account's blobRestoreStatus. How to
  put the backup in service (`mxinfra:azure.database.fromBackup`) is said on stderr and in the README. On production a restore
  is refused unless `create` took an on-demand backup first in the same run (`mxinfra backup restore`
  does so).

Every failure is a UserError (exit 2, no traceback) naming the server or account, the operation and what
to do.
"""

from __future__ import annotations

import email.utils
import fnmatch
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, TextIO

from mxinfra.backups import ID_FORMAT, NothingRestored
from mxinfra.environments import Environment
from mxinfra.errors import UserError

from . import running
from .backups import VAULT_RULE
from .names import FILES_CONTAINER, Names

# The versions pulumi-azure-native 3 manages the server and the account with ("Uses Azure REST API
# version ..." of dbforpostgresql.Server and storage.StorageAccount): the published descriptions the
# tests hold every request and answer to (tests/targets/azure/spec).
PG_API_VERSION = "2025-08-01"
STORAGE_API_VERSION = "2024-01-01"
DP_API_VERSION = "2025-01-01"  # dataprotection.BackupInstance's
POLL_SECONDS = 15.0
# A large server's backup or restore: the command waits this long, then says how to follow it.
BACKUP_TIMEOUT = 2 * 3600.0
RESTORE_TIMEOUT = 6 * 3600.0
ON_DEMAND_PREFIX = "mxinfra-"
# How much earlier than the request a new recovery point may be stamped and still be the backup asked for:
# clocks differ (this machine's, ARM's Date, the backup service's), and a point is of its job's start. A
# scheduled backup that began longer ago and ends while the command waits is not taken for it.
POINT_SLACK = timedelta(minutes=1)
BACKUPS_READ = "Microsoft.DBforPostgreSQL/flexibleServers/backups/read"
# What a restore does, asked of the caller's permissions before a production restore (the platform identity's)
FILES_RESTORE = "Microsoft.Storage/storageAccounts/restoreBlobRanges/action"
SERVER_WRITE = "Microsoft.DBforPostgreSQL/flexibleServers/write"
PERMISSIONS_READ = "Microsoft.Authorization/permissions/read"
AUTHORIZATION_API_VERSION = "2022-04-01"  # Permissions_ListForResourceGroup's (azure-mgmt-authorization's default)
# A server's states that end a restore badly (Ready ends it well; others are on the way).
_SERVER_FAILED = frozenset({"Disabled", "Dropping", "Inaccessible"})


@dataclass
class FilesBackup:
    """A backup of the files asked of the vault: the recovery points there were before, the earliest time a
    point of it may carry, and how to follow its job (the POST's operation status, under the vault, then
    the job it names) so that a failed job ends the wait at once."""

    before: set[str]
    at_least: datetime
    status: str | None  # the operation status's path (None: the answer named none under the vault)
    job: str | None = None  # the job's id, once the operation named it
    misses: int = 0  # reads of the operation or job that failed in a row


# A vault job's states that end it without a point (Jobs_Get's `status`; the operation status's are ARM's),
# compared in lower case
_JOB_FAILED = frozenset({"failed", "cancelled", "canceled", "cancelling"})
_OPERATION_FAILED = frozenset({"failed", "canceled", "cancelled"})
# Failed reads in a row (each after the pipeline's own retries) before the job is no longer followed: a job
# the operation has just named may not be readable yet, and one bad answer must not end the follow
FOLLOW_MISSES = 3
# An ARM list's pages followed at most (a repeated nextLink ends it too): far beyond any vault's points
MAX_PAGES = 1000


@dataclass(frozen=True)
class Backup:
    """One of the server's backups."""

    id: str
    name: str
    at: datetime  # its completion time, UTC: the instant a restore of it returns to
    kind: str  # Flexible Server's backupType: Full (automatic) or Customer On-Demand


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def backups_of(found: Sequence[tuple[str, datetime | None, str | None]]) -> list[Backup]:
    """The backups of ListByServer's answer ((name, completedTime, backupType) each), newest first; one
    without a completion time (not done) is left out. Ids are unique: a backup completed in the second of
    an earlier one takes the next free second. Pure."""
    out: list[Backup] = []
    used: set[str] = set()
    for name, at, kind in sorted(((n, _utc(t), k) for n, t, k in found if t is not None), key=lambda b: (b[1], b[0])):
        second = at.replace(microsecond=0)
        while second.strftime(ID_FORMAT) in used:
            second += timedelta(seconds=1)
        used.add(second.strftime(ID_FORMAT))
        out.append(Backup(second.strftime(ID_FORMAT), name, at, kind or "?"))
    return sorted(out, key=lambda b: b.id, reverse=True)


def _errors(errors: Sequence[Any]) -> str:
    """`: <code>: <message>; ...` of ARM's or a vault job's errors (nothing when there are none)."""
    said = [f"{e.get('code')}: {e.get('message')}" for e in errors if isinstance(e, Mapping) and (e.get("code") or e.get("message"))]
    return ": " + "; ".join(said) if said else ""


def permits(permissions: Sequence[Mapping[str, Any]], action: str) -> bool:
    """Azure RBAC's reading of a caller's permissions (one entry per role): some entry's `actions` match
    `action` and none of that entry's `notActions` do, case-insensitively, `*` matching any characters."""
    a = action.lower()

    def matches(patterns: Any) -> bool:
        return any(fnmatch.fnmatchcase(a, str(x).lower()) for x in patterns or [])

    return any(matches(p.get("actions")) and not matches(p.get("notActions")) for p in permissions)


def restored_server(server: str, backup_id: str) -> str:
    """The new server a restore creates: `<server>-<id>`, named by the rule of database.restored_server_name
    (a digest where too long, keeping the server's unique suffix). Never the running server."""
    from .database import restored_server_name

    return restored_server_name(server, backup_id, kind="")


def on_demand_name(now: datetime) -> str:
    """The name of an on-demand backup requested at `now`: `mxinfra-<UTC time>.<microseconds>z`, so that two
    requests in one second (production's backup before a restore) are two backups."""
    t = _utc(now)
    return f"{ON_DEMAND_PREFIX}{t.strftime('%Y%m%dt%H%M%S')}.{t.microsecond:06d}z"


def container_range(container: str) -> dict[str, str]:
    """The blob range of every blob of `container` and nothing else: from `<container>/` up to, not
    including, `<container>0` ('0' follows '/'; container names hold no character between them)."""
    return {"startRange": f"{container}/", "endRange": f"{container}0"}


def _point_time(props: Mapping[str, Any]) -> datetime | None:
    """A vault recovery point's time (recoveryPointTime, UTC), or None when it has none Python reads."""
    text = props.get("recoveryPointTime")
    try:
        at = datetime.fromisoformat(str(text).replace("Z", "+00:00")) if text else None
    except ValueError:
        return None
    return at.astimezone(timezone.utc) if at is not None and at.tzinfo is not None else None


def _iso(t: datetime) -> str:
    return _utc(t).isoformat().replace("+00:00", "Z")


class ServerActions:
    """`mxinfra backup`'s actions on one environment's server and files (see the module docstring)."""

    def __init__(
        self,
        env: Environment,
        names: Names,
        *,
        credential: Any = None,
        endpoint: str | None = None,
        poll: float | None = None,
        backup_timeout: float | None = None,
        restore_timeout: float | None = None,
        out: TextIO | None = None,
        server: str | None = None,
        vault: bool = False,
    ) -> None:
        self.env, self.names = env, names
        # None: the module's (read now, so a test may set them)
        self.poll = POLL_SECONDS if poll is None else poll
        self.backup_timeout = BACKUP_TIMEOUT if backup_timeout is None else backup_timeout
        self.restore_timeout = RESTORE_TIMEOUT if restore_timeout is None else restore_timeout
        self.out = out
        # `server`: the one in service when database.fromBackup put a restored one there (target.backup_actions)
        self.group, self.server, self.account = names.resource_group, server or names.database_server, names.storage_account
        self.restores = names.restores_group  # where a restore's new server is created (roles.RESTORES_ACTIONS)
        self._credential, self._endpoint = credential, endpoint
        self._client: Any = None
        self._taken: list[str] = []  # on-demand backups this run took (production restores need one)
        self._files_points_of: dict[str, str] = {}  # a backup this run took -> its files' recovery point
        # `vault`: the environment has a Backup vault (weekly or monthly tiers): an on-demand backup takes the
        # files into it too, what a restore overwrites (the database's restore makes a new server)
        self.vault = vault
        self._backups: list[Backup] | None = None

    @property
    def where(self) -> str:
        """The server, its resource group and subscription, for messages."""
        return f"PostgreSQL flexible server {self.server} (resource group {self.group}, subscription {self.names.subscription})"

    # --- the interface of mxinfra.backup_cli -----------------------------------------------------------

    def refusal(self, action: str) -> str | None:
        """Why the caller may not run `action` (None: Azure lets them read the server's backups, which the
        environment's `backups` role does, and `api`'s Reader too). Each later call is authorised by Azure
        one by one, a refusal named as here."""
        from azure.core.exceptions import HttpResponseError

        try:
            with self._azure(f"{BACKUPS_READ} of {self.server}", reraise_denied=True):
                self._backups = self._read_backups()
        except HttpResponseError as exc:
            return f"the signed-in identity may not {action} backups of {self.env.name}: Azure refused {BACKUPS_READ} of {self.server} ({running.error_code(exc)}). {self._rights()}"
        if action == "restore" and self.env.is_production:
            return self._production_restore_refusal()
        return None

    def _production_restore_refusal(self) -> str | None:
        """Why the caller may not restore into production (None: it holds both restores' actions). There only
        the platform identity restores (roles.RESTORE_ONLY): asked before the backup first and the intent
        record, from the caller's own permissions at the two groups (Permissions_ListForResourceGroup)."""
        from azure.core.exceptions import HttpResponseError

        for group, action in ((self.group, FILES_RESTORE), (self.restores, SERVER_WRITE)):
            path = f"/subscriptions/{urllib.parse.quote(self.names.subscription, safe='')}/resourcegroups/{urllib.parse.quote(group, safe='')}/providers/Microsoft.Authorization/permissions"
            try:
                held = self._listed(path, AUTHORIZATION_API_VERSION, f"{PERMISSIONS_READ} at {group}", reraise_denied=True)
            except HttpResponseError as exc:
                why = f"Azure refused it {PERMISSIONS_READ} at resource group {group} ({running.error_code(exc)})"
            else:
                if permits(held, action):
                    continue
                why = f"its roles at resource group {group} do not allow {action}"
            return (
                f"a restore into {self.env.name} (production) is the platform identity's: production's backups role takes and lists backups and "
                "restores nothing, since Azure RBAC cannot make a restore wait for the backup of what it overwrites (targets/azure/README.md, "
                f"Backups). The signed-in identity may not restore there: {why}. Run `mxinfra backup restore` as the platform identity; it takes that "
                "backup first and records both"
            )
        return None

    def list(self) -> list[str]:
        """The server's backups, automatic and on-demand, newest first (ids: their UTC completion time)."""
        return [b.id for b in self._list()]

    def create(self, now: datetime, keep: str | None = None) -> str:
        """An on-demand backup of the server (with a vault, the files' into it first), waited for; its id (as
        `list` gives it). `keep` needs nothing: the server drops backups only by age (its retention days),
        never to make room for a new one."""
        name = on_demand_name(now)
        deadline = time.monotonic() + self.backup_timeout
        asked = self._start_files_backup() if self.vault else None
        try:
            name = self._server_backup(name, deadline)
        except UserError as e:
            if asked is None:
                raise
            raise UserError(f"{e}. The files' backup into the vault {self.names.backup_vault} had been asked for already: `{self._follow_vault()}`") from None
        point = self._files_backed_up(asked, deadline) if asked is not None else None
        if point is not None:
            self._say(f"{self.env.name}: the files' backup into the vault {self.names.backup_vault}: recovery point {point} (of the container {FILES_CONTAINER}, kept as the vault's Default tier)")
        self._backups = None
        for b in self._list():
            if b.name == name:
                self._taken.append(b.id)
                if point is not None:
                    self._files_points_of[b.id] = point
                return b.id
        raise UserError(f"{self.env.name}: the on-demand backup {name} completed, but the server's list of backups does not hold it: see `{self._follow_backup(name)}`")

    def _follow_vault(self) -> str:
        return f"az dataprotection job list -g {self.group} --vault-name {self.names.backup_vault}"

    def _follow_backup(self, name: str) -> str:
        return f"az postgres flexible-server backup show -g {self.group} --name {self.server} --backup-name {name}"

    def _server_backup(self, name: str, deadline: float) -> str:
        """The server's on-demand backup `name`, asked for and waited for until it has a completion time; its name."""
        with self._azure(f"the on-demand backup {name} of {self.server}"):
            self.client.backups_automatic_and_on_demand.begin_create(self.group, self.server, name, polling=False)
        follow = self._follow_backup(name)
        while True:
            got = self._get_backup(name)
            if got is not None and got.properties is not None and got.properties.completed_time is not None:
                break
            if time.monotonic() >= deadline:
                raise UserError(
                    f"{self.env.name}: the on-demand backup {name} of {self.where} is not complete after {self.backup_timeout / 60:.0f} minutes. "
                    f"Follow it with `{follow}`, then run `mxinfra backup list`"
                )
            time.sleep(self.poll)
        return name

    def backup_details(self, backup_id: str) -> dict[str, str]:
        """What the record of a backup this run took says beyond its id: the files' recovery point in the
        vault (`files`: `<vault>/<backup instance>/<point>`), which `list` does not show."""
        point = self._files_points_of.get(backup_id)
        return {"files": f"{self.names.backup_vault}/{self.names.backup_instance('files')}/{point}"} if point else {}

    def restore(self, backup: str, now: datetime, before: Callable[[], None] | None = None) -> dict[str, Any]:
        """Restore backup `backup`: the database into a new server, the files in place, both to the
        backup's completion time; waited for. `before` runs once the checks passed, before the first request
        that changes anything (the CLI's intent record). What was created, which the CLI may record."""
        if self.env.is_production and not self._taken:
            raise UserError(
                f"restoring into production {self.env.name} needs an on-demand backup of it taken first, in the same run: "
                "use `mxinfra backup restore`, which takes one and records it before restoring"
            )
        found = {b.id: b for b in self._list()}
        if backup not in found:
            raise UserError(f"{self.env.name} has no backup {backup} of {self.where}: see `mxinfra backup list`")
        at = found[backup].at
        new = restored_server(self.server, backup)
        if new == self.server:  # never over the running server
            raise UserError(f"refusing to restore over the running server {self.server}")
        source = self._get_server(self.server)
        if source is None:
            raise UserError(f"{self.env.name}: the {self.where} does not exist: deploy the stack (`pulumi up`)")
        # a PUT would update it, not restore into it (server names are global: one restored before the
        # restores group existed is in the environment's group)
        found_in = next((g for g in (self.restores, self.group) if self._get_server(new, g) is not None), None)
        if found_in is not None:
            raise UserError(
                f"{self.env.name}: the server {new} exists already (a restore of backup {backup} ran before): use it, or have the platform "
                f"identity delete it (`az postgres flexible-server delete -g {found_in} --name {new}`) and restore again"
            )
        if before is not None:
            before()
        self._create_restored(new, source, at)
        started = f"the new server {new} is being created (`az postgres flexible-server show -g {self.restores} --name {new}`)"
        restore_id = self._restore_files(at, started)
        self._wait_restores(new, restore_id)
        self._say(
            "\n".join(
                [
                    f"{self.env.name}: backup {backup} restored to {_iso(at)}:",
                    f"  database: into the NEW server {new} (resource group {self.restores}) to look at; the app still uses {self.server}, which is unchanged. To put the "
                    f"backup in service, set mxinfra:azure.database.fromBackup.{self.env.name}: {backup} and run `pulumi up` (a server "
                    f"restored to that time, managed by the stack); or have the platform identity move data into {self.server} "
                    f"(pg_dump/pg_restore from inside the VNet). Then delete {new} (targets/azure/README.md, Backups)",
                    f"  files: the container {FILES_CONTAINER} of {self.account} is back at {_iso(at)}, in place: files written since are "
                    "removed and overwritten ones are the older versions again (both kept as versions for the soft delete days)",
                ]
            )
        )
        # named as AWS names them in the record: where the database and the files were restored into
        return {"database": new, "filesInto": f"{self.account}/{FILES_CONTAINER}", "pointInTime": _iso(at)}

    def _create_restored(self, new: str, source: Any, at: datetime) -> None:
        """Ask for the new server; NothingRestored when Azure refused the request (4xx) and no such server
        exists (the SDK retries a PUT whose answer was lost: a 409 of the retry may follow an accepted first
        try): nothing was created, and the files, restored after it, were not touched. Any other failure may
        have left the request on its way."""
        from azure.core.exceptions import HttpResponseError

        refused = False
        try:
            with self._azure(f"the point-in-time restore of {self.server} into the new server {new}"):
                try:
                    self.client.servers.begin_create_or_update(self.restores, new, self._restore_body(source, at), polling=False)
                except HttpResponseError as exc:
                    refused = exc.status_code is not None and 400 <= exc.status_code < 500
                    raise
        except UserError as e:
            if refused:
                try:
                    gone = self._never_made(new)
                except UserError:
                    gone = False  # not known: not claimed
                if gone:
                    raise NothingRestored(f"{e}; nothing was restored") from None
            raise

    def _never_made(self, name: str, looks: int = 3) -> bool:
        """Whether the server `name` is absent at each of a few looks (one an accepted PUT makes may show a moment later)."""
        for look in range(looks):
            if self._get_server(name, self.restores) is not None:
                return False
            if look < looks - 1:
                time.sleep(self.poll)
        return True

    # --- Azure --------------------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The Flexible Server client (made on first use), at PG_API_VERSION."""
        if self._client is None:
            from azure.mgmt.postgresqlflexibleservers import PostgreSQLManagementClient

            with self._azure("signing in"):
                self._client = PostgreSQLManagementClient(
                    self._credential if self._credential is not None else running.default_credential(),
                    self.names.subscription,
                    base_url=self._endpoint or running.ARM,
                    api_version=PG_API_VERSION,
                    retry_total=3,
                    connection_timeout=10,
                    read_timeout=60,
                )
        return self._client

    def _list(self) -> list[Backup]:
        if self._backups is None:
            with self._azure(f"{BACKUPS_READ} of {self.server}"):
                self._backups = self._read_backups()
        return self._backups

    def _read_backups(self) -> list[Backup]:
        """ListByServer, every page (the caller turns the SDK's failures into messages)."""
        pages = self.client.backups_automatic_and_on_demand.list_by_server(self.group, self.server)
        return backups_of([(b.name, b.properties.completed_time if b.properties else None, b.properties.backup_type if b.properties else None) for b in pages])

    def _get_backup(self, name: str) -> Any:
        """The backup `name`, or None while Azure does not list it (still running)."""
        from azure.core.exceptions import ResourceNotFoundError

        with self._azure(f"{BACKUPS_READ} of {self.server}/{name}"):
            try:
                return self.client.backups_automatic_and_on_demand.get(self.group, self.server, name)
            except ResourceNotFoundError:
                return None

    def _get_server(self, name: str, group: str | None = None) -> Any:
        """The server `name` in the environment's resource group (or `group`), or None."""
        from azure.core.exceptions import ResourceNotFoundError

        with self._azure(f"Microsoft.DBforPostgreSQL/flexibleServers/read of {name}"):
            try:
                return self.client.servers.get(group or self.group, name)
            except ResourceNotFoundError:
                return None

    def _restore_body(self, source: Any, at: datetime) -> dict[str, Any]:
        """Servers_Create's body of a point-in-time restore of `source` at `at`: in its location, subnet
        and private DNS zone (a VNet-integrated server restores only into a subnet of its VNet), with its
        tags (the environment's: the new server is one of its resources)."""
        props: dict[str, Any] = {"createMode": "PointInTimeRestore", "sourceServerResourceId": source.id, "pointInTimeUTC": _iso(at)}
        network = source.properties.network if source.properties is not None else None
        if network is not None and network.delegated_subnet_resource_id:
            props["network"] = {"delegatedSubnetResourceId": network.delegated_subnet_resource_id}
            if network.private_dns_zone_arm_resource_id:
                props["network"]["privateDnsZoneArmResourceId"] = network.private_dns_zone_arm_resource_id
        return {"location": source.location, "tags": dict(source.tags or {}), "properties": props}

    def _in_group(self, provider: str, *names: str) -> str:
        """The id of a resource of the environment's group (`provider`: its type path, `{}` for each name)."""
        parts = (urllib.parse.quote(x, safe="") for x in (self.names.subscription, self.group, *names))
        return ("/subscriptions/{}/resourceGroups/{}/providers/" + provider).format(*parts)

    def _account_path(self) -> str:
        return self._in_group("Microsoft.Storage/storageAccounts/{}", self.account)

    def _files_instance_path(self) -> str:
        return self._in_group("Microsoft.DataProtection/backupVaults/{}/backupInstances/{}", self.names.backup_vault, self.names.backup_instance("files"))

    def _storage(self, method: str, path: str, doing: str, *, body: Any = None, params: Mapping[str, str] | None = None, started: str = "") -> dict[str, Any]:
        """One ARM request of Microsoft.Storage on the account; its JSON answer."""
        return self._request(method, self._account_path() + path, STORAGE_API_VERSION, doing, body=body, params=params, started=started)

    def _request(
        self,
        method: str,
        path: str,
        version: str,
        doing: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        started: str = "",
        headers: dict[str, str] | None = None,
        reraise_denied: bool = False,
    ) -> dict[str, Any]:
        """One ARM request (of a provider no installed SDK covers) through the client's pipeline; its JSON
        answer (and, into `headers`, the answer's headers). `reraise_denied`: a 403 is the SDK's error, not a UserError."""
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError, map_error
        from azure.core.rest import HttpRequest
        from azure.mgmt.core.exceptions import ARMErrorFormat

        request = HttpRequest(method, path, params={"api-version": version, **(params or {})}, json=body, headers={"Accept": "application/json"})
        with self._azure(doing, started=started, reraise_denied=reraise_denied):
            response = self.client.send_request(request)
            response.read()
            if response.status_code not in (200, 202):
                map_error(status_code=response.status_code, response=response, error_map={401: ClientAuthenticationError, 404: ResourceNotFoundError})
                raise HttpResponseError(response=response, error_format=ARMErrorFormat)
        if headers is not None:
            headers.update(response.headers)
        try:
            answer = response.json() if response.text() else {}
        except ValueError:
            answer = {}
        return answer if isinstance(answer, dict) else {}

    def _listed(self, path: str, version: str, doing: str, *, reraise_denied: bool = False) -> list[dict[str, Any]]:
        """Every item of an ARM list (`value`, following `nextLink` through the same pipeline)."""
        params: dict[str, str] | None = None
        items: list[dict[str, Any]] = []
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            page = self._request("GET", path, version, doing, params=params, reraise_denied=reraise_denied)
            items += [x for x in page.get("value") or [] if isinstance(x, dict)]
            link = page.get("nextLink")
            if not link or str(link) in seen:
                return items
            seen.add(str(link))
            # the next page's address as ARM gives it (its own api-version is the request's)
            url = urllib.parse.urlsplit(str(link))
            path, params = url.path, {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items() if k != "api-version"}
        raise UserError(f"{self.env.name}: {doing}: Azure's list went on past {MAX_PAGES} pages")

    def _files_points(self) -> dict[str, Mapping[str, Any]]:
        """The files' recovery points in the vault, name -> properties (RecoveryPoints_List, every page)."""
        doing = f"Microsoft.DataProtection/backupVaults/backupInstances/recoveryPoints/read of {self.names.backup_instance('files')} ({self.names.backup_vault})"
        return {str(p.get("name")): p.get("properties") or {} for p in self._listed(self._files_instance_path() + "/recoveryPoints", DP_API_VERSION, doing)}

    def _start_files_backup(self) -> FilesBackup:
        """Ask the vault for a backup of the files now (BackupInstances_AdhocBackup: the policy's rule,
        kept as its Default tier): the recovery points there were before, the earliest time a point of
        this backup may carry (the earlier of this machine's clock before the request and the answer's Date,
        whole seconds stamped by ARM as it answers, not by the backup service, less POINT_SLACK), and the
        answer's operation status (Azure-AsyncOperation) if it is under the vault."""
        before = set(self._files_points())
        asked = datetime.now(timezone.utc)
        body = {"backupRuleOptions": {"ruleName": VAULT_RULE, "triggerOption": {"retentionTagOverride": "Default"}}}
        headers: dict[str, str] = {}
        self._request(
            "POST",
            self._files_instance_path() + "/backup",
            DP_API_VERSION,
            f"Microsoft.DataProtection/backupVaults/backupInstances/backup/action of {self.names.backup_instance('files')} ({self.names.backup_vault})",
            body=body,
            headers=headers,
        )
        date = next((v for k, v in headers.items() if k.lower() == "date"), None)
        try:
            answered = email.utils.parsedate_to_datetime(date) if date else None
        except (TypeError, ValueError):
            answered = None
        if answered is not None and answered.tzinfo is not None:
            asked = min(asked, answered.astimezone(timezone.utc))
        return FilesBackup(before, asked - POINT_SLACK, self._vault_operation(headers))

    def _vault_operation(self, headers: Mapping[str, str]) -> str | None:
        """The path of the operation status an answer names, if it is the vault's own (one the backups role
        reads; anything else is not followed)."""
        link = next((v for k, v in headers.items() if k.lower() == "azure-asyncoperation"), None)
        path = urllib.parse.urlsplit(str(link)).path if link else ""
        vault = self._in_group("Microsoft.DataProtection/backupVaults/{}", self.names.backup_vault)
        return path if path.lower().startswith(vault.lower() + "/operationstatus/") else None

    def _vault_job_failure(self, asked: FilesBackup) -> str | None:
        """Why the files' backup job ended without a point (None: it has not, or cannot be followed): its
        operation status (OperationStatusBackupVaultContext_Get) names the job, whose state (Jobs_Get) tells."""
        what = f"the files' backup into the vault {self.names.backup_vault}"
        try:
            if asked.job is None and asked.status is not None:
                op = self._request("GET", asked.status, DP_API_VERSION, f"Microsoft.DataProtection/backupVaults/operationStatus/read of {what}")
                asked.misses = 0
                state = str(op.get("status") or "")
                if state.lower() in _OPERATION_FAILED:
                    return f"its request ended {state}{_errors([op.get('error')])}"
                job = (op.get("properties") or {}).get("jobId") if state.lower() == "succeeded" else None
                asked.job = str(job).rsplit("/", 1)[-1] if job else None
            if asked.job is None:
                return None
            path = self._in_group("Microsoft.DataProtection/backupVaults/{}/backupJobs/{}", self.names.backup_vault, asked.job)
            props = self._request("GET", path, DP_API_VERSION, f"Microsoft.DataProtection/backupVaults/backupJobs/read of {what} (job {asked.job})").get("properties") or {}
        except UserError as e:
            # following the job only ends the wait early: when it cannot be read, the recovery points still tell
            asked.misses += 1
            if asked.misses >= FOLLOW_MISSES:
                self._say(f"{self.env.name}: {what} is no longer followed by its job ({asked.misses} reads in a row failed, the last: {e}); waiting for its recovery point")
                asked.status = asked.job = None
            return None
        asked.misses = 0
        state = str(props.get("status") or "")
        return f"its job {asked.job} ended {state}{_errors(props.get('errorDetails') or [])}" if state.lower() in _JOB_FAILED else None

    def _files_backed_up(self, asked: FilesBackup, deadline: float) -> str:
        """A recovery point of the files that was not there before the backup was asked for and was taken no
        earlier than `asked` allows (the request, less POINT_SLACK), waited for: its name. The vault names
        points by GUID and the request's answer names none: such a point holds the files as they were at the
        request (at most POINT_SLACK before it); a scheduled backup that began earlier and completes meanwhile
        is not taken for it. A job that ends without a point (Failed, Cancelled) ends the wait at once."""
        before, at_least = asked.before, asked.at_least
        follow = self._follow_vault()
        while True:
            points = self._files_points().items()
            taken = sorted((at, name, props) for name, props in points if name not in before and (at := _point_time(props)) is not None and at >= at_least)
            if taken:
                _, name, props = taken[0]
                if props.get("recoveryPointState") == "Partial":  # only some of the files
                    raise UserError(
                        f"{self.env.name}: the files' backup into the vault {self.names.backup_vault} is Partial (recovery point {name}): not all of the "
                        f"container {FILES_CONTAINER} was copied. See `{follow}`"
                    )
                return name
            failed = self._vault_job_failure(asked)
            if failed is not None:
                raise UserError(f"{self.env.name}: the files' backup into the vault {self.names.backup_vault} made no recovery point: {failed}. See `{follow}`")
            if time.monotonic() >= deadline:
                raise UserError(
                    f"{self.env.name}: the files' backup into the vault {self.names.backup_vault} made no recovery point within {self.backup_timeout / 60:.0f} minutes. "
                    f"Follow it with `{follow}`; its recovery points: `az dataprotection recovery-point list -g {self.group} --vault-name {self.names.backup_vault} "
                    f"--backup-instance-name {self.names.backup_instance('files')}`"
                )
            time.sleep(self.poll)

    def _restore_files(self, at: datetime, started: str) -> str | None:
        """Start the blob point-in-time restore of the files' container to `at`; its restore id."""
        body = {"timeToRestore": _iso(at), "blobRanges": [container_range(FILES_CONTAINER)]}
        answer = self._storage("POST", "/restoreBlobRanges", f"Microsoft.Storage/storageAccounts/restoreBlobRanges/action of {self.account} ({FILES_CONTAINER})", body=body, started=started)
        return answer.get("restoreId")

    def _wait_restores(self, new: str, restore_id: str | None) -> None:
        """Poll the new server's state and the account's blob restore status until both are done; a
        UserError naming the operation if one fails or time runs out."""
        deadline = time.monotonic() + self.restore_timeout
        follow_db = f"az postgres flexible-server show -g {self.restores} --name {new} --query state"
        follow_files = f"az storage account show -g {self.group} -n {self.account} --expand blobRestoreStatus --query blobRestoreStatus"
        server_done = files_done = False
        while True:
            if not server_done:
                got = self._get_server(new, self.restores)
                raw = got.properties.state if got is not None and got.properties is not None else None
                state = str(getattr(raw, "value", raw)) if raw is not None else None  # the SDK's enums print as their class
                if state == "Ready":
                    server_done = True
                elif state in _SERVER_FAILED:
                    raise UserError(f"{self.env.name}: the point-in-time restore into the new server {new} ended {state}. See `{follow_db}`")
            if not files_done:
                account = self._storage("GET", "", f"Microsoft.Storage/storageAccounts/read of {self.account} (its blob restore status)", params={"$expand": "blobRestoreStatus"})
                status = (account.get("properties") or {}).get("blobRestoreStatus") or {}
                if restore_id is None or status.get("restoreId") == restore_id:
                    if status.get("status") == "Complete":
                        files_done = True
                    elif status.get("status") == "Failed":
                        raise UserError(
                            f"{self.env.name}: the blob point-in-time restore of {self.account}/{FILES_CONTAINER} failed: {status.get('failureReason') or 'Azure gave no reason'}; "
                            f"the new server {new} may still be created (`{follow_db}`). See `{follow_files}`"
                        )
            if server_done and files_done:
                return
            if time.monotonic() >= deadline:
                running_ = [f"the point-in-time restore into the new server {new} (`{follow_db}`)"] if not server_done else []
                running_ += [f"the blob point-in-time restore of {self.account}/{FILES_CONTAINER} (`{follow_files}`)"] if not files_done else []
                raise UserError(f"{self.env.name}: the restore is still running after {self.restore_timeout / 60:.0f} minutes: {'; '.join(running_)}")
            time.sleep(self.poll)

    def _rights(self) -> str:
        role = f"`mxinfra backup` needs the backups permission of {self.env.name}: the role `mxinfra {self.env_prefix} backups` at resource group {self.group}"
        if self.env.is_production:
            return (
                f"{role} (mxinfra:access grants it); on production it is PIM-eligible: activate it first (Privileged Identity Management, My roles: "
                "MFA and a justification), then sign in again. It takes and lists backups; a restore into production is the platform identity's"
            )
        return f"{role}, and for a restore's new server `mxinfra {self.env_prefix} backups-restores` at resource group {self.restores} (mxinfra:access grants both)"

    @property
    def env_prefix(self) -> str:
        """`<app>-<env>`, as the role names carry it."""
        return self.names.naming.prefix

    def _say(self, text: str) -> None:
        print(text, file=self.out if self.out is not None else sys.stderr)

    @contextmanager
    def _azure(self, doing: str, *, started: str = "", reraise_denied: bool = False) -> Iterator[None]:
        """The Azure SDK's failures as UserError (exit 2), naming the call, the server and what to do."""
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError, ServiceResponseError

        head = f"{self.env.name}: {self.where}"
        also = f" (already started: {started})" if started else ""
        sign_in = f"{running.SIGN_IN_WAYS}; {self._rights()}"
        try:
            yield
        except ClientAuthenticationError as exc:
            raise UserError(f"{head}: {running.credential_problem(exc, doing, sign_in)}{also if exc.status_code is not None else ''}") from None
        except HttpResponseError as exc:
            code = str(getattr(getattr(exc, "error", None), "code", None) or "")
            if exc.status_code == 403 and reraise_denied:
                raise
            if exc.status_code == 403 and code == "LinkedAuthorizationFailed":
                # the write is allowed; an action on a resource it links to is not: a restored server joins
                # the database subnet (in the VNet's resource group: the role `<prefix> backups-network` on
                # that subnet, roles.VNET_ACTIONS) and the private DNS zone (the backups role itself)
                fix = (
                    "Azure also checks an action on a resource the request links to: a restore needs the join of the database subnet, which "
                    f"the role `mxinfra {self.env_prefix} backups-network` on that subnet grants to the backups permission's holders below production, and the join "
                    "of the environment's private DNS zone, which the backups role holds. Neither is given by `manage`: mxinfra:access grants them "
                    "through `pulumi up` (a stack deployed before these roles needs one). Otherwise have the platform identity run this restore "
                    "(targets/azure/README.md, Backups)"
                )
            elif exc.status_code == 403 and code == "RequestDisallowedByPolicy":
                fix = (
                    f"the restores group's Azure Policy allows nothing there but a point-in-time restore of a server of {self.group} "
                    "(targets/azure/README.md, Backups); a policy the platform assigned may refuse it too: see Azure's message"
                )
            elif exc.status_code == 403:
                fix = self._rights()
            elif exc.status_code == 404 and code in ("ResourceNotFound", "ResourceGroupNotFound"):
                fix = f"it does not exist in subscription {self.names.subscription}: deploy the stack (`pulumi up`), or check mxinfra:azure.subscriptionId"
            else:
                fix = "see Azure's message"
            raise UserError(f"{head}: Azure refused {doing} ({exc.status_code} {running.error_code(exc)}): {fix}{also}") from None
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise UserError(f"{head}: Azure Resource Manager cannot be reached ({running.first_line(exc)}): check the network{also}") from None


def connect(env: Environment, names: Names, **kw: Any) -> ServerActions:
    """The actions on `env`'s server and files with DefaultAzureCredential in the stack's subscription;
    nothing is called until the first action."""
    return ServerActions(env, names, **kw)
