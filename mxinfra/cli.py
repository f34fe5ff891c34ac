"""The `mxinfra` command line. Exit codes: 0 success, 2 the user's input is at fault, 1 an internal error.

Commands import what they need when they run: `mxinfra --help` loads neither Pulumi nor a cloud SDK.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .errors import UserError

# Plain click help (rich_markup_mode=None): no `<bool>` placeholder on flags, which would invite `--json true`.
CONTEXT = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(
    name="mxinfra",
    help="Mendix apps as Pulumi infrastructure on your own cloud.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings=CONTEXT,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version as installed

        sys.stdout.write(f"mxinfra {installed('mxinfra')}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit")] = False,
) -> None:
    """Mendix apps as Pulumi infrastructure on your own cloud."""


def _stderr():  # noqa: ANN202 (rich is imported lazily)
    from .display import console

    return console(stderr=True, markup=True)


def _stdout():  # noqa: ANN202
    from .display import console

    return console(markup=True)


@app.command()
def inspect(
    path: Annotated[Path, typer.Argument(metavar="MDA", help="An .mda archive or an unpacked app directory")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object instead of a table")] = False,
    verify: Annotated[
        bool, typer.Option("--verify", help="Also inflate every member against its CRC-32 and size (reads the whole archive)")
    ] = False,
) -> None:
    """Validate an MDA and show what it contains (runtime, constants, scheduled events, roles).

    Without --verify only the central directory and metadata.json are read (member names, sizes and
    ratios are checked, the file is hashed): a byte damaged inside a member shows only with --verify.
    """
    from .mda import open_mda

    pkg = open_mda(path, hash_ahead=not verify)
    pkg.check_members()
    sha = _hash_with_progress(pkg, verify)
    meta = pkg.metadata
    doc = {
        "path": str(path),
        "sha256": sha,
        "sizeBytes": pkg.size_bytes,
        "runtimeVersion": str(meta.runtime_version),
        "modelVersion": meta.model_version,
        "projectId": meta.project_id,
        "projectName": meta.project_name,
        "javaVersion": meta.java_version,
        "adminUser": meta.admin_user,
        "roles": [r.name for r in meta.roles],
        "constants": [{"name": c.name, "type": c.type, "defaultValue": c.default_value} for c in meta.constants],
        "scheduledEvents": [e.name for e in meta.scheduled_events],
        "requestHandlers": [
            {"name": h.name, "defaultEnabled": h.default_enabled, "matchExactly": h.match_exactly} for h in meta.request_handlers
        ],
        "languages": list(meta.languages),
    }
    if as_json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    from .display import text

    rows = [
        ("package", f"{path} ({pkg.size_bytes:,} bytes)"),
        ("sha256", sha),
        ("project", f"{meta.project_name} ({meta.project_id})"),
        ("runtime", f"{meta.runtime_version}" + (f", Java {meta.java_version}" if meta.java_version else "")),
        ("model version", meta.model_version),
        ("admin user", meta.admin_user),
        (f"roles ({len(meta.roles)})", ", ".join(doc["roles"]) or "-"),
        (f"constants ({len(meta.constants)})", "\n".join(f"{c.name} [{c.type}] = {c.default_value!r}" for c in meta.constants) or "-"),
        (f"scheduled events ({len(meta.scheduled_events)})", ", ".join(doc["scheduledEvents"]) or "-"),
        (f"request handlers ({len(meta.request_handlers)})", ", ".join(h.name for h in meta.request_handlers) or "-"),
    ]
    for label, value in rows:
        # Metadata is untrusted: never markup, never terminal control sequences.
        table.add_row(label, text(value))
    _stdout().print(table)


def _hash_with_progress(pkg: Any, verify: bool = False) -> str:
    """Hash (and with `verify`, inflate) the package, with a progress bar on a terminal for large files."""
    work = pkg.verify if verify else pkg.sha256
    console = _stderr()
    if not console.is_terminal or pkg.size_bytes < 64 * 1024 * 1024:
        return work()
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    label = "verifying" if verify else "hashing"
    with Progress(label, BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("sha256", total=pkg.size_bytes)
        return work(lambda n: bar.advance(task, n))


@app.command()
def plan(
    stack: Annotated[str, typer.Option("-s", "--stack", help="The stack to plan (its Pulumi.<stack>.yaml)")],
    directory: Annotated[Path, typer.Option("-C", "--cwd", help="The Pulumi project directory")] = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object instead of a tree")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write each target's rendered artifacts here")] = None,
) -> None:
    """Run the project's program offline (no Pulumi CLI, credentials or network) and show what it declares."""
    from .errors import ConfigError
    from .plan import run_plan

    if out is not None and out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file: expected a directory (new or existing) for the rendered artifacts")
    result = run_plan(directory, stack)
    written = result.write_artifacts(out) if out is not None else []
    if as_json:
        sys.stdout.write(result.to_json())
    else:
        _print_plan(result, written)
    if result.gate_issues:
        # the full plan is out; `pulumi up` of this stack refuses before anything changes
        raise ConfigError(result.gate_issues, result.gate_issues[0].file)


