"""The `mxinfra:kubernetes` block: its schema and the checks that involve the stack's environments. Pure."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, model_validator

from mxinfra.artifacts import OCI_SCHEME, check_artifact, parse_image
from mxinfra.checks import plain_text
from mxinfra.config import StackConfig
from mxinfra.egress import EgressRule, check_egress
from mxinfra.environments import Environment, Role
from mxinfra.errors import ConfigIssue
from mxinfra.schema import StrictModel

BLOCK = "mxinfra:kubernetes"
# Every pattern here is applied with re.fullmatch: `$` would also accept a trailing newline.
_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}\Z)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")
_SA_NAME = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?")
# Group and user names are the identity provider's: anything printable without surrounding blanks.
_RBAC_NAME = re.compile(r"[^\s\x00-\x1f\x7f]([^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?")
# CPU: whole millicores ("250m") or cores with at most three decimals ("2", "0.5"): what layout.cpu_milli reads.
_CPU = re.compile(r"[0-9]+m|[0-9]+(\.[0-9]{1,3})?")
# Bytes: a number with a binary or decimal suffix ("10Gi", "512Mi", "1G"); no "m" (milli-bytes).
BYTE_QUANTITY = re.compile(r"([0-9]+(\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?")
PLACEHOLDER = "[secret]"  # what an offline plan sees instead of a secure value


def _cpu(v: str) -> str:
    if not _CPU.fullmatch(v) or cpu_milli(v) == 0:
        raise ValueError("not a CPU quantity: whole millicores like 250m, or cores like 2 or 0.5")
    return v


def _bytes(v: str) -> str:
    m = BYTE_QUANTITY.fullmatch(v)
    if not m or float(m.group(1)) == 0:
        raise ValueError("not a size: a number with a unit like 10Gi, 512Mi or 1G")
    return v


def _label(v: str) -> str:
    if not _DNS_LABEL.fullmatch(v):
        raise ValueError("not a namespace name: a lowercase DNS label of at most 63 characters")
    return v


def _host(v: str) -> str:
    if not _DNS_SUBDOMAIN.fullmatch(v):
        raise ValueError("not a host name: lowercase DNS labels separated by dots")
    return v


def _storage_class(v: str) -> str:
    if not _DNS_SUBDOMAIN.fullmatch(v):
        raise ValueError("not a StorageClass name: lowercase DNS labels separated by dots, as `kubectl get storageclass` lists them")
    return v


def cpu_milli(quantity: str) -> int:
    """A CPU quantity ("250m", "2", "0.5") in millicores."""
    if quantity.endswith("m"):
        return int(quantity[:-1])
    return int(round(float(quantity) * 1000))


def _cidr(v: str) -> str:
    from mxinfra.exposure import parse_cidr

    parse_cidr(v)
    return v


CpuQuantity = Annotated[str, AfterValidator(_cpu)]
Cidr = Annotated[str, AfterValidator(_cidr)]
ByteQuantity = Annotated[str, AfterValidator(_bytes)]
DnsLabel = Annotated[str, AfterValidator(_label)]
HostName = Annotated[str, AfterValidator(_host)]
StorageClassName = Annotated[str, AfterValidator(_storage_class)]


class CpuConfig(StrictModel):
    """CPU per runtime container (memory comes from the environment's `memory`)."""

    request: CpuQuantity = "250m"
    limit: CpuQuantity = "2"

    @model_validator(mode="after")
    def _request_within_limit(self) -> CpuConfig:
        if cpu_milli(self.request) > cpu_milli(self.limit):
            raise ValueError(f"request {self.request} exceeds limit {self.limit}: Kubernetes refuses such a pod")
        return self


class IngressConfig(StrictModel):
    """How the environment is exposed: host (or domain to derive it), class, TLS secret, controller namespace."""

    host: HostName | None = Field(None, description="The app's host name, e.g. orders.example.com")
    domain: HostName | None = Field(None, description="Without host: the host is <app>-<environment>.<domain>")
    className: str = "nginx"
    tlsSecret: str | None = Field(None, description="An existing kubernetes.io/tls Secret; default <app>-<environment>-tls")
    controllerNamespace: DnsLabel = Field("ingress-nginx", description="Namespace of the ingress controller pods (the only outside traffic admitted)")
    annotations: dict[str, str] = Field(default_factory=dict)


class InClusterDatabase(StrictModel):
    """A PostgreSQL StatefulSet in the environment's namespace (test environments only)."""

    image: str = Field("postgres:16.11", description="A Debian-based postgres image: it runs as uid/gid 999")
    size: ByteQuantity = "5Gi"
    storageClass: StorageClassName | None = Field(None, description="The database claim's StorageClass, in place of the block's storageClass")
    memory: int = Field(512, ge=256, le=16384, description="MB")


class DatabaseConfig(StrictModel):
    """Exactly one of: `url` (external PostgreSQL, a secret) or `inCluster`."""

    url: str | None = Field(None, description="postgres://user:password@host:5432/db, set with pulumi config set --secret")
    requireTls: bool = True
    inCluster: InClusterDatabase | None = None
    port: int = Field(5432, ge=1, le=65535, description="The external database's port: the only one the runtime's egress admits for it")
    networks: list[Cidr] | None = Field(None, max_length=16, description="The external database's networks (CIDRs); default: any address, on `port` only")


class S3Config(StrictModel):
    """S3-compatible storage; without keys the runtime uses the pod's cloud identity (e.g. IRSA)."""

    bucket: str
    endpoint: str | None = None
    accessKeyId: str | None = None
    secretAccessKey: str | None = None
    keySuffix: str | None = None
    useSse: bool = True


class AzureBlobConfig(StrictModel):
    """Azure Blob storage: account key or SAS token, as secrets."""

    accountName: str
    container: str
    accountKey: str | None = None
    sasToken: str | None = None
    endpoint: str | None = None


class LocalFilesConfig(StrictModel):
    """Files on a PersistentVolumeClaim (one instance only)."""

    size: ByteQuantity = "10Gi"
    storageClass: StorageClassName | None = Field(None, description="The files claim's StorageClass, in place of the block's storageClass")


class StorageConfig(StrictModel):
    """Exactly one of `s3`, `azure`, `local`."""

    s3: S3Config | None = None
    azure: AzureBlobConfig | None = None
    local: LocalFilesConfig | None = None
    networks: list[Cidr] | None = Field(None, max_length=16, description="The file store endpoint's networks (CIDRs); default: any address, on the endpoint's port only")


class OperatorConfig(StrictModel):
    """The Mendix Operator's inputs: the package URL and the namespace's service plans."""

    sourceURL: str = Field(description="HTTPS URL of the MDA the Operator downloads")
    databasePlan: str
    storagePlan: str
    runtimeVersion: str | None = Field(None, description="Default: the package's runtime version")
    podLabels: dict[str, str] | None = Field(None, description="Labels the Operator puts on the app's pods: the NetworkPolicy selects them")


class BackupS3Config(StrictModel):
    """An S3 bucket (or S3-compatible store) for the archives; without keys the Job uses the pod's cloud identity (IRSA)."""

    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", description="An S3 bucket name: 3 to 63 of a-z, 0-9, . and -")
    endpoint: str | None = Field(None, description="https URL of an S3-compatible store (default: AWS S3 of `region`)")
    region: str | None = None
    accessKeyId: str | None = None
    secretAccessKey: str | None = None
    useSse: bool = Field(True, description="Server-side encryption (SSE-S3) of every archive")


class BackupAzureConfig(StrictModel):
    """An Azure Blob container for the archives: account key or SAS token, as secrets."""

    accountName: str = Field(pattern=r"^[a-z0-9]{3,24}$", description="A storage account name: 3 to 24 of a-z and 0-9")
    container: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", min_length=3, max_length=63, description="A container name: 3 to 63 of a-z, 0-9 and single -")
    accountKey: str | None = None
    sasToken: str | None = None
    endpoint: str | None = Field(None, description="https URL of the blob service (default: https://<accountName>.blob.core.windows.net)")


class BackupStorageConfig(StrictModel):
    """Plain mode: where an environment's backup archives are kept, and what backs up an external database."""

    size: ByteQuantity = Field(
        "20Gi",
        description="The backups claim: room for every archive retention keeps, plus, while a backup runs, the file store and the "
        "database's dump, each uncompressed and compressed. With s3 or azure: the Jobs' scratch space (one archive and its parts)",
    )
    s3: BackupS3Config | None = Field(None, description="Keep the archives in this S3 bucket instead of a claim")
    azure: BackupAzureConfig | None = Field(None, description="Keep the archives in this Azure Blob container instead of a claim")
    prefix: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$",
        max_length=200,
        description="The archives' key prefix in s3 or azure, the environment's own (default: <app>/<environment>)",
    )
    networks: list[Cidr] | None = Field(None, max_length=16, description="The s3 or azure endpoint's networks (CIDRs); default: any address, on the endpoint's port only")
    transferImage: str | None = Field(
        None,
        description="rclone, which moves the archives to and from s3 or azure (default "
        "rclone/rclone:1.76.0); pinned by digest on production",
    )
    storageClass: StorageClassName | None = Field(None, description="The backups claim's StorageClass, in place of the block's storageClass")
    cpu: int = Field(
        500,
        ge=250,
        le=8000,
        description="Millicores of a backup or restore Job, counted in the quota: 2000 lets the files compress on two cores beside pg_dump",
    )
    image: str | None = Field(
        None,
        description="pg_dump and pg_restore for an external database, at least the server's major version (default "
        "postgres:17.7); pinned by digest on production. An in-cluster database's own image backs it up",
    )


