"""The example stacks' secrets, encrypted by the real Pulumi CLI under a public example passphrase.

The stack files under `stacks/` carry `encryptionsalt` and `secure:` values that `pulumi` itself wrote
(`pulumi config set --secret --path`), so `pulumi up` works on them as they are with
`PULUMI_CONFIG_PASSPHRASE=orders-example-passphrase`. The passphrase and the values below are public:
they are examples, not credentials. For a real stack, set your own (`pulumi stack change-secrets-provider`,
then `pulumi config set --secret --path ...` for each key listed here).

Run `python examples/orders/stack_secrets.py` (needs the engine toolchain: `./dev engine`) to write
them again, for example after adding a secret to `VALUES`. Comments and layout of the stack files are
kept: only the `encryptionsalt` line and the `secure:` strings change, and each file is replaced whole.
New salts must then go into `mxinfra.stackfile.EXAMPLE_SALTS` (the plan warns about a stack file that
carries one: it was copied from an example, so its secrets are readable by anyone).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
STACKS = ROOT / "stacks"
EXAMPLE_PASSPHRASE = "orders-example-passphrase"

# stack -> `pulumi config set --path` key -> plaintext (every secret of every example stack)
VALUES: dict[str, dict[str, str]] = {
    "acceptance": {
        "mxinfra:kubernetes.database.url": "postgres://orders:Example-Acceptance-Db-7Kp2@orders-acceptance-db.example.com:5432/orders",
        "mxinfra:kubernetes.storage.s3.accessKeyId": "AKIAEXAMPLEACCEPTANCE",
        "mxinfra:kubernetes.storage.s3.secretAccessKey": "example/Acceptance+S3Secret/Key0123456789ab",
    },
    "production": {
        'mxinfra:environments.production.secretConstants["Encryption.EncryptionKey"]': "ExampleProductionEncryptionKey32",
        "mxinfra:environments.production.adminPassword": "Example-Production-Admin-9Qw4#",
        "mxinfra:kubernetes.database.url": "postgres://orders:Example-Production-Db-3Hv8@orders-production-db.example.com:5432/orders",
        "mxinfra:kubernetes.storage.s3.accessKeyId": "AKIAEXAMPLEPRODUCTION",
        "mxinfra:kubernetes.storage.s3.secretAccessKey": "example/Production+S3Secret/Key9876543210yz",
    },
    "test": {
        "mxinfra:kubernetes.storage.s3.accessKeyId": "example-minio-access",
        "mxinfra:kubernetes.storage.s3.secretAccessKey": "example-minio-secret-key-0123",
    },
    **{
        f"{cloud}-acceptance": {
            'mxinfra:environments.acceptance.secretConstants["Encryption.EncryptionKey"]': "ExampleAcceptanceEncryptionKey32",
        }
        for cloud in ("aws", "azure", "cf")
    },
    **{
        f"{cloud}-production": {
            'mxinfra:environments.production.secretConstants["Encryption.EncryptionKey"]': "ExampleProductionEncryptionKey32",
            "mxinfra:environments.production.license.key": "EXAMPLE-LICENSE-KEY-NOT-VALID-0000",
            "mxinfra:environments.production.adminPassword": "Example-Production-Admin-9Qw4#",
        }
        for cloud in ("aws", "azure", "cf")
    },
}


def config_path(path: list[str | int]) -> str:
    """A YAML path as `pulumi config set --path` writes it: `ns:key.a.b`, `["dotted.key"]`, `[0]`."""
    out = str(path[0])
    for p in path[1:]:
        if isinstance(p, int):
            out += f"[{p}]"
        elif "." in p or "[" in p:
            out += f'["{p}"]'
        else:
            out += f".{p}"
    return out


def secure_leaves(value: object, path: list[str | int] | None = None) -> list[tuple[list[str | int], str]]:
    """Every `{secure: ...}` node of a stack file's `config`, with its path."""
    path = path or []
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return [(path, str(value["secure"]))]
        return [leaf for k, v in value.items() for leaf in secure_leaves(v, [*path, k])]
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in secure_leaves(v, [*path, i])]
    return []


