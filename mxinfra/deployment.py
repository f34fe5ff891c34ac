"""From raw stack config to a validated `Deployment`: the one path both `pulumi up` and `mxinfra plan` take."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

from .access import grants_for
from .config import NAMESPACE, RawConfig, collect_stack_config
from .errors import ConfigError, ConfigIssue
from .governance.promotion import DEFAULT_REPOSITORY, fetch_package, gate_warnings, is_repository_reference, promotion_issues, repository_url
from .governance.repository import label_issue
from .governance.signing import signer_issue
from .imagebinding import Binding, Check, bind_images
from .mda import MdaError, MdaPackage, open_mda
from .naming import Naming, kubernetes_annotations, kubernetes_labels, stable_tags, standard_tags
from .settings import check_against_metadata, constant_warnings, derive
from .target import Deployment, PackageInfo, PreparedEnvironment, load_target

# `mxinfra plan` shows a gated stack's full plan before the gate's refusal (a reviewer sees what
# production would get). Only the plan, in its own process, sets this; `pulumi up` always stops at
# the gate before any resource is declared.
_gate_deferred: ContextVar[list[ConfigIssue] | None] = ContextVar("mxinfra_gate_deferred", default=None)


@contextlib.contextmanager
def deferred_gate() -> Iterator[list[ConfigIssue]]:
    """Within this block `prepare` collects promotion-gate issues here instead of raising them."""
    found: list[ConfigIssue] = []
    token = _gate_deferred.set(found)
    try:
        yield found
    finally:
        _gate_deferred.reset(token)


# One process may prepare the same stack twice (the plan validates, then runs the program): the
# archive is opened and hashed once per (path, size, mtime).
_packages: dict[tuple[str, int, int], MdaPackage] = {}


def open_package(path: Path) -> MdaPackage:
    """Open (and remember) the MDA at `path`."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _packages:
        _packages[key] = open_mda(path, hash_ahead=True)
    return _packages[key]


def resolve_package(reference: str, base_dir: Path, file: str = "") -> Path:
    """The local MDA path for `mxinfra:app.package` (a path relative to the project)."""
    path = Path(os.path.expanduser(reference))
    if not path.is_absolute():
        path = base_dir / path
    if not path.exists():
        raise ConfigError([ConfigIssue(f"{NAMESPACE}:app.package", f"no package at {path}", "give the path of the .mda (relative to the project directory) or an unpacked app directory", file)], file)
    return path


def prepare(raw: RawConfig, *, project: str, stack: str, base_dir: Path, images: Check | None = None) -> Deployment:
    """Validate everything (config, MDA, target block) and derive each environment; errors are collected.

    Every layer runs on whatever the previous one could parse: a schema problem in one environment
    does not hide an undefined constant in another, nor a target rule, in the one report. With `images`
    (the program and the plan; not the commands that only read a stack), each environment's app image is
    verified against the package last, once everything else holds (`mxinfra.imagebinding`).
    """
    cfg, issues = collect_stack_config(raw, project=project, stack=stack)
    file = raw.source
    if cfg is None:
        raise ConfigError(issues, file)
    repo_url = repository_url(cfg.repository, base_dir)
    version = None
    portable_path = None
    package_path: Path | None = None
    try:
        if is_repository_reference(cfg.app.package, base_dir):
            package_path, version = fetch_package(cfg.app.package, repo_url)
        else:
            package_path = resolve_package(cfg.app.package, base_dir, file)
            portable_path = Path(os.path.relpath(package_path.resolve(), base_dir.resolve())).as_posix()
    except ConfigError as e:
        issues += e.issues
    pkg = None
    if package_path is not None:
        try:
            pkg = open_package(package_path)
            # what `inspect` and `package push` refuse (`..`, links, bombs) is refused here too (issue 19, F11)
            pkg.check_members()
        except MdaError as e:
            issues.append(ConfigIssue(f"{NAMESPACE}:app.package", str(e), "build the package again with MxBuild or Studio Pro", file))
    target = None
    try:
        target = load_target(cfg.app.target, file=file)
    except ConfigError as e:
        issues += e.issues
    if pkg is None or target is None:
        raise ConfigError(issues, file)
    meta = pkg.metadata

    for env in (*cfg.environments, *cfg.misnamed):
        issues += check_against_metadata(env, meta, file)
    block, found = target.parse_block(raw, file)
    issues += found
    if block is not None or target.config_model is None:
        issues += target.check(cfg, block, file)
    sha = pkg.sha256()
    artifacts = {env.name: target.artifact(env, block) for env in cfg.environments}
    gate = promotion_issues(list(cfg.environments), sha, artifacts, repo_url, file, config=cfg, base_dir=base_dir)
    deferred = _gate_deferred.get()
    if deferred is not None and not issues:
        # everything else is valid: the plan goes on, and reports the gate's refusal at the end
        deferred[:] = gate
    else:
        issues += gate
    if images is Check.REQUIRED and not issues:
        # `pulumi up` signs every environment's record after the change: a signer that cannot sign now
        # would leave the change applied and unrecorded, so it stops here first (issue 19, F11).
        for env in cfg.environments:
            refused = signer_issue(cfg.raw.values, env.name, repo_url, base_dir)
            if refused:
                issues.append(ConfigIssue(f"{NAMESPACE}:signing.signers.{env.name}", refused, "check the key reference and that you may sign with it (kms:Sign, Key Vault sign, or the key file)", file))
    if portable_path is not None and not issues:
        # A package from a file is recorded under its model version: a label a publisher gave other
        # bytes is refused now, before anything is applied (issue 19, F9). Fail closed under `pulumi up`.
        taken = label_issue(repo_url, meta.model_version, sha, required=images is Check.REQUIRED)
        if taken:
            issues.append(ConfigIssue(f"{NAMESPACE}:app.package", taken, f"give the package a new model version, or deploy the labelled one (package: {meta.model_version})", file))
    if issues:
        raise ConfigError(issues, file)
    binding = Binding()
    if images is not None:
        wanted = {}
        for env in cfg.environments:
            image = target.app_image(env, block)
            if image is not None:
                wanted[env.name] = (image, target.artifact_key(env, block) or f"{NAMESPACE}:{target.name}.image")
        binding = bind_images(wanted, package_path, sha, images, file, opened=pkg)
        if binding.issues:
            raise ConfigError(binding.issues, file)

    info = PackageInfo(
        path=package_path,
        sha256=sha,
        size_bytes=pkg.size_bytes,
        model_version=meta.model_version,
        runtime_version=str(meta.runtime_version),
        version=version,
        portable_path=portable_path,
    )
    prepared = []
    for env in cfg.environments:
        access = grants_for(env, cfg.access)
        tags = standard_tags(cfg.app.name, env.name, env.role.value, sha, meta.model_version)
        prepared.append(
            PreparedEnvironment(
                environment=env,
                settings=derive(env, meta, file),
                access=access,
                naming=Naming(cfg.app.name, env.name),
                tags=stable_tags(tags),
                labels=kubernetes_labels(stable_tags(tags)),
                annotations=kubernetes_annotations(stable_tags(tags)),
                release_tags=tags,
                release_labels=kubernetes_labels(tags),
                release_annotations=kubernetes_annotations(tags),
                warnings=(*raw.warnings, *gate_warnings(env), *constant_warnings(env), *target.warnings(env, access, block), *binding.warnings.get(env.name, ())),
                artifact=artifacts[env.name],
                image=binding.bound.get(env.name),
            )
        )
    return Deployment(cfg, meta, info, target, block, tuple(prepared), repo_url, cfg.repository or DEFAULT_REPOSITORY)