class EnvironmentOverride(StrictModel):
    """Per-environment settings that replace the block's top-level ones (each key replaces the whole sub-block)."""

    image: str | None = None
    namespace: DnsLabel | None = None
    ingress: IngressConfig | None = None
    database: DatabaseConfig | None = None
    storage: StorageConfig | None = None
    cpu: CpuConfig | None = None
    operator: OperatorConfig | None = None
    egress: list[EgressRule] | None = None
    storageClass: StorageClassName | None = None
    backups: BackupStorageConfig | None = None


class KubernetesConfig(StrictModel):
    """`mxinfra:kubernetes`: the target's block."""

    mode: Literal["plain", "operator"] = "plain"
    context: str | None = Field(None, description="kubeconfig context to deploy to (default: the current one)")
    kubeconfig: str | None = Field(None, description="kubeconfig path, or its content as a secret (default: KUBECONFIG / ~/.kube/config)")
    image: str | None = Field(None, description="plain mode: the Docker-buildpack image of the package")
    namespace: DnsLabel | None = Field(None, description="An existing namespace to use instead of creating <app>-<environment>")
    ingress: IngressConfig = Field(default_factory=IngressConfig)
    database: DatabaseConfig | None = None
    storage: StorageConfig | None = None
    cpu: CpuConfig = Field(default_factory=CpuConfig)
    operator: OperatorConfig | None = None
    egress: list[EgressRule] = Field(default_factory=list, max_length=64, description="What the app calls out to, besides its database, file store and DNS")
    allowWideEgress: bool = Field(False, description="Explicit opt-in to /8 (IPv6: /32) or wider egress rules on a stack with production")
    dnsNamespace: DnsLabel = Field("kube-system", description="Namespace of the cluster DNS pods: the only DNS the runtime may query")
    storageClass: StorageClassName | None = Field(
        None,
        description="StorageClass of every PersistentVolumeClaim the target declares (in-cluster database, local files); "
        "default: the cluster's default class. `pulumi up` checks that it exists (or that there is a default) before declaring anything",
    )
    maxInstances: int | None = Field(
        None,
        ge=1,
        le=100,
        description="The most instances the deploy group may scale to: the namespace's ResourceQuota (a platform "
        "guardrail the deploy group cannot write) is sized for this many; default: the environment's instances, "
        "so that every scale is a platform step",
    )
    releaseIdentities: list[str] = Field(
        default_factory=list,
        max_length=8,
        description="Who may change what runs on production (the pod template, the image, the MendixApp's source "
        "and runtime, the runtime's ConfigMap and Secrets): the identity `pulumi up` of a release runs as, e.g. "
        "group:orders-release. Every other identity is refused by the environment's ValidatingAdmissionPolicy, "
        "whatever its RBAC (cluster administrators in system:masters excepted)",
    )
    backups: BackupStorageConfig = Field(default_factory=BackupStorageConfig)
    environments: dict[str, EnvironmentOverride] = Field(default_factory=dict)


