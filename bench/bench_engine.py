"""Benchmark: mxinfra under the real Pulumi engine, next to a bare program of the same resources (issue 18).

    .venv/bin/python bench/bench_engine.py [--envs 1,5] [--rounds 5] [--quick] [--no-split] [--keep] [--trace DIR]

Needs the engine toolchain (`./dev engine`; `engine/toolchain.sh path` prints it). Starts one local
control plane per variant (tests/engine/cluster.py: etcd, kube-apiserver, kube-controller-manager and
the StatusFaker standing in for the kubelet), because the variants declare the very same objects (same
namespaces, same names) and so cannot share a cluster. The variants, each a project of its own with
the file backend and the passphrase secrets provider:

  mxinfra   the example project as it is (Pulumi.yaml, __main__.py = `run()`, examples/), one stack whose
            `mxinfra:environments` declares N acceptance environments (stacks/Pulumi.acceptance.yaml:
            plain mode, external database and S3 keys set with `pulumi config set --secret --path`);
  bare      a Pulumi program generated from `mxinfra plan --json` of that stack: the same Kubernetes
            objects (pulumi_kubernetes classes) and RandomPasswords with the same inputs, the same
            component types, names and parents (so the same URNs) and the dependencies mxinfra's state
            records; secret values from the plaintexts set on the stack. Regenerated from the plan
            after every change. It leaves out mxinfra's own work: reading and hashing the MDA,
            validating the config against it, the promotion gate, the per-environment release intent and
            activity resources (dynamic providers: the activity record's write to the repository, the
            package upload on a deploy), and the stack outputs;
  no-activity  (skipped with --no-split) the mxinfra project whose __main__.py first replaces
            MendixEnvironment's release intent/secrets digest/activity methods and the release guard (which
            reads the records they write) with no-ops: everything of mxinfra but its two dynamic
            resources and the guard, to show where the difference goes.

After a baseline `pulumi up` of each (untimed), the bare stack's state is compared input by input with
mxinfra's (random passwords and generated Secret names aside). Then, for each N and each round, the
whole `pulumi` process is timed (wall clock, and the CPU seconds of its process tree), variants
interleaved in a rotating order:

  preview release   `pulumi preview` after `mxinfra:app.package` names a new package (the example MDA
                    with a bumped ModelVersion in model/metadata.json: new bytes each round) and
                    `mxinfra:kubernetes.image` the image built from it (untimed, `mxinfra image build`
                    into a distribution registry on loopback): mxinfra verifies the image (issue 20)
  up release        `pulumi up --yes --skip-preview` of it (the preview is timed on its own)
  preview constant  `pulumi preview` after every environment's Orders.PageSize changed
  up constant       `pulumi up --yes --skip-preview` of it

It prints two tables, wall and CPU seconds: median (min-max) per variant, the ratio of the wall medians
mxinfra/bare (target <= 1.2x) and their differences; what the engine reported changing; the machine's load: the load
average, and the CPU time other processes used during the run (/proc/stat minus this bench's own tree).
About 8 minutes with the defaults (5 rounds, N = 1 and 5) on 2 cores; --quick: 1 round, about 3.
--keep keeps the scratch directory (projects, the generated bare programs, states, cluster logs); --trace DIR
writes each timed command's OpenTelemetry spans (`pulumi --otel-traces`) to DIR/n<N>-r<round>-<scenario>-<variant>.json:
the export runs inside the timed commands, so a traced run's figures are not comparable with an untraced one's.
--engine-env NAME=VALUE (repeatable) sets a variable for every variant's CLI alike, to see what an engine setting
changes (e.g. PULUMI_SKIP_CHECKPOINTS=true: the state written once at the end instead of at every step).
Prints what it measured; asserts nothing (it stops if a command fails or the bare program does not match).
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "engine"))  # cluster.py, engine_support.py (as tests/engine/conftest.py)
sys.path.insert(1, str(ROOT / "tests"))  # registry.py: the distribution registry the images are pushed to

from cluster import LocalCluster  # noqa: E402
from engine_support import SIGINT_WAS_IGNORED, Pulumi  # noqa: E402

import build_mda  # noqa: E402  (examples/orders, put on sys.path by engine_support)
import stack_secrets  # noqa: E402
from registry import BASE_FILES, layer_tar, logged_in, push_image, registry_binary, start_registry  # noqa: E402

KNOWN_AFTER_APPLY = "(known after apply)"  # = mxinfra_kubernetes.render.AUTONAME_SUFFIX
SECRETS = stack_secrets.VALUES["acceptance"]  # config path -> plaintext (database URL, S3 keys)
# Where each runtime variable of a Secret comes from (mxinfra.settings.buildpack_env for this stack).
SECRET_SOURCES = {
    "DATABASE_URL": "mxinfra:kubernetes.database.url",
    "S3_ACCESS_KEY_ID": "mxinfra:kubernetes.storage.s3.accessKeyId",
    "S3_SECRET_ACCESS_KEY": "mxinfra:kubernetes.storage.s3.secretAccessKey",
    # the backups' rclone remote for the file bucket (mxinfra_kubernetes.backups): the same S3 keys
    "RCLONE_CONFIG_FILES_ACCESS_KEY_ID": "mxinfra:kubernetes.storage.s3.accessKeyId",
    "RCLONE_CONFIG_FILES_SECRET_ACCESS_KEY": "mxinfra:kubernetes.storage.s3.secretAccessKey",
    "ADMIN_PASSWORD": "random:admin-password",  # the environment's RandomPassword
}
SCENARIOS = ("preview release", "up release", "preview constant", "up constant")
NO_ACTIVITY_MAIN = '''"""mxinfra without its dynamic resources (bench/bench_engine.py): no release intent, no activity record, and
so no release guard either (with no record, everything running would be an unrecorded change), nor the
provider those resources run on."""

from mxinfra import components, release_guard

release_guard.guard = lambda *args, **kwargs: None

components.MendixEnvironment._release_intent = lambda self, deployment, prepared: None
components.MendixEnvironment._secrets_digest = lambda self, key, admin_password, settings: None
components.MendixEnvironment._activity_log = lambda self, deployment, prepared, secrets, depends_on: None
components.MendixApp._records_provider = lambda self, naming: None

from mxinfra.program import run  # noqa: E402

run()
'''


# ---- the stack ----------------------------------------------------------------------------------------
def env_names(n: int) -> list[str]:
    return ["acceptance", *[f"uat{i}" for i in range(1, n)]]


def stack_doc(n: int, package: str, page_size: int, image: str) -> dict[str, Any]:
    """stacks/Pulumi.acceptance.yaml with N acceptance environments, its secure values removed (the bench
    sets them with the CLI) and the ingress host derived per environment (`domain`: for `acceptance` the
    same host and TLS Secret as the committed stack)."""
    config = yaml.safe_load((ROOT / "stacks" / "Pulumi.acceptance.yaml").read_text())["config"]
    template = config["mxinfra:environments"]["acceptance"]
    envs = {}
    for name in env_names(n):
        env = {"role": "acceptance", **copy.deepcopy(template)}
        env["constants"]["Orders.ApiUrl"] = f"https://api.{name}.example.com"
        env["constants"]["Orders.PageSize"] = page_size
        envs[name] = env
    config["mxinfra:environments"] = envs
    config["mxinfra:app"]["package"] = package
    for entry in config["mxinfra:access"]:
        entry["environments"] = env_names(n)
    k8s = config["mxinfra:kubernetes"]
    k8s["image"] = image  # built from `package` (mxinfra image build): `pulumi up` verifies that it holds it
    k8s["ingress"] = {"domain": "example.com"}
    del k8s["database"]["url"]
    del k8s["storage"]["s3"]["accessKeyId"], k8s["storage"]["s3"]["secretAccessKey"]
    return config


# ---- the bare program, generated from the plan --------------------------------------------------------
def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def _k8s_class(type_: str) -> str:
    """`kubernetes:networking.k8s.io/v1:Ingress` -> `k8s.networking.v1.Ingress` (checked to exist)."""
    import pulumi_kubernetes as k8s

    _, module, kind = type_.split(":")
    group, version = module.split("/")
    package = group.split(".")[0]
    if not hasattr(getattr(getattr(k8s, package, None), version, None), kind):
        raise SystemExit(f"bare program: no pulumi_kubernetes class for {type_}")
    return f"k8s.{package}.{version}.{kind}"


def urn_key(urn: str) -> tuple[str, str]:
    """(type, name) of a URN. The plan's URNs (the mock runtime's) name only the parent's type where the
    engine's name the whole chain of parent types: resources are matched by type and name (unique here)."""
    _, _, types, name = urn.split("::", 3)
    return types.split("$")[-1], name