def _pulumi_bin() -> Path:
    proc = subprocess.run([str(ROOT / "engine" / "toolchain.sh"), "path"], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit("stack_secrets: no engine toolchain (run ./dev engine first)")
    return Path(proc.stdout.strip())


def _encrypt(pulumi: Path, stack: str, values: dict[str, str], work: Path) -> tuple[str, dict[str, str]]:
    """A fresh stack in `work` with the example passphrase: its salt and each value's ciphertext."""
    project = work / stack
    (project / "stacks").mkdir(parents=True)
    (project / "Pulumi.yaml").write_text("name: orders\nruntime: python\nstackConfigDir: stacks\n")
    (work / "state").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    env.update(
        PATH=f"{pulumi}{os.pathsep}{env.get('PATH', '')}",
        PULUMI_HOME=str(work / "home"),
        PULUMI_BACKEND_URL=f"file://{work / 'state'}",
        PULUMI_CONFIG_PASSPHRASE=EXAMPLE_PASSPHRASE,
        PULUMI_SKIP_UPDATE_CHECK="true",
        PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true",
    )

    def run(*args: str) -> None:
        subprocess.run([str(pulumi / "pulumi"), *args, "--non-interactive"], cwd=project, env=env, check=True, capture_output=True, text=True)

    run("stack", "init", stack, "--secrets-provider", "passphrase")
    for key, plain in values.items():
        run("config", "set", "--secret", "--path", key, plain, "--stack", stack)
    doc = yaml.safe_load((project / "stacks" / f"Pulumi.{stack}.yaml").read_text())
    return doc["encryptionsalt"], {config_path(p): s for p, s in secure_leaves(doc["config"])}


def rewrite(stack_file: Path, salt: str, ciphertexts: dict[str, str]) -> str:
    """The stack file's text with `salt` and the new ciphertexts, comments and layout kept."""
    text = stack_file.read_text()
    doc = yaml.safe_load(text)
    old = {config_path(p): s for p, s in secure_leaves(doc["config"])}
    if set(old) != set(ciphertexts):
        raise SystemExit(f"{stack_file}: secure keys {sorted(old)} differ from VALUES {sorted(ciphertexts)}")
    for key, before in old.items():
        pattern = re.compile(rf"(secure: ){re.escape(before)}$", re.M)
        if len(pattern.findall(text)) != 1:
            raise SystemExit(f"{stack_file}: {key}: its secure value is not unique in the file")
        text = pattern.sub(lambda m, new=ciphertexts[key]: m.group(1) + new, text)
    salt_line = f"encryptionsalt: {salt}\n"
    if re.search(r"^encryptionsalt: .*$", text, re.M):
        return re.sub(r"^encryptionsalt: .*\n", salt_line, text, flags=re.M)
    return text.replace("\nconfig:\n", "\n" + salt_line + "config:\n", 1) if not text.startswith("config:") else salt_line + text


def main() -> None:
    """Encrypt every example stack's secrets with the real CLI and write the stack files."""
    pulumi = _pulumi_bin()
    with tempfile.TemporaryDirectory(prefix="mxinfra-stack-secrets-") as tmp:
        written = {}
        for stack, values in sorted(VALUES.items()):
            salt, ciphertexts = _encrypt(pulumi, stack, values, Path(tmp))
            written[stack] = rewrite(STACKS / f"Pulumi.{stack}.yaml", salt, ciphertexts)
        for stack, text in written.items():  # all computed first: nothing half-written
            target = STACKS / f"Pulumi.{stack}.yaml"
            part = target.with_suffix(".yaml.part")
            part.write_text(text)
            os.replace(part, target)
            print(f"wrote {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