@dataclass(frozen=True)
class EnvironmentSettings:
    """The block as it applies to one environment, with the config path each sub-block came from."""

    mode: str
    image: str | None
    namespace: str | None  # an existing namespace, or None to create one
    ingress: IngressConfig
    database: DatabaseConfig | None
    storage: StorageConfig | None
    cpu: CpuConfig
    operator: OperatorConfig | None
    paths: dict[str, str]  # sub-block -> config path (for error messages)
    egress: tuple[EgressRule, ...] = ()
    dns_namespace: str = "kube-system"
    storage_class: str | None = None  # None: the cluster's default class
    backups: BackupStorageConfig = BackupStorageConfig()


def for_environment(block: KubernetesConfig, env: str) -> EnvironmentSettings:
    """The effective settings of `env`: its `environments.<env>` entries replace the top-level ones."""
    over = block.environments.get(env)
    paths = {k: f"{BLOCK}.{k}" for k in ("image", "namespace", "ingress", "database", "storage", "cpu", "operator", "egress", "storageClass", "backups")}
    values: dict[str, Any] = {k: getattr(block, k) for k in paths}
    if over is not None:
        for key in over.model_fields_set:
            values[key] = getattr(over, key)
            paths[key] = f"{BLOCK}.environments.{env}.{key}"
    return EnvironmentSettings(
        block.mode,
        values["image"],
        values["namespace"],
        values["ingress"],
        values["database"],
        values["storage"],
        values["cpu"],
        values["operator"],
        paths,
        tuple(values["egress"] or ()),
        block.dnsNamespace,
        values["storageClass"],
        # `backups:` left empty (null) under an environment: the defaults, not the block's
        values["backups"] if values["backups"] is not None else BackupStorageConfig(),
    )


@dataclass(frozen=True)
class Claim:
    """A PersistentVolumeClaim an environment declares, with its StorageClass and the key that sets it."""

    environment: str
    kind: str  # "postgres-data", "files" or "backups"
    storage_class: str | None  # None: the cluster's default class
    key: str


def object_store(s: EnvironmentSettings) -> BackupS3Config | BackupAzureConfig | None:
    """The bucket or container that keeps the environment's backup archives (None: its backups claim does)."""
    return s.backups.s3 or s.backups.azure


def file_store(s: EnvironmentSettings) -> S3Config | AzureBlobConfig | None:
    """The runtime's file store when it is object storage (None: local files, or none)."""
    st = s.storage
    return None if st is None or st.local is not None else (st.s3 or st.azure)


def backup_prefix(s: EnvironmentSettings, app: str, env: str) -> str:
    """The archives' key prefix in object storage: `backups.prefix`, else `<app>/<environment>`."""
    return s.backups.prefix or f"{app}/{env}"


def claim_of(s: EnvironmentSettings, env: str, kind: str, own: str | None, own_key: str) -> Claim:
    """The `kind` claim of `env` with the StorageClass in effect: its own key's (`own` at `own_key`), else
    the environment's or the block's storageClass."""
    if own is not None:
        return Claim(env, kind, own, own_key)
    return Claim(env, kind, s.storage_class, s.paths["storageClass"])


def claims_of(s: EnvironmentSettings, env: str) -> list[Claim]:
    """The claims of `env` in plain mode: the in-cluster database's and the local files'."""
    if s.mode != "plain":
        return []
    return [
        claim_of(s, env, kind, sub.storageClass, path)
        for kind, sub, path in (
            ("postgres-data", s.database.inCluster if s.database else None, f"{s.paths['database']}.inCluster.storageClass"),
            ("files", s.storage.local if s.storage else None, f"{s.paths['storage']}.local.storageClass"),
        )
        if sub is not None
    ]


def artifact_of(block: KubernetesConfig, env: str) -> str | None:
    """What runs besides the package in `env`: the image (plain mode) or the Operator's sourceURL."""
    s = for_environment(block, env)
    if s.mode == "operator":
        return s.operator.sourceURL if s.operator is not None else None
    return s.image


def artifact_key_of(block: KubernetesConfig, env: str) -> str:
    """The config key `artifact_of` reads for `env` (an environment override's, else the block's)."""
    s = for_environment(block, env)
    return f"{s.paths['operator']}.sourceURL" if s.mode == "operator" else s.paths["image"]


def is_kubeconfig_content(value: str) -> bool:
    """True when `kubeconfig` holds a kubeconfig itself (YAML or JSON) rather than a file's path."""
    text = value.strip()
    return "\n" in text or text.startswith("{") or text.startswith("apiVersion:")


def host_of(s: EnvironmentSettings, app: str, env: str) -> str | None:
    """The environment's host name: `ingress.host`, else `<app>-<env>.<domain>`."""
    if s.ingress.host:
        return s.ingress.host
    if s.ingress.domain:
        return f"{app}-{env}.{s.ingress.domain}"
    return None


# --- checks ----------------------------------------------------------------------------------------

PRINCIPAL_FORMS = "group:NAME, user:NAME or serviceaccount:NAMESPACE/NAME"
# Kubernetes' names for requests without credentials: never a subject of an environment's Role.
ANONYMOUS = ("system:unauthenticated", "system:anonymous")