class Generator:
    """A Python program declaring a plan's resources, without mxinfra.

    `order` ((type, name), dependencies first) and `deps` ((type, name) -> the same) come from mxinfra's
    state: the plan lists resources sorted by URN and has no dependencies."""

    # the dynamic resources and the provider they run on (the type of a provider resource names its package)
    LEFT_OUT_PREFIX = ("pulumi-python:dynamic", "pulumi:providers:pulumi-python")

    def __init__(self, plan: dict[str, Any], order: list[tuple[str, str]], deps: dict[tuple[str, str], list[tuple[str, str]]]) -> None:
        self.plan = plan
        self.by_key = {(r["type"], r["name"]): r for r in plan["resources"]}
        if len(self.by_key) != len(plan["resources"]):
            raise SystemExit("bare program: two resources of the plan share a type and name")
        plan_urns = {r["urn"]: (r["type"], r["name"]) for r in plan["resources"]}
        self.parent = {k: plan_urns.get(r["parent"]) for k, r in self.by_key.items()}  # None: the Stack
        missing = set(self.by_key) - set(order)
        if missing:
            raise SystemExit(f"bare program: resources of the plan not in mxinfra's state: {sorted(missing)}")
        self.order = [k for k in order if k in self.by_key]
        self.deps = deps
        self.var: dict[tuple[str, str], str] = {}
        self.left_out = [r for r in plan["resources"] if r["type"].startswith(self.LEFT_OUT_PREFIX)]

    def _ref_by_name(self, name: str, parent: tuple[str, str] | None, type_prefix: str) -> str:
        found = [k for k in self.by_key if k[1] == name and k[0].startswith(type_prefix) and (parent is None or self.parent[k] == parent)]
        if len(found) != 1 or found[0] not in self.var:
            raise SystemExit(f"bare program: no single earlier {type_prefix} resource named {name!r}")
        return self.var[found[0]]

    def _emit(self, value: Any, res: dict[str, Any]) -> str:
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k!r}: {self._emit(v, res)}" for k, v in value.items()) + "}"
        if isinstance(value, list):
            return "[" + ", ".join(self._emit(v, res) for v in value) + "]"
        if isinstance(value, str):
            if value in ("[secret]", "[computed]", "[resource]"):
                raise SystemExit(f"bare program: {res['urn']}: a masked input {value} outside a Secret's stringData")
            if KNOWN_AFTER_APPLY in value:
                # `<name>-(known after apply)`: the generated name of the Secret `<name>` (mxinfra: secret_name)
                if not value.endswith("-" + KNOWN_AFTER_APPLY):
                    raise SystemExit(f"bare program: {res['urn']}: unexpected unknown {value!r}")
                return f"name_of({self._ref_by_name(value[: -len(KNOWN_AFTER_APPLY) - 1], None, 'kubernetes:')})"
        return repr(value)

    def _string_data(self, res: dict[str, Any]) -> str:
        keys = res["inputs"]["metadata"]["annotations"]["mxinfra.io/secret-keys"].split(",")
        items = []
        for key in sorted(keys):
            source = SECRET_SOURCES.get(key)
            if source is None:
                raise SystemExit(f"bare program: {res['urn']}: no known plaintext for the Secret key {key}")
            if source.startswith("random:"):
                parent = self.parent[(res["type"], res["name"])]
                assert parent is not None
                value = f"{self._ref_by_name(f'{parent[1]}-{source[7:]}', parent, 'random:')}.result"
            else:
                value = repr(SECRETS[source])
            items.append(f"{key!r}: pulumi.Output.secret({value})")
        return "{" + ", ".join(items) + "}"

    def source(self) -> str:
        lines = [
            f'"""Generated by bench/bench_engine.py from `mxinfra plan --json` of stack {self.plan["stack"]!r}'
            f' (package {self.plan["package"]["modelVersion"]}).',
            "",
            "The same Kubernetes objects and passwords with the same inputs, parents and dependencies, without mxinfra.",
            "Left out: " + ", ".join(f"{r['name']} ({r['type']})" for r in self.left_out) + '."""',
            "",
            "from collections.abc import Mapping",
            "",
            "import pulumi",
            "import pulumi_kubernetes as k8s",
            "import pulumi_random as random",
            "",
            "",
            "class Component(pulumi.ComponentResource):",
            "    def __init__(self, type_, name, opts=None):",
            "        super().__init__(type_, name, None, opts)",
            "        self.register_outputs({})",
            "",
            "",
            "def name_of(res):",
            "    return res.metadata.apply(lambda m: m.get('name') if isinstance(m, Mapping) else m.name)",
            "",
            "",
        ]
        for i, key in enumerate(self.order):
            res = self.by_key[key]
            type_, urn = res["type"], res["urn"]
            if type_.startswith(self.LEFT_OUT_PREFIX):
                continue
            var = f"r{i}"
            opts = []
            parent = self.parent[key]
            if parent is not None:
                if parent not in self.var:
                    raise SystemExit(f"bare program: {urn}: parent {parent} not declared before it")
                opts.append(f"parent={self.var[parent]}")
            deps = [self.var[d] for d in self.deps.get(key, []) if d in self.var]
            if deps:
                opts.append(f"depends_on=[{', '.join(deps)}]")
            for option_key, option in (("protect", "protect"), ("retainOnDelete", "retain_on_delete")):
                if res.get("options", {}).get(option_key):
                    opts.append(f"{option}=True")
            opts_src = f"pulumi.ResourceOptions({', '.join(opts)})"
            name = repr(res["name"])
            if type_.startswith("mxinfra:"):
                lines.append(f"{var} = Component({type_!r}, {name}, {opts_src})")
            elif type_ == "random:index/randomPassword:RandomPassword":
                args = ", ".join(f"{_snake(k)}={self._emit(v, res)}" for k, v in res["inputs"].items())
                lines.append(f"{var} = random.RandomPassword({name}, {args}, opts={opts_src})")
            elif type_.startswith("kubernetes:"):
                args = []
                for k, v in res["inputs"].items():
                    if k in ("apiVersion", "kind"):
                        continue  # the class sets them
                    if k == "stringData" and v == "[secret]":
                        args.append(f"string_data={self._string_data(res)}")
                    else:
                        args.append(f"{_snake(k)}={self._emit(v, res)}")
                lines.append(f"{var} = {_k8s_class(type_)}({name}, {', '.join(args)}, opts={opts_src})")
            else:
                raise SystemExit(f"bare program: {urn}: no bare equivalent for type {type_}")
            self.var[key] = var
        return "\n".join(lines) + "\n"


