"""Reading a Pulumi project and its stack files offline, the way the Pulumi CLI would hand them to a program."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .config import RawConfig
from .errors import UserError

SECRET_PLACEHOLDER = "[secret]"


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


def _load_yaml(path: Path) -> Any:
    try:
        with path.open() as fh:
            return yaml.safe_load(fh)
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
    for key, spec in (doc.get("config") or {}).items():
        full = key if ":" in key else f"{doc['name']}:{key}"
        if isinstance(spec, dict) and ("default" in spec or "value" in spec):
            defaults[full] = spec.get("value", spec.get("default"))
        elif not isinstance(spec, dict):
            defaults[full] = spec
    return Project(directory, doc["name"], main, directory / str(doc.get("stackConfigDir", ".")), defaults)


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
        full = key if ":" in key else f"{project.name}:{key}"
        values[full] = _walk_secrets(value, full, secrets)
    return RawConfig(values, frozenset(secrets), str(path))


def as_pulumi_config(raw: RawConfig) -> tuple[dict[str, str], list[str]]:
    """The config map and secret keys in the form the Pulumi engine gives a program (objects as JSON)."""
    import json

    config = {k: v if isinstance(v, str) else json.dumps(v) for k, v in raw.values.items()}
    secret_keys = sorted({p.split(".", 1)[0].split("[", 1)[0] for p in raw.secret_paths})
    return config, secret_keys