def parse_principal(principal: str) -> tuple[str, str, str | None] | None:
    """(kind, name, namespace) of an RBAC subject for `principal`, or None if the form is unknown."""
    kind, sep, rest = principal.partition(":")
    if not sep or not rest:
        return None
    if kind == "serviceaccount":
        ns, slash, name = rest.partition("/")
        if slash and _DNS_LABEL.fullmatch(ns) and len(name) <= 253 and _SA_NAME.fullmatch(name):
            return ("ServiceAccount", name, ns)
        return None
    if not _RBAC_NAME.fullmatch(rest):
        return None
    if kind == "group":
        return ("Group", rest, None)
    if kind == "user":
        return ("User", rest, None)
    return None


def _secret(stack: StackConfig, path: str, value: str | None, file: str) -> Iterator[ConfigIssue]:
    if (issue := plain_text(stack.raw, path, value, file)) is not None:
        yield issue


def check_block(stack: StackConfig, block: KubernetesConfig, file: str = "") -> list[ConfigIssue]:
    """Everything wrong with the block for this stack's environments and access entries."""
    issues: list[ConfigIssue] = []
    names = [e.name for e in stack.environments]
    issues += stack.environment_key_issues(block.environments, f"{BLOCK}.environments", file)
    for env in stack.environments:
        if block.maxInstances is not None and env.instances > block.maxInstances:
            issues.append(ConfigIssue(f"{BLOCK}.maxInstances", f"is {block.maxInstances}, below environment {env.name!r}'s {env.instances} instances", "raise it (the quota is sized for it), or scale down", file))
    seen: dict[str, str] = {}
    for name in names:
        s = for_environment(block, name)
        if s.namespace is None:
            continue
        if s.namespace in seen:
            issues.append(ConfigIssue(s.paths["namespace"], f"namespace {s.namespace!r} is already used by environment {seen[s.namespace]!r}", "each environment needs its own namespace: set environments.<name>.namespace", file))
        seen.setdefault(s.namespace, name)
    if block.kubeconfig is not None and is_kubeconfig_content(block.kubeconfig) and not stack.raw.is_secret(f"{BLOCK}.kubeconfig"):
        issues.append(
            ConfigIssue(
                f"{BLOCK}.kubeconfig",
                "kubeconfig content is stored in plain text (it holds the cluster's credentials)",
                f"store it encrypted: pulumi config set --secret --path '{BLOCK}.kubeconfig' \"$(cat KUBECONFIG_FILE)\", or give the file's path",
                file,
            )
        )
    reported: set[str] = set()  # a top-level problem once, not once per environment
    for name in names:
        s = for_environment(block, name)
        problems: list[ConfigIssue] = []
        if s.mode == "plain" and not s.image:
            problems.append(ConfigIssue(s.paths["image"], "required in plain mode", "the Docker-buildpack image built from the package, e.g. registry.example.com/orders@sha256:<digest>", file))
        elif s.mode == "plain" and s.image and parse_image(s.image) is None:
            problems.append(ConfigIssue(s.paths["image"], f"{s.image!r} is not an image reference", "registry/repository[:tag][@sha256:<digest>]: lowercase repository path components, no wildcards", file))
        if s.mode == "operator":
            if s.operator is None:
                problems.append(ConfigIssue(s.paths["operator"], "required in operator mode", "set sourceURL, databasePlan and storagePlan", file))
            else:
                src = s.operator.sourceURL
                if src.startswith(OCI_SCHEME):
                    if parse_image(src[len(OCI_SCHEME) :]) is None:
                        problems.append(ConfigIssue(f"{s.paths['operator']}.sourceURL", f"{src!r} is not an oci-image:// image reference", "oci-image://registry/repository@sha256:<digest>", file))
                elif not src.startswith("https://"):
                    problems.append(ConfigIssue(f"{s.paths['operator']}.sourceURL", f"must be an HTTPS URL or an oci-image:// reference (got {src!r})", "the Operator downloads the MDA from it, or pulls the image", file))
                if not s.operator.podLabels:
                    problems.append(ConfigIssue(f"{s.paths['operator']}.podLabels", "required in operator mode: the NetworkPolicy that limits the app's traffic selects the app's pods by them", "the labels your Operator version puts on the app's pods (kubectl get pods --show-labels), e.g. {app: orders-production}", file))
        for issue in problems:
            if issue.path not in reported:
                reported.add(issue.path)
                issues.append(issue)
    production = any(e.is_production for e in stack.environments)
    for name in names:
        s = for_environment(block, name)
        if s.paths["egress"] not in reported:
            reported.add(s.paths["egress"])
            issues += check_egress(list(s.egress), s.paths["egress"], production, block.allowWideEgress, file)
    for env in stack.environments:
        issues += _check_environment(stack, block, env, file)
        s = for_environment(block, env.name)
        if s.mode == "plain" and s.image and parse_image(s.image) is not None:
            issues += check_artifact(env, s.image, s.paths["image"], file, kind="image")
        elif s.mode == "operator" and s.operator is not None:
            issues += check_artifact(env, s.operator.sourceURL, f"{s.paths['operator']}.sourceURL", file, kind="source")
    issues += check_principals(stack, file)
    issues += check_operator_backups(stack, block, file)
    issues += check_backup_stores(stack, block, file)
    issues += check_namespaces(stack, block, file)
    issues += check_release_identities(stack, block, file)
    return issues


# --- namespaces: whose they are (issue 19, F2) ------------------------------------------------------------