def _print_plan(result: Any, written: list[Path]) -> None:
    from rich.tree import Tree

    from rich.markup import escape

    from .display import clean

    console = _stdout()
    d = result.deployment
    # A repository package is named by its version label (the cache file's name means nothing to a reader).
    if d.package.portable_path is not None:
        shown = d.package.path.name
    else:
        shown = f"{d.package.version} from the repository" if d.package.version else "from the repository"
    console.print(
        f"[bold]{escape(result.project.name)}[/] stack [bold]{escape(result.stack)}[/] -> target [bold]{d.target.name}[/], "
        + escape(clean(f"package {shown} (sha256 {d.package.sha256[:12]}, model {d.package.model_version}, runtime {d.package.runtime_version})"))
    )
    shared = [r for r in result.resources(None)]
    if shared:
        tree = Tree("[bold]shared[/]")
        for r in shared:
            tree.add(_describe(r))
        console.print(tree)
    for env in result.environments():
        tree = Tree(f"[bold]{env['name']}[/] ({env['role']})")
        for r in result.resources(env["name"]):
            tree.add(_describe(r))
        for note in env["notes"]:
            tree.add(f"[cyan]note:[/] {escape(clean(note))}")
        for warning in env["warnings"]:
            tree.add(f"[yellow]warning:[/] {escape(clean(warning))}")
        console.print(tree)
    total = len(result.registrations)
    console.print(f"{total} resources in {len(result.environments())} environment(s); nothing was deployed.")
    for path in written:
        console.print(f"wrote {path}")


_NOT_SHOWN = {"kind", "apiVersion", "tags", "tagsAll", "__provider", "metadata"}


def _describe(resource: dict[str, Any]) -> str:
    from rich.markup import escape

    from .display import clean

    inputs = resource["inputs"]
    shown = []
    meta = inputs.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("name"), str):
        shown.append(f"{meta['namespace']}/{meta['name']}" if isinstance(meta.get("namespace"), str) else meta["name"])
    for key, value in inputs.items():
        if key not in _NOT_SHOWN and isinstance(value, (str, int, float, bool)) and len(shown) < 4:
            text = str(value)
            shown.append(f"{key}={text if len(text) <= 40 else text[:37] + '...'}")
    flags = " [red]protected[/]" if resource.get("options", {}).get("protect") else ""
    extra = f" [dim]{escape(clean(', '.join(shown)))}[/]" if shown else ""
    return f"{escape(resource['type'])} [bold]{escape(resource['name'])}[/]{flags}{extra}"


from .governance_cli import register as _register_governance  # noqa: E402 (after the core commands)

_register_governance(app)

from .drift import drift as _drift  # noqa: E402 (imports typer only; the comparison loads what it needs when it runs)

app.command("drift")(_drift)

from .backup_cli import register as _register_backup  # noqa: E402 (imports typer only)

_register_backup(app)

from .image import image_app as _image_app  # noqa: E402 (imports typer only; verification loads when it runs)

app.add_typer(_image_app, name="image")


def _register_plugins() -> None:
    # A target may bring commands of its own (Cloud Foundry: `mxinfra access grant|expire`) through the
    # entry-point group `mxinfra.commands`: `register(app)` adds them. The core imports no target module;
    # a plugin's register imports only typer, its commands load their SDKs when they run.
    from importlib.metadata import entry_points

    for ep in entry_points(group="mxinfra.commands"):
        ep.load()(app)
    # Commands of targets that are not installed still answer, naming the distribution that brings them.
    have = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    for name, (what, dist) in PLUGIN_COMMANDS.items():
        if name not in have:
            app.command(name, help=f"{what} (needs {dist})", context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []})(_missing(name, dist))


# Commands that targets bring: the name, what it does, and the distribution that provides it.
PLUGIN_COMMANDS = {"access": ("Time-boxed production grants (Cloud Foundry space roles)", "mxinfra-cloudfoundry")}


def _missing(name: str, dist: str):  # noqa: ANN202 (a typer callback)
    def command(ctx: typer.Context) -> None:
        raise UserError(f"`mxinfra {name}` comes with the {dist} target, which is not installed: pip install {dist}")

    return command


_register_plugins()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script: usage and input errors exit 2, Ctrl-C 130, bugs 1."""
    try:
        code = app(args=argv, standalone_mode=False, prog_name="mxinfra")
    except UserError as e:
        from .display import clean

        _stderr().print(f"error: {clean(e)}", style="red", markup=False, highlight=False, soft_wrap=True)
        return 2
    except typer.Exit as e:
        return _interrupted() if e.exit_code == 130 else e.exit_code
    except typer.TyperException as e:
        # click's usage errors as typer vendors them (typer._click): the usage line, the message and
        # any "Did you mean" hint, never a traceback. They are all the user's to fix.
        show = getattr(e, "show", None)
        if callable(show):
            show()
        else:
            sys.stderr.write(f"error: {e}\n")
        return 2
    except typer.Abort:
        return _interrupted()
    except KeyboardInterrupt:
        return _interrupted()
    except Exception as e:  # noqa: BLE001 (the last resort: an internal error, with its traceback)
        import traceback

        traceback.print_exc()
        _stderr().print(f"internal error: {type(e).__name__}: {e}", style="red", markup=False, highlight=False)
        return 1
    # In non-standalone mode click returns the code of an explicit exit (`--help`, Ctrl-C) instead of raising.
    if isinstance(code, int) and code == 130:
        return _interrupted()
    return code if isinstance(code, int) else 0


def _interrupted() -> int:
    sys.stderr.write("interrupted\n")
    return 130


if __name__ == "__main__":
    sys.exit(main())
