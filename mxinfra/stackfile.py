"""Reading a Pulumi project and its stack files offline, the way the Pulumi CLI would hand them to a program."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import re
from typing import Any

import yaml

from .schema import RawConfig
from .environments import OFFLINE_SECRET
from .errors import UserError

SECRET_PLACEHOLDER = OFFLINE_SECRET
# The `encryptionsalt` lines of the bundled example stacks (examples/orders/stack_secrets.py wrote them
# under a published passphrase): a stack file copied from one keeps it, and its secrets are then public.
EXAMPLE_SALTS = frozenset({
    "v1:+3qCcsA1ksE=:v1:iVucvzhXuGTJ3QbD:LN1t/iFkjtG6vs8AInldJyk7V2MD/Q==",
    "v1:+lDm24hkFvk=:v1:CrCQR96XdzdWAyyi:X/zbb9yz2fWKChYYUvKFer6WxaH3Pg==",
    "v1:R1f3D7sVAQo=:v1:4uIajkpb75oOy0/O:xfpAOzCNuDW3Jaq7NmNOAxHL9M4Eqg==",
    "v1:UagHdENhfIQ=:v1:LegEzCC8N3/6CM0M:3EAeVMw3cfgWgqXL0xj1S5Pmcx1RgA==",
    "v1:YIOJw/cazos=:v1:p8ahS7vh0iGjj3OZ:+tgxhpgN5sXhM+j8GWNks6+Oi22g7Q==",
    "v1:e2xtHkVwVu0=:v1:r5y9WXJcdqEEabMl:IRsJDx0uezaizw61dGqzEaMO5PoElg==",
    "v1:p1XdvTLu3PM=:v1:kfnDSati4KJRjtA5:X+EnnKr4O2k4ui2NUUjt37+0tZs+8Q==",
    "v1:vK4umMJdK+U=:v1:cUYR52BVMeRLZV7K:l5913eXe2CYLCPzFLlx5i3QuRMB+8Q==",
    "v1:xlqd1oOJfwI=:v1:JJZyeED1D+ov7jiO:HvLxlhowYPw/xSG6z2MVPARNysD7MQ==",
})


class _Yaml12Loader(yaml.SafeLoader):
    """Scalars as Pulumi reads stack files (YAML 1.2 core schema): no sexagesimal numbers, no
    timestamps, only true/false as booleans, so `1:30` stays a string here as it does there."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag.rsplit(":", 1)[-1] not in ("bool", "int", "float", "timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789"))
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


# No config number needs more digits than a Java long; past this the text is kept as a string, so
# the schema reports it at its key path instead of int() failing on thousands of digits.
_MAX_INT_DIGITS = 40


def _int12(loader: yaml.SafeLoader, node: yaml.Node) -> int | str:
    text = loader.construct_scalar(node)  # type: ignore[arg-type]
    if len(text) > _MAX_INT_DIGITS:
        return text
    if text.startswith(("0o", "0x")):
        return int(text, 0)
    return int(text, 10)  # 012 is twelve in YAML 1.2, not octal


_Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _int12)


@dataclass(frozen=True)
class Project:
    """A Pulumi project directory: `Pulumi.yaml` and where its stack files live."""

    directory: Path
    name: str
    main: Path
    stack_config_dir: Path
    defaults: dict[str, Any]

    def stack_file(self, stack: str) -> Path:
        """The `Pulumi.<stack>.yaml` of `stack`."""
        return self.stack_config_dir / f"Pulumi.{stack}.yaml"

    def stacks(self) -> list[str]:
        """The stacks that have a stack file."""
        return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in self.stack_config_dir.glob("Pulumi.*.yaml"))


# A stack file has hundreds of nodes; aliases may repeat a subtree, but nesting them (an alias bomb:
# 9 levels of 9 aliases is 387 million nodes) must not make every walk of the config hang.
MAX_EXPANDED_NODES = 100_000