# Where Kubernetes runs itself: an environment's Roles there would grant its principals (and its pods'
# Secrets mounts) rights beside the cluster's own components.
SYSTEM_NAMESPACES = {
    "kube-system": "the cluster's control-plane namespace",
    "kube-public": "the cluster's public namespace",
    "kube-node-lease": "the nodes' heartbeat namespace",
    "default": "the cluster's default namespace, shared by whatever names no namespace",
}
RESERVED_NAMESPACE_PREFIXES = ("kube-", "openshift-")
# The words that name a tier in a namespace (`<app>-<environment>`, the names this target creates).
TIER_WORDS = {
    Role.PRODUCTION: ("production", "prod", "prd", "live"),
    Role.ACCEPTANCE: ("acceptance", "accept", "acc", "staging", "stage", "stg", "uat", "preprod", "preproduction"),
    Role.TEST: ("test", "tst", "testing", "dev", "development", "sandbox"),
}
# Labels every namespace this target creates carries (naming.kubernetes_labels of the stable tags): an
# existing namespace labelled so is that app's, environment's and tier's.
OWNER_LABELS = {"app": "mxinfra.io/app", "environment": "mxinfra.io/environment", "role": "mxinfra.io/role"}


def default_namespace(app: str, env: str) -> str:
    """The namespace the target creates for an environment without `namespace`: `<app>-<env>`."""
    from mxinfra.naming import Naming

    return Naming(app, env).physical()


def tiers_named(namespace: str, app: str) -> set[Role]:
    """The tiers a namespace's name names, by its words (an app named like a tier, e.g. `test-bench`,
    names none by its own name)."""
    words, own = namespace.split("-"), app.split("-")
    if words[: len(own)] == own:
        words = words[len(own) :]
    return {role for role, known in TIER_WORDS.items() for w in words if w in known}


def names_app(namespace: str, app: str) -> bool:
    """True when the app's name is among the namespace's words (`orders-production`, `eu-orders-prod`)."""
    words, own = namespace.split("-"), app.split("-")
    return any(words[i : i + len(own)] == own for i in range(len(words) - len(own) + 1))


def _grantees(stack: StackConfig, env: str) -> str:
    found = sorted({e.principal for e in stack.access if "*" in e.environments or env in e.environments})
    return ", ".join(found) or "no principal yet"


def check_namespaces(stack: StackConfig, block: KubernetesConfig, file: str = "") -> list[ConfigIssue]:
    """Each environment's namespace (configured, or the default `<app>-<env>`) must be its own: not a system
    namespace nor one the stack names as infrastructure (ingress controller, DNS, another environment's
    Operator namespace), and not, by the `<app>-<environment>` convention, another tier's or another app's.
    An environment's Roles and RoleBindings are created there: a test stack with `namespace:
    orders-production` would grant its test principals Jobs and pod reads on production."""
    app = stack.app.name
    infra = dict(SYSTEM_NAMESPACES)
    infra.setdefault(block.dnsNamespace, f"the cluster DNS's namespace ({BLOCK}.dnsNamespace)")
    for env in stack.environments:
        s = for_environment(block, env.name)
        infra.setdefault(s.ingress.controllerNamespace, f"the ingress controller's namespace ({s.paths['ingress']}.controllerNamespace)")
    operator_ns = {}
    for env in stack.environments:
        s = for_environment(block, env.name)
        if s.mode == "operator" and s.namespace is not None:
            operator_ns.setdefault(s.namespace, env.name)
    issues = []
    used: dict[str, tuple[str, bool]] = {}  # namespace -> (environment, configured)
    for env in stack.environments:
        s = for_environment(block, env.name)
        own = default_namespace(app, env.name)
        ns = s.namespace or own
        if ns in used and not (used[ns][1] and s.namespace is not None):  # two configured ones: check_block says so
            key = s.paths["namespace"] if s.namespace is not None else for_environment(block, used[ns][0]).paths["namespace"]
            issues.append(ConfigIssue(key, f"namespace {ns!r} is also environment {used[ns][0]!r}'s", "each environment needs its own namespace: set environments.<name>.namespace", file))
        used.setdefault(ns, (env.name, s.namespace is not None))
        key = s.paths["namespace"] if s.namespace is not None else f"{BLOCK}.environments.{env.name}.namespace"
        what = f"namespace {ns!r}" if s.namespace is not None else f"the default namespace {ns!r} (<app>-<environment>)"
        role = env.role.value
        example = own if own != ns and not tiers_named(own, app) - {env.role} else f"{app}-{role}"
        fix = f"give environment {env.name!r} a {role} namespace of {app!r} of its own, e.g. {example}"
        grants = f"its Roles would grant {_grantees(stack, env.name)} rights there"
        if ns in infra:
            issues.append(ConfigIssue(key, f"{what} is {infra[ns]}: {grants}", fix, file))
        elif ns.startswith(RESERVED_NAMESPACE_PREFIXES):
            issues.append(ConfigIssue(key, f"{what} is reserved for the platform ({', '.join(p + '*' for p in RESERVED_NAMESPACE_PREFIXES)}): {grants}", fix, file))
        elif s.mode == "plain" and ns in operator_ns and operator_ns[ns] != env.name:
            issues.append(ConfigIssue(key, f"{what} is the Mendix Operator's namespace of environment {operator_ns[ns]!r}: {grants}, beside the Operator's ServiceAccount", fix, file))
        else:
            other = tiers_named(ns, app) - {env.role}
            if other:
                named = ", ".join(sorted(r.value for r in other))
                issues.append(ConfigIssue(key, f"{what} names the {named} tier, but environment {env.name!r} is {role}: {grants}", fix, file))
            elif tiers_named(ns, app) and not names_app(ns, app):
                issues.append(ConfigIssue(key, f"{what} names a {role} namespace of another app (by the <app>-<environment> convention it is not {app!r}'s): {grants}", fix, file))
    return issues