# ---- the state: order, dependencies, and the check that the bare program declares the same -------------
def _export(p: Pulumi, stack: str, show_secrets: bool = False) -> list[dict[str, Any]]:
    args = ["stack", "export"] + (["--show-secrets"] if show_secrets else [])
    return json.loads(p.run(*args, stack=stack).stdout)["deployment"].get("resources", [])


_SECRET_SIG = "4dabf18193072939515e22adb298388d"


def _reveal(value: Any) -> Any:
    """A state value with `--show-secrets` envelopes replaced by their plaintext values."""
    if isinstance(value, dict):
        if value.get(_SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270" and "plaintext" in value:
            return _reveal(json.loads(value["plaintext"]))
        return {k: _reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_reveal(v) for v in value]
    return value


def _normalised(resources: list[dict[str, Any]]) -> dict[str, str]:
    """URN -> canonical JSON of type, parent and inputs, with the random values of this stack (generated
    passwords, the provider's generated Secret names) replaced by the URN that made them."""
    resources = [_reveal(r) for r in resources]
    randoms: dict[str, str] = {}
    for r in resources:
        if r["type"] == "random:index/randomPassword:RandomPassword":
            result, token = r["outputs"]["result"], f"<password of {r['urn'].split('::')[-1]}>"
            randoms[result] = token
            randoms[base64.b64encode(result.encode()).decode()] = token  # a Secret's data holds it so
        elif r["type"] == "kubernetes:core/v1:Secret":
            randoms[r["outputs"]["metadata"]["name"]] = f"<name of {r['urn'].split('::')[-1]}>"
    out = {}
    for r in resources:
        if r["type"].startswith("pulumi:"):
            continue
        text = json.dumps({"type": r["type"], "parent": r.get("parent"), "inputs": r.get("inputs", {})}, sort_keys=True)
        for value, token in randoms.items():
            text = text.replace(value, token)
        out[r["urn"]] = text
    return out


def compare_states(mx: list[dict[str, Any]], bare: list[dict[str, Any]]) -> tuple[int, list[str], list[str]]:
    """(resources compared, URNs only mxinfra has, differences): the bare program must match but for those."""
    a, b = _normalised(mx), _normalised(bare)
    problems = [f"{u}: only in the bare stack" for u in b if u not in a]
    problems += [f"{u}: inputs differ:\n  mxinfra {a[u]}\n  bare    {b[u]}" for u in b if u in a and a[u] != b[u]]
    return len(b), sorted(u for u in a if u not in b), problems


# ---- variants ------------------------------------------------------------------------------------------
def change_summary(stdout: str) -> str:
    """The engine's summary ("~ 2 to update", "+-1 replaced") compacted: "~2 +-1 =17"."""
    part = stdout.split("Resources:", 1)[-1]
    out = []
    for sign, count in re.findall(r"^\s+([+~-]+|\+-)\s*(\d+) (?:to |)(?:create|update|delete|replace|created|updated|deleted|replaced)", part, re.M):
        out.append(f"{sign}{count}")
    same = re.search(r"(\d+) unchanged", part)
    if same:
        out.append(f"={same.group(1)}")
    return " ".join(out) or "?"


class Variant:
    """One project on its own cluster: its CLI, its stack, what was timed."""

    def __init__(self, kind: str, work: Path, bin_dir: Path, cluster: LocalCluster, engine_env: dict[str, str]) -> None:
        self.kind = kind
        self.cluster = cluster
        self.dir = work / kind / "project"
        self.dir.mkdir(parents=True)
        (work / kind / "state").mkdir()
        self.pulumi = Pulumi(bin_dir, self.dir, work / kind / "state", work / kind / "pulumi-home")
        self.pulumi.env.update(engine_env)  # after Pulumi(), which drops the caller's PULUMI_* variables
        self.pulumi.as_identity(cluster.kubeconfig)  # the ambient KUBECONFIG: the default provider, no provider resource
        (self.dir / ".venv").symlink_to(Path(sys.prefix))  # Pulumi.yaml's virtualenv (the dynamic provider's too)
        shutil.copy(ROOT / "Pulumi.yaml", self.dir / "Pulumi.yaml")
        (self.dir / "stacks").mkdir()
        if kind == "bare":
            (self.dir / "__main__.py").write_text("")
        else:
            shutil.copytree(ROOT / "examples", self.dir / "examples")
            (self.dir / "build").mkdir()
            main = NO_ACTIVITY_MAIN if kind == "no-activity" else (ROOT / "__main__.py").read_text()
            (self.dir / "__main__.py").write_text(main)
        self.stack = ""

    def init(self, stack: str, config: dict[str, Any] | None) -> None:
        self.stack = stack
        self.write_config(config or {})
        self.pulumi.run("stack", "init", stack, "--secrets-provider", "passphrase")
        if config is not None:
            for key, plain in SECRETS.items():
                self.pulumi.run("config", "set", "--secret", "--path", key, plain, stack=stack)

    def stack_file(self) -> Path:
        return self.dir / "stacks" / f"Pulumi.{self.stack}.yaml"

    def write_config(self, config: dict[str, Any]) -> None:
        """The stack's plain config replaced, its secure values (and salt) kept."""
        f = self.stack_file()
        doc = yaml.safe_load(f.read_text()) if f.exists() else {}
        doc = doc or {}
        old = doc.get("config") or {}
        new = copy.deepcopy(config)
        # keep what the CLI encrypted: the three secure leaves of mxinfra:kubernetes
        for key in SECRETS:
            path = key.split(":", 1)[1].split(".")
            src, dst = old.get("mxinfra:" + path[0]), new.get("mxinfra:" + path[0])
            for p in path[1:-1]:
                src = (src or {}).get(p)
                dst = (dst or {}).get(p) if dst is not None else None
            if src and path[-1] in src and dst is not None:
                dst[path[-1]] = src[path[-1]]
        doc["config"] = new
        f.write_text(yaml.safe_dump(doc, sort_keys=False))

    def plan(self) -> dict[str, Any]:
        proc = subprocess.run([str(Path(sys.executable).parent / "mxinfra"), "plan", "-s", self.stack, "-C", str(self.dir), "--json"],
                              capture_output=True, text=True, env=self.pulumi.env)
        if proc.returncode != 0:
            raise SystemExit(f"mxinfra plan -s {self.stack} exited {proc.returncode}:\n{proc.stderr}")
        return json.loads(proc.stdout)

    def timed(self, *args: str, trace: Path | None = None) -> tuple[float, float, str]:
        """Wall seconds, CPU seconds of the process tree and the change summary of one `pulumi` command.
        The CPU is a lower bound: it counts what was reaped up the chain (the CLI, the program, the plugins
        it stopped), not a plugin the CLI had to kill after its 5 s grace (init reaps that one)."""
        if trace is not None:
            args = (*args, f"--otel-traces=file://{trace}")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = self.pulumi.run(*args, stack=self.stack)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return wall, cpu, change_summary(proc.stdout)

    def preview(self, trace: Path | None = None) -> tuple[float, float, str]:
        return self.timed("preview", trace=trace)

    def up(self, trace: Path | None = None) -> tuple[float, float, str]:
        return self.timed("up", "--yes", "--skip-preview", trace=trace)


# ---- load ----------------------------------------------------------------------------------------------
def machine_cpu_seconds() -> float:
    """CPU time the whole machine spent busy since boot (/proc/stat: all but idle and iowait), in seconds."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _processes() -> dict[tuple[int, int], tuple[int, int, str]]:
    """(pid, start time) -> (parent pid, CPU ticks used so far, command) of every process (/proc)."""
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                text = f.read()
        except OSError:
            continue
        comm, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        out[(int(entry.name), int(rest[19]))] = (int(rest[1]), int(rest[11]) + int(rest[12]), comm)
    return out


class LoadWatch(threading.Thread):
    """Every 2 s: the 1-minute load average, and the CPU time each process outside this bench's process
    tree used since the last sample (one first seen mid-run counts from its start; one that starts and
    ends between two samples is missed: a lower bound of the other work)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.loads: list[float] = []
        self.other: dict[str, float] = {}  # command -> CPU seconds
        self.halt = threading.Event()
        self.tick = os.sysconf("SC_CLK_TCK")
        self.seen = {key: cpu for key, (_, cpu, _) in _processes().items()}

    def sample(self) -> None:
        procs = _processes()
        children: dict[int, list[int]] = {}
        for (pid, _), (ppid, _, _) in procs.items():
            children.setdefault(ppid, []).append(pid)
        mine, todo = {os.getpid()}, [os.getpid()]
        while todo:
            for c in children.get(todo.pop(), []):
                if c not in mine:
                    mine.add(c)
                    todo.append(c)
        for key, (_, cpu, comm) in procs.items():
            before = self.seen.get(key, 0)
            self.seen[key] = cpu
            if key[0] not in mine and cpu > before:
                self.other[comm] = self.other.get(comm, 0.0) + (cpu - before) / self.tick

    def top(self, count: int = 5) -> str:
        ranked = sorted(self.other.items(), key=lambda kv: -kv[1])[:count]
        return ", ".join(f"{comm} {sec:.0f}" for comm, sec in ranked if sec >= 0.5) or "none"

    def run(self) -> None:
        while not self.halt.wait(2):
            self.loads.append(os.getloadavg()[0])
            self.sample()


# ---- the run -------------------------------------------------------------------------------------------
def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:6.2f}"
    return f"{statistics.median(values):6.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", default="1,5", help="environment counts (default 1,5)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per scenario (default 5)")
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument("--no-split", action="store_true", help="skip the mxinfra-without-activity variant")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (printed)")
    parser.add_argument("--trace", type=Path, metavar="DIR",
                        help="write each timed command's OpenTelemetry trace (pulumi --otel-traces) into DIR")
    parser.add_argument("--engine-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for every variant's CLI (repeatable)")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    counts = [int(x) for x in args.envs.split(",")]
    kinds = ["mxinfra", "bare"] + ([] if args.no_split else ["no-activity"])
    bad = [e for e in args.engine_env if "=" not in e or not e.split("=", 1)[0]]
    if bad:
        parser.error(f"--engine-env expects NAME=VALUE, got {', '.join(map(repr, bad))}")
    engine_env = dict(e.split("=", 1) for e in args.engine_env)

    proc = subprocess.run([str(ROOT / "engine" / "toolchain.sh"), "path"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit("bench_engine: no engine toolchain (run ./dev engine first)")
    bin_dir = Path(proc.stdout.strip())
    load_start = os.getloadavg()
    cpu_start, wall_start = machine_cpu_seconds(), time.monotonic()
    watch = LoadWatch()
    time.sleep(2)
    watch.sample()  # what else is running right now
    busy_start = {k: v for k, v in watch.other.items() if v >= 0.2}
    cores = os.cpu_count() or 1
    started = time.perf_counter()
    print(f"bench_engine: {', '.join(kinds)}; N = {', '.join(map(str, counts))} environments; {rounds} round(s); "
          f"{cores} cores, load average {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f} at start", flush=True)
    if engine_env:
        print(f"  every variant's CLI with {' '.join(f'{k}={v}' for k, v in engine_env.items())}", flush=True)
    if SIGINT_WAS_IGNORED:
        print("  started with SIGINT ignored (a background job): restored for the CLI, or every command would wait 5 s more", flush=True)
    if busy_start:
        print(f"  running besides this bench (CPU % over 2 s): "
              + ", ".join(f"{c} {v / 2 * 100:.0f}%" for c, v in sorted(busy_start.items(), key=lambda kv: -kv[1])), flush=True)

    work = Path(tempfile.mkdtemp(prefix="mxinfra-bench-engine-"))
    clusters: dict[str, LocalCluster] = {}
    # The image registry (tests/registry.py), with its credentials and CA where a user who ran `docker
    # login` has them: every process below (pulumi, the program, mxinfra plan) inherits them.
    registry_bin = registry_binary()
    if registry_bin is None:
        raise SystemExit("bench_engine: the distribution registry is not built (engine/registry.sh build)")
    registry_run = start_registry(registry_bin, work / "registry")
    reg = next(registry_run)
    os.environ.update(logged_in(reg, work))
    push_image(reg, "mendix/runtime-base", [layer_tar(BASE_FILES)], tag="9.24")
    from mxinfra.image import build_image

    def image_of(mda: Path, version: str) -> str:
        """The release's image, as its CI would build it (untimed): the runtime base plus the package."""
        return build_image(f"{reg.host}/mendix/runtime-base:9.24", mda, f"{reg.host}/orders/app:{version}")

    if args.trace:
        args.trace.mkdir(parents=True, exist_ok=True)
        print(f"  --trace: every timed command also exports its spans to {args.trace} (which it times too)", flush=True)

    def trace_file(n: int, r: int, scenario: str, kind: str) -> Path | None:
        if args.trace is None:
            return None
        return args.trace.resolve() / f"n{n}-r{r + 1}-{scenario.replace(' ', '-')}-{kind}.json"

    watch.start()
    results: dict[tuple[int, str, str], list[float]] = {}
    cpus: dict[tuple[int, str, str], list[float]] = {}  # the same commands' CPU seconds
    changes: dict[tuple[int, str, str], str] = {}
    notes: list[str] = []
    try:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(len(kinds)) as pool:
            started_clusters = list(pool.map(lambda k: LocalCluster(bin_dir, work / k / "cluster").start(), kinds))
        for c in started_clusters:
            c.provide_storage()  # a default StorageClass and volumes: every plain environment claims its backups volume
        clusters = dict(zip(kinds, started_clusters))
        print(f"  {len(kinds)} control planes up in {time.perf_counter() - t0:.0f} s", flush=True)

        for n in counts:
            variants = {k: Variant(k, work / f"n{n}", bin_dir, clusters[k], engine_env) for k in kinds}
            stack = f"envs{n}"
            mx = variants["mxinfra"]
            package, page_size = "examples/orders/orders-1.4.2.mda", 25
            image = image_of(ROOT / package, "1.4.2")
            for k, v in variants.items():
                v.init(stack, None if k == "bare" else stack_doc(n, package, page_size, image))

            def set_config() -> None:
                for v in variants.values():
                    if v.kind != "bare":
                        v.write_config(stack_doc(n, package, page_size, image))

            # Baseline: mxinfra first (its state gives the order and dependencies), then the others at once.
            t0 = time.perf_counter()
            mx.pulumi.up(stack)
            state = _export(mx.pulumi, stack)
            order = [urn_key(r["urn"]) for r in state]
            deps = {urn_key(r["urn"]): [urn_key(d) for d in r.get("dependencies") or []] for r in state}

            def generate() -> Generator:
                gen = Generator(mx.plan(), order, deps)
                (variants["bare"].dir / "__main__.py").write_text(gen.source())
                return gen

            gen = generate()
            with ThreadPoolExecutor(len(kinds)) as pool:
                list(pool.map(lambda v: v.pulumi.up(stack), [v for k, v in variants.items() if k != "mxinfra"]))
                # nothing left to do anywhere: the programs are deterministic
                list(pool.map(lambda v: v.pulumi.run("preview", "--expect-no-changes", stack=stack), variants.values()))
            compared, only_mx, problems = compare_states(_export(mx.pulumi, stack, True), _export(variants["bare"].pulumi, stack, True))
            if problems:
                raise SystemExit("the bare program does not declare what mxinfra does:\n" + "\n".join(problems))
            left_types: dict[str, int] = {}
            for u in only_mx:
                t = u.split("::")[-2].split("$")[-1]
                left_types[t] = left_types.get(t, 0) + 1
            print(f"\nN={n}: {len(mx.plan()['resources'])} resources planned; baseline up of every variant in {time.perf_counter() - t0:.0f} s (untimed)")
            print(f"  bare program checked against mxinfra's state: {compared} resources, same type, parent and inputs "
                  f"(generated passwords and Secret names aside); only mxinfra has {len(only_mx)}: "
                  + ", ".join(f"{c} {t}" for t, c in sorted(left_types.items())), flush=True)

            for r in range(rounds):
                order_k = kinds[r % len(kinds):] + kinds[: r % len(kinds)]  # rotate who goes first
                # a release: a new package (new bytes) named by mxinfra:app.package
                version = f"1.4.{3 + r}.{1300 + r}"
                for v in variants.values():
                    if v.kind != "bare":
                        build_mda.build(v.dir / "build" / f"orders-{version}.mda", version)
                package = f"build/orders-{version}.mda"
                image = image_of(mx.dir / package, version)

                def timed_change(change: str) -> None:
                    """The config written, then `preview <change>` and `up <change>` of every variant, in this round's order."""
                    set_config()
                    generate()
                    for op in ("preview", "up"):
                        scenario = f"{op} {change}"
                        for k in order_k:
                            seconds, cpu, summary = getattr(variants[k], op)(trace_file(n, r, scenario, k))
                            results.setdefault((n, scenario, k), []).append(seconds)
                            cpus.setdefault((n, scenario, k), []).append(cpu)
                            changes[(n, scenario, k)] = summary

                timed_change("release")
                # a constant change in every environment
                page_size += 1
                timed_change("constant")
                done = ", ".join(f"{s} " + "/".join(f"{results[(n, s, k)][-1]:.1f}" for k in kinds) for s in SCENARIOS)
                print(f"  round {r + 1}/{rounds} ({'/'.join(kinds)}, s): {done}", flush=True)
            # the bare program still declares what mxinfra does after the changes
            _, _, problems = compare_states(_export(mx.pulumi, stack, True), _export(variants["bare"].pulumi, stack, True))
            if problems:
                notes.append(f"N={n}: after the rounds the bare state differs from mxinfra's: {problems[:3]}")
            if n != counts[-1]:
                # the next N declares the same `acceptance` namespace: remove these (untimed)
                t0 = time.perf_counter()
                with ThreadPoolExecutor(len(kinds)) as pool:
                    list(pool.map(lambda v: v.pulumi.run("destroy", "--yes", "--skip-preview", stack=stack), variants.values()))
                print(f"  stacks of N={n} destroyed in {time.perf_counter() - t0:.0f} s (untimed): the next N declares the same namespaces", flush=True)
    finally:
        watch.halt.set()
        for c in clusters.values():
            c.stop()
        registry_run.close()
        if args.keep:
            print(f"scratch directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    # ---- the report -------------------------------------------------------------------------------------
    print()
    print("Whole `pulumi` process wall time, seconds: median (min-max) of "
          f"{rounds} round(s); ratio = median mxinfra / median bare (target <= 1.20x)")
    head = f"{'N':>2} {'scenario':<17} {'mxinfra':>21} {'bare':>21} {'ratio':>6} {'diff s':>6}"
    if "no-activity" in kinds:
        head += f" {'no-activity':>21} {'ratio':>6} {'activity s':>10}"
    print(head)
    for n in counts:
        for s in SCENARIOS:
            m, b = results.get((n, s, "mxinfra"), []), results.get((n, s, "bare"), [])
            if not m or not b:
                continue
            ratio = statistics.median(m) / statistics.median(b)
            line = f"{n:>2} {s:<17} {fmt(m):>21} {fmt(b):>21} {ratio:>5.2f}x {statistics.median(m) - statistics.median(b):>+6.2f}"
            if "no-activity" in kinds:
                na = results[(n, s, "no-activity")]
                line += f" {fmt(na):>21} {statistics.median(na) / statistics.median(b):>5.2f}x {statistics.median(m) - statistics.median(na):>+10.2f}"
            print(line)
    print()
    print("CPU seconds of each command's process tree (the CLI, the program and every plugin; not the cluster):")
    print(f"{'N':>2} {'scenario':<17} " + " ".join(f"{k:>21}" for k in kinds) + f" {'mxinfra-bare':>12}")
    for n in counts:
        for s in SCENARIOS:
            per = [cpus.get((n, s, k), []) for k in kinds]
            if not all(per):
                continue
            extra = statistics.median(per[0]) - statistics.median(per[1])
            print(f"{n:>2} {s:<17} " + " ".join(f"{fmt(v):>21}" for v in per) + f" {extra:>+12.2f}")
    print()
    print("What the engine reported (last round; ~ update, +- replace, + create, - delete, = unchanged):")
    for n in counts:
        for s in SCENARIOS:
            print(f"{n:>2} {s:<17} " + "   ".join(f"{k}: {changes.get((n, s, k), '-')}" for k in kinds))
    print()
    print("The bare program leaves out mxinfra's own work: reading and hashing the MDA, validating the stack config")
    print("against it, the promotion gate, the stack outputs, and per environment the release intent and activity")
    print("dynamic resources (the activity record's write to the file:// repository, the package upload on a")
    print("deploy, the dynamic provider process). `no-activity` is mxinfra without those two dynamic resources;")
    print("`activity s` = mxinfra - no-activity (medians): the part of the difference they account for.")
    print("ups run with --skip-preview (the preview is timed separately); the StatefulSet rollouts wait on the")
    print("StatusFaker (cluster.py, 0.5 s polls) in every variant alike; the package is the 3.6 KB example MDA.")
    for note in notes:
        print("note:", note)
    watch.sample()
    loads = watch.loads or [os.getloadavg()[0]]
    wall = time.monotonic() - wall_start
    busy, other = machine_cpu_seconds() - cpu_start, sum(watch.other.values())
    print(f"machine: {cores} cores; load average (1 min) {load_start[0]:.2f} at start, during the run median {statistics.median(loads):.2f} "
          f"and max {max(loads):.2f} (this bench's own processes included); total {wall:.0f} s")
    print(f"CPU over the run: {busy:.0f} core-s busy of {wall * cores:.0f} available; processes outside this bench's tree "
          f"at least {other:.0f} core-s (~{other / wall:.2f} cores on average; by command, core-s: {watch.top()})")
    if load_start[0] > 0.5 * cores or other / wall > 0.1 * cores:
        print(f"warning: other work was running on this {cores}-core machine (load {load_start[0]:.2f} at start, ~{other / wall:.2f} cores "
              "used by others during the run): absolute times are inflated and noisier; the variants ran interleaved, "
              "so the ratios are less affected than the seconds")


if __name__ == "__main__":
    main()