def _expanded_size(node: yaml.Node, memo: dict[int, int], limit: int) -> int:
    """The node count of `node` with every alias expanded, computed over the graph (memoised)."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = limit + 1  # a node that contains itself expands without end
    total = 1
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            total += _expanded_size(child, memo, limit)
            if total > limit:
                break
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            total += _expanded_size(k, memo, limit) + _expanded_size(v, memo, limit)
            if total > limit:
                break
    memo[key] = total
    return total


def _load_yaml(path: Path) -> Any:
    try:
        with path.open() as fh:
            loader = _Yaml12Loader(fh)
            try:
                node = loader.get_single_node()
                if node is None:
                    return None
                if _expanded_size(node, {}, MAX_EXPANDED_NODES) > MAX_EXPANDED_NODES:
                    raise UserError(
                        f"{path}: expands to more than {MAX_EXPANDED_NODES:,} values through YAML aliases "
                        "(an alias bomb?): write the config out without nested aliases"
                    )
                return loader.construct_document(node)
            finally:
                loader.dispose()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML: {e}") from None


def read_project(directory: Path) -> Project:
    """The Pulumi project in `directory`; a UserError names what is missing."""
    directory = directory.resolve()
    path = directory / "Pulumi.yaml"
    if not path.exists():
        raise UserError(f"{directory}: no Pulumi.yaml here; run the command in a Pulumi project or pass -C DIR")
    doc = _load_yaml(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
        raise UserError(f"{path}: expected a mapping with at least 'name' and 'runtime'")
    runtime = doc.get("runtime")
    runtime_name = runtime.get("name") if isinstance(runtime, dict) else runtime
    if runtime_name != "python":
        raise UserError(f"{path}: runtime is {runtime_name!r}; mxinfra programs use runtime: python")
    main = directory / str(doc.get("main", "."))
    if main.is_dir():
        main = main / "__main__.py"
    defaults: dict[str, Any] = {}
    project_config = doc.get("config") or {}
    if not isinstance(project_config, dict):
        raise UserError(f"{path}: 'config' must be a mapping of key -> value")
    for key, spec in project_config.items():
        if not isinstance(key, str):
            raise UserError(f"{path}: config key {key!r} must be a string")
        full = key if ":" in key else f"{doc['name']}:{key}"
        if isinstance(spec, dict) and ("default" in spec or "value" in spec):
            defaults[full] = spec.get("value", spec.get("default"))
        elif not isinstance(spec, dict):
            defaults[full] = spec
    return Project(directory, doc["name"], main, directory / str(doc.get("stackConfigDir", ".")), defaults)


def _check_plain(value: Any, where: str, path: Path) -> None:
    """Config values are what JSON can carry; anything else (binary, tagged objects) is refused."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int, float, bool)):
                raise UserError(f"{path}: {where}: key {k!r} must be a plain value")
            _check_plain(v, f"{where}.{k}", path)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]", path)
    elif value is not None and not isinstance(value, (str, int, float, bool)):
        raise UserError(f"{path}: {where}: a {type(value).__name__} value is not valid config (use a string)")


def _walk_secrets(value: Any, path: str, found: set[str]) -> Any:
    """Replace `{secure: ...}` nodes by a placeholder, recording their paths (values cannot be decrypted offline)."""
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            found.add(path)
            return SECRET_PLACEHOLDER
        return {k: _walk_secrets(v, f"{path}.{k}", found) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk_secrets(v, f"{path}[{i}]", found) for i, v in enumerate(value)]
    return value


def read_stack_config(project: Project, stack: str) -> RawConfig:
    """The config of `stack`: project defaults overlaid by the stack file, secure values marked."""
    path = project.stack_file(stack)
    if not path.exists():
        known = ", ".join(project.stacks()) or "none"
        raise UserError(f"{path}: no stack file for stack {stack!r} (stacks with a file: {known})")
    doc = _load_yaml(path) or {}
    if not isinstance(doc, dict):
        raise UserError(f"{path}: expected a mapping with a 'config' key")
    config = doc.get("config") or {}
    if not isinstance(config, dict):
        raise UserError(f"{path}: 'config' must be a mapping of key -> value")
    values = dict(project.defaults)
    secrets: set[str] = set()
    for key, value in config.items():
        if not isinstance(key, str):
            raise UserError(f"{path}: config key {key!r} must be a string like mxinfra:app")
        full = key if ":" in key else f"{project.name}:{key}"
        _check_plain(value, full, path)
        values[full] = _walk_secrets(value, full, secrets)
    warnings: tuple[str, ...] = ()
    if doc.get("encryptionsalt") in EXAMPLE_SALTS:
        warnings = (
            f"{path.name} is encrypted under the public example passphrase of the bundled stacks (its "
            "encryptionsalt is theirs): anything set with `pulumi config set --secret` here can be read by "
            "anyone; run `pulumi stack change-secrets-provider` and set every secret again",
        )
    return RawConfig(values, frozenset(secrets), str(path), warnings)


def as_pulumi_config(raw: RawConfig) -> tuple[dict[str, str], list[str]]:
    """The config map and secret keys in the form the Pulumi engine gives a program (objects as JSON)."""
    import json

    config = {k: v if isinstance(v, str) else json.dumps(v) for k, v in raw.values.items()}
    secret_keys = sorted({p.split(".", 1)[0].split("[", 1)[0] for p in raw.secret_paths})
    return config, secret_keys


def engine_secret_paths(engine_secret_keys: frozenset[str], directory: Path, project_name: str, stack: str) -> frozenset[str]:
    """Which config paths are secret, for a program the engine runs: the engine marks a whole key secret
    when any value inside it is (`pulumi config set --secret --path`), which would let a plain value beside
    a secret one pass as secret. The stack file says exactly which values are `secure:`, so its paths
    replace the engine's whole-key marks; a key the file does not hold keeps the engine's mark. The same
    paths `mxinfra plan` reads, so both refuse the same plain-text secrets (issue 18)."""
    found = None
    for candidate in (directory.resolve(), *directory.resolve().parents):
        if (candidate / "Pulumi.yaml").is_file():
            found = candidate
            break
    if found is None:
        return engine_secret_keys
    try:
        project = read_project(found)
        if project.name != project_name or not project.stack_file(stack).is_file():
            return engine_secret_keys
        in_file = read_stack_config(project, stack).secret_paths
    except UserError:
        return engine_secret_keys
    out: set[str] = set()
    for key in engine_secret_keys:
        nested = {p for p in in_file if p == key or p.startswith((f"{key}.", f"{key}["))}
        out |= nested or {key}
    return frozenset(out)