def namespace_label_issues(namespace: str, labels: Mapping[str, str], app: str, env: Environment, key: str, file: str = "") -> list[ConfigIssue]:
    """An existing namespace whose owner labels (OWNER_LABELS: every namespace this target creates has them;
    a platform team may set them on its own) say it is another app's, another tier's or another environment's."""
    found = {k: labels.get(v) for k, v in OWNER_LABELS.items()}
    fix = f"give environment {env.name!r} a namespace of its own (labelled {OWNER_LABELS['app']}={app}, {OWNER_LABELS['role']}={env.role.value})"
    if found["app"] not in (None, app):
        return [ConfigIssue(key, f"namespace {namespace!r} belongs to app {found['app']!r} (label {OWNER_LABELS['app']}), not {app!r}", fix, file)]
    if found["role"] not in (None, env.role.value):
        return [ConfigIssue(key, f"namespace {namespace!r} is a {found['role']} namespace (label {OWNER_LABELS['role']}), but environment {env.name!r} is {env.role.value}", fix, file)]
    if found["environment"] not in (None, env.name):
        return [ConfigIssue(key, f"namespace {namespace!r} is environment {found['environment']!r}'s (label {OWNER_LABELS['environment']}), not {env.name!r}'s", fix, file)]
    return []


def check_release_identities(stack: StackConfig, block: KubernetesConfig, file: str = "") -> list[ConfigIssue]:
    """Each release identity is an RBAC subject other than the cluster's built-in ones, and holds `deploy` on
    every production environment: it is the one identity that applies a release there."""
    issues = []
    production = [e for e in stack.environments if e.is_production]
    for i, principal in enumerate(block.releaseIdentities):
        path = f"{BLOCK}.releaseIdentities[{i}]"
        subject = parse_principal(principal)
        if subject is None:
            issues.append(ConfigIssue(path, f"{principal!r} is not a Kubernetes RBAC subject", PRINCIPAL_FORMS, file))
            continue
        if subject[0] != "ServiceAccount" and subject[1].startswith("system:"):
            issues.append(ConfigIssue(path, f"{principal!r} is a Kubernetes built-in subject: everyone in it could change what runs on production", "name the group (or ServiceAccount) your release pipeline runs as; cluster administrators (system:masters) are always exempt", file))
            continue
        missing = [
            e.name
            for e in production
            if not any(a.principal == principal and "deploy" in a.permissions and ("*" in a.environments or e.name in a.environments) for a in stack.access)
        ]
        if missing:
            issues.append(
                ConfigIssue(
                    path,
                    f"{principal!r} does not hold deploy on {', '.join(missing)}: the release identity applies each release there",
                    f"grant it in mxinfra:access: {{principal: {principal}, environments: [{', '.join(missing)}], permissions: [deploy, monitor]}}",
                    file,
                )
            )
    return issues


def check_operator_backups(stack: StackConfig, block: KubernetesConfig, file: str = "") -> list[ConfigIssue]:
    """`backups` creates Jobs, and a Job may run as any ServiceAccount of its namespace: in operator mode
    that includes the Operator's own, which RBAC cannot keep a Job from naming. Refused there."""
    issues = []
    operator_envs = {e.name for e in stack.environments if for_environment(block, e.name).mode == "operator"}
    for i, entry in enumerate(stack.access):
        applies = operator_envs if "*" in entry.environments else operator_envs & set(entry.environments)
        if applies and "backups" in entry.permissions:
            issues.append(
                ConfigIssue(
                    f"mxinfra:access[{i}].permissions",
                    f"'backups' in operator mode ({', '.join(sorted(applies))}): its Jobs could run as the Mendix Operator's ServiceAccount, and RBAC cannot pin a Job's ServiceAccount",
                    "back up through the Operator's database service plan (or your database's own backups), and drop 'backups' from this entry",
                    file,
                )
            )
    return issues


def _check_environment(stack: StackConfig, block: KubernetesConfig, env: Environment, file: str) -> list[ConfigIssue]:
    s = for_environment(block, env.name)
    issues: list[ConfigIssue] = []
    if host_of(s, stack.app.name, env.name) is None:
        issues.append(ConfigIssue(f"{s.paths['ingress']}.host", f"environment {env.name!r} has no host name", "set ingress.host, or ingress.domain to use <app>-<environment>.<domain>", file))
    if s.mode != "plain":
        over = block.environments.get(env.name)
        if "backups" in block.model_fields_set or (over is not None and over.backups is not None):
            issues.append(ConfigIssue(s.paths["backups"], f"{s.mode} mode takes no backups block: the Operator's database and storage plans back up", "drop it", file))
        return issues
    db = s.database
    dpath = s.paths["database"]
    if db is None:
        issues.append(ConfigIssue(dpath, f"environment {env.name!r} needs a database", "url: {secure: ...} (external PostgreSQL) or, for test environments, inCluster: {}", file))
    elif (db.url is None) == (db.inCluster is None):
        issues.append(ConfigIssue(dpath, "set exactly one of url and inCluster", "url for an external PostgreSQL, inCluster for a test database", file))
    else:
        if db.inCluster is not None and env.role is not Role.TEST:
            issues.append(ConfigIssue(f"{dpath}.inCluster", f"an in-cluster database is for test environments only ({env.name!r} is {env.role.value})", "give an external PostgreSQL url as a secret", file))
        issues += _secret(stack, f"{dpath}.url", db.url, file)
        if db.url is not None and db.url != PLACEHOLDER and not db.url.startswith(("postgres://", "postgresql://")):
            issues.append(ConfigIssue(f"{dpath}.url", "must be a PostgreSQL URL", "postgres://user:password@host:5432/db", file))
    if s.backups.image is not None:
        bpath = f"{s.paths['backups']}.image"
        ref = parse_image(s.backups.image)
        if db is not None and db.inCluster is not None:
            issues.append(ConfigIssue(bpath, f"environment {env.name!r} has an in-cluster database, whose own image backs it up (pg_dump matches its server)", f"drop backups.image, or give {env.name!r} its own environments.{env.name}.backups without an image; database.inCluster.image sets both", file))
        elif ref is None:
            issues.append(ConfigIssue(bpath, f"{s.backups.image!r} is not an image reference", "registry/repository[:tag]@sha256:<digest> of a postgres image", file))
        elif ref.digest is None and env.is_production:
            # the Job holds the database's credentials: on production a tag that moves must not change what runs it
            issues.append(ConfigIssue(bpath, f"{s.backups.image!r} is not pinned by digest, and production {env.name!r}'s backup Job holds its database credentials", f"{s.backups.image.split('@')[0]}@sha256:<digest>", file))
    issues += _check_backup_store(stack, s, env, file)
    st = s.storage
    spath = s.paths["storage"]
    chosen = [k for k in ("s3", "azure", "local") if st is not None and getattr(st, k) is not None]
    if len(chosen) != 1:
        issues.append(ConfigIssue(spath, "set exactly one of s3, azure and local", "s3: {bucket, endpoint, accessKeyId, secretAccessKey} for S3-compatible storage such as MinIO", file))
    elif st is not None:
        if st.local is not None and env.instances > 1:
            issues.append(ConfigIssue(f"{spath}.local", f"local files need a single instance ({env.name!r} has {env.instances})", "use s3 or azure storage, or instances: 1", file))
        issues += _credentials(stack, spath, st.s3, st.azure, file)
    return issues


def _credentials(stack: StackConfig, path: str, s3: S3Config | BackupS3Config | None, azure: AzureBlobConfig | BackupAzureConfig | None, file: str) -> list[ConfigIssue]:
    """A store's keys (the file store's or the backups'): S3's both or neither (the pod's identity), an
    Azure key or SAS token; each a secret."""
    issues: list[ConfigIssue] = []
    if s3 is not None:
        if (s3.accessKeyId is None) != (s3.secretAccessKey is None):
            issues.append(ConfigIssue(f"{path}.s3", "set both accessKeyId and secretAccessKey, or neither (pod identity)", "", file))
        issues += _secret(stack, f"{path}.s3.accessKeyId", s3.accessKeyId, file)
        issues += _secret(stack, f"{path}.s3.secretAccessKey", s3.secretAccessKey, file)
    if azure is not None:
        if azure.accountKey is None and azure.sasToken is None:
            issues.append(ConfigIssue(f"{path}.azure", "needs accountKey or sasToken", "a SAS token of the container (the backups': read, write, delete and list)", file))
        issues += _secret(stack, f"{path}.azure.accountKey", azure.accountKey, file)
        issues += _secret(stack, f"{path}.azure.sasToken", azure.sasToken, file)
        if azure.sasToken is not None and not re.fullmatch(r"\??[A-Za-z0-9%&=._~:+/-]+", azure.sasToken):
            # a stray space or newline would make the SAS URL unparsable, and rclone's error would print it
            issues.append(ConfigIssue(f"{path}.azure.sasToken", "is not a SAS token (a query string: letters, digits and %&=._~:+/-, no spaces)", "the token as the portal or az storage container generate-sas gives it", file))
    return issues


def _check_backup_store(stack: StackConfig, s: EnvironmentSettings, env: Environment, file: str) -> list[ConfigIssue]:
    """`backups.s3` or `backups.azure` (the archives in object storage) and the keys that go with them."""
    b, bpath = s.backups, s.paths["backups"]
    issues: list[ConfigIssue] = []
    if s.storage is not None and s.storage.s3 is not None and s.storage.s3.keySuffix and not re.fullmatch(r"[A-Za-z0-9._-]+", s.storage.s3.keySuffix):
        # the backup Jobs copy the objects that end in it (store.sh): letters, digits and . _ - are no pattern
        issues.append(ConfigIssue(f"{s.paths['storage']}.s3.keySuffix", f"{s.storage.s3.keySuffix!r} holds characters other than letters, digits and . _ -", "a suffix such as .orders-production", file))
    if b.s3 is not None and b.azure is not None:
        issues.append(ConfigIssue(bpath, "set at most one of s3 and azure", "the archives go to one store", file))
    store = object_store(s)
    # rclone (transferImage) also copies a file store in object storage; prefix and networks are the archives' only
    unused = ("prefix", "networks", "transferImage") if store is None and file_store(s) is None else ("prefix", "networks") if store is None else ()
    for key in unused:
        if getattr(b, key) is not None:
            issues.append(ConfigIssue(f"{bpath}.{key}", "applies to archives in s3 or azure, and neither is set", f"drop {key}, or set {bpath}.s3 or {bpath}.azure", file))
    if b.storageClass is not None and store is not None:
        issues.append(ConfigIssue(f"{bpath}.storageClass", "the archives are in object storage: there is no backups claim to class", "drop storageClass", file))
    issues += _credentials(stack, bpath, b.s3, b.azure, file)
    for kind, store in (("s3", b.s3), ("azure", b.azure)):
        endpoint = getattr(store, "endpoint", None)
        if endpoint is not None and not re.fullmatch(r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?", endpoint):
            # the archives hold the whole database: never in plain text on the wire
            issues.append(ConfigIssue(f"{bpath}.{kind}.endpoint", f"{endpoint!r} is not an https URL of a host", "https://host[:port]", file))
    if b.transferImage is not None and "transferImage" not in unused:
        ref = parse_image(b.transferImage)
        if ref is None:
            issues.append(ConfigIssue(f"{bpath}.transferImage", f"{b.transferImage!r} is not an image reference", "registry/repository[:tag]@sha256:<digest> of an rclone image", file))
        elif ref.digest is None and env.is_production:
            issues.append(ConfigIssue(f"{bpath}.transferImage", f"{b.transferImage!r} is not pinned by digest, and production {env.name!r}'s data passes through it", f"{b.transferImage.split('@')[0]}@sha256:<digest>", file))
    if env.is_production and s.storage is not None and _same_store(s.storage, b):
        # the runtime holds the file store's credentials: an app that is taken over could delete its own backups
        issues.append(
            ConfigIssue(
                bpath,
                f"production {env.name!r} keeps its backups in its own file store, whose credentials the runtime holds",
                "a bucket or container of its own, with credentials only the backup Jobs get",
                file,
            )
        )
    return issues


def _same_store(files: StorageConfig, b: BackupStorageConfig) -> bool:
    """Whether the archives would be in the file store's own bucket or container, or under its keys."""
    if files.s3 is not None and b.s3 is not None:
        same_keys = files.s3.accessKeyId is not None and files.s3.accessKeyId == b.s3.accessKeyId
        return same_keys or (files.s3.bucket == b.s3.bucket and _host(files.s3.endpoint) == _host(b.s3.endpoint))
    if files.azure is not None and b.azure is not None:
        same_keys = any(k is not None and k == getattr(b.azure, name) for name, k in (("accountKey", files.azure.accountKey), ("sasToken", files.azure.sasToken)))
        return same_keys or (files.azure.accountName, files.azure.container) == (b.azure.accountName, b.azure.container)
    return False


def _host(endpoint: str | None) -> str:
    """An endpoint's host and port as the store sees them (case and the default port do not matter)."""
    if not endpoint:
        return ""
    parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    port = parts.port or (80 if parts.scheme == "http" else 443)
    return f"{(parts.hostname or '').lower()}:{port}"


def _store_identity(s: EnvironmentSettings, app: str, env: str) -> tuple[str, ...] | None:
    """Where an environment's archives go (None: its claim): the store, host, bucket or container, prefix."""
    b = s.backups
    if b.s3 is not None:
        return ("s3", _host(b.s3.endpoint), b.s3.bucket, backup_prefix(s, app, env))
    if b.azure is not None:
        return ("azure", b.azure.accountName, b.azure.container, backup_prefix(s, app, env))
    return None


def _store_keys(s: EnvironmentSettings) -> set[str]:
    """The credentials an environment's backup Jobs hold for the archives' store."""
    b = s.backups
    if b.s3 is not None:
        return {b.s3.accessKeyId} if b.s3.accessKeyId else {f"identity:{_host(b.s3.endpoint)}/{b.s3.bucket}"}
    if b.azure is not None:
        return {k for k in (b.azure.accountKey, b.azure.sasToken) if k}
    return set()


def check_backup_stores(stack: StackConfig, block: KubernetesConfig, file: str = "") -> list[ConfigIssue]:
    """Archives in object storage, across the stack's environments: each environment's place is its own
    (retention deletes what it does not keep under its prefix), and production's keys are production's."""
    issues: list[ConfigIssue] = []
    settings = {e.name: for_environment(block, e.name) for e in stack.environments}
    plain = {n: st for n, st in settings.items() if st.mode == "plain"}
    if len(plain) > 1 and block.backups.prefix is not None and any(st.paths["backups"] == f"{BLOCK}.backups" and st.backups.prefix for st in plain.values()):
        issues.append(ConfigIssue(f"{BLOCK}.backups.prefix", f"would be one prefix for {len(plain)} environments, and each one's retention deletes the others' archives", "set prefix per environment (environments.<env>.backups), or leave it out: the default is <app>/<environment>", file))
    seen: dict[tuple[str, ...], str] = {}
    for name, st in plain.items():
        key = _store_identity(st, stack.app.name, name)
        if key is None:
            continue
        if key in seen:
            issues.append(ConfigIssue(f"{st.paths['backups']}.prefix", f"environments {seen[key]!r} and {name!r} would keep their archives in one place ({key[2]}/{key[3]}), and each one's retention deletes the other's", "give each environment a prefix of its own", file))
        seen.setdefault(key, name)
    production = [e.name for e in stack.environments if e.is_production and e.name in plain]
    for name in production:
        st = plain[name]
        b = st.backups
        if b.s3 is not None and b.s3.accessKeyId is None:
            # the Jobs run as the namespace's default ServiceAccount, whose identity the runtime's pods share
            issues.append(ConfigIssue(f"{st.paths['backups']}.s3", f"production {name!r} would reach its backups with the pod's identity, which its runtime shares: an app that is taken over could delete them", "give the backup store keys of its own (accessKeyId, secretAccessKey as secrets)", file))
        mine = _store_keys(st)
        for other, ost in plain.items():
            if other != name and mine & _store_keys(ost):
                issues.append(ConfigIssue(f"{st.paths['backups']}", f"production {name!r} and {other!r} hold the same keys to the backup store: whoever may run {other!r}'s backup Jobs could read or delete production's archives", f"production keys of its own, in environments.{name}.backups", file))
                break
    return issues


def check_principals(stack: StackConfig, file: str = "") -> list[ConfigIssue]:
    """Principals must be RBAC subjects; production accepts only groups (the IdP enforces their MFA)."""
    issues = []
    names = {e.name for e in stack.environments}
    production = {e.name for e in stack.environments if e.is_production}
    for i, entry in enumerate(stack.access):
        applies = names if "*" in entry.environments else names & set(entry.environments)
        if not applies:
            continue  # an entry for another stack's environments
        path = f"mxinfra:access[{i}].principal"
        subject = parse_principal(entry.principal)
        if subject is None:
            issues.append(ConfigIssue(path, f"{entry.principal!r} is not a Kubernetes RBAC subject", PRINCIPAL_FORMS, file))
        elif subject[0] != "ServiceAccount" and subject[1] in ANONYMOUS:
            issues.append(ConfigIssue(path, f"{entry.principal!r} is everyone who reaches the API server without credentials", "grant a group of your identity provider", file))
        elif subject[0] != "ServiceAccount" and subject[1].startswith("system:") and applies & production:
            issues.append(ConfigIssue(path, f"production environment(s) {', '.join(sorted(applies & production))} accept no Kubernetes built-in subject ({entry.principal!r})", "grant a group of your identity provider, whose members it forces through MFA", file))
        elif subject[0] != "Group" and applies & production:
            issues.append(ConfigIssue(path, f"production environment(s) {', '.join(sorted(applies & production))} accept only group: principals", "Kubernetes RBAC cannot require MFA: grant a group whose members your identity provider forces through MFA", file))
    return issues
