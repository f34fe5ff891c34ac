"""Benchmark (issue 20): verifying an image against its package, next to the floor of reading its app layer.

    .venv/bin/python bench/bench_image.py [--base-mb 900] [--app-mb 100] [--repeat 3]

Starts the registry that `engine/registry.sh build` made (tests/registry.py: TLS, basic auth) and pushes
an image of about 1 GB: base layers of incompressible data (`--base-mb` in all, in three layers) and, on
top, the app layer as the Docker buildpack writes it: the example app plus one incompressible file of
`--app-mb` under model/ (the package gets the same file). Then, per repeat:

- floor: the app layer's bytes read from the registry by a plain `requests` session (stream, discard),
  which is what any verification must at least do cold;
- cold: `verify_image` with an empty layer cache (it reads the manifest, the config and the app layer,
  and hashes the package's members);
- warm: `verify_image` again with the cache filled (no request at all: the image is named by digest).

Prints the median and minimum of each, cold/floor, and the peak of traced Python memory; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from registry import BASE_FILES, layer_tar, mda_files, push_image, registry_binary, start_registry  # noqa: E402

from mxinfra.imagecheck import verify_image  # noqa: E402
from mxinfra.registry import Credentials  # noqa: E402

EXAMPLE = ROOT / "examples" / "orders" / "orders-1.4.2.mda"


def _random_file(path: Path, mb: int) -> Path:
    with open(path, "wb") as f:
        for _ in range(mb):
            f.write(os.urandom(1 << 20))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-mb", type=int, default=900)
    ap.add_argument("--app-mb", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    binary = registry_binary()
    if binary is None:
        raise SystemExit("the registry is not built: engine/registry.sh build")
    with tempfile.TemporaryDirectory(prefix="bench-image-") as tmp_name:
        tmp = Path(tmp_name)
        servers = start_registry(binary, tmp / "registry")
        reg = next(servers)
        try:
            creds = Credentials(reg.user, reg.password)
            layers = [layer_tar(BASE_FILES)]
            for i in range(3):
                blob = _random_file(tmp / f"base-{i}.bin", args.base_mb // 3)
                layers.append(layer_tar([(f"opt/base/blob-{i}.bin", blob.read_bytes())], dest=tmp / f"base-{i}.tar.gz"))
                blob.unlink()
            big = _random_file(tmp / "big.bin", args.app_mb)
            package = tmp / "app.mda"
            shutil.copy(EXAMPLE, package)
            with zipfile.ZipFile(package, "a", compression=zipfile.ZIP_STORED) as z:
                z.write(big, "model/resources/big.bin")

            def files() -> Iterator[tuple[str, bytes]]:
                yield from mda_files(EXAMPLE)
                yield ("opt/mendix/build/model/resources/big.bin", big.read_bytes())

            app = layer_tar(files(), dest=tmp / "app.tar.gz")  # type: ignore[arg-type]
            layers.append(app)
            digest = push_image(reg, "bench/app", layers)
            ref = f"{reg.host}/bench/app@{digest}"
            total = sum((b.stat().st_size if isinstance(b, Path) else len(b)) for b, _, _ in layers)
            app_size = app[0].stat().st_size if isinstance(app[0], Path) else len(app[0])
            print(f"image {total / 1e6:.0f} MB in {len(layers)} layers; app layer {app_size / 1e6:.0f} MB (top); package {package.stat().st_size / 1e6:.0f} MB")

            floor, cold, warm, peak = [], [], [], 0
            for i in range(args.repeat):
                with reg.session() as s:
                    t = time.perf_counter()
                    with s.get(f"https://{reg.host}/v2/bench/app/blobs/{app[1]}", stream=True) as r:
                        r.raise_for_status()
                        for _ in r.iter_content(1 << 20):
                            pass
                    floor.append(time.perf_counter() - t)
                cache = tmp / f"cache-{i}"
                t = time.perf_counter()
                verify_image(ref, package, credentials=creds, ca_bundle=reg.ca, cache_dir=cache)
                cold.append(time.perf_counter() - t)
                tracemalloc.start()
                t = time.perf_counter()
                verify_image(ref, package, credentials=creds, ca_bundle=reg.ca, cache_dir=cache)
                warm.append(time.perf_counter() - t)
                peak = max(peak, tracemalloc.get_traced_memory()[1])
                tracemalloc.stop()
                shutil.rmtree(cache)
            print(f"{'':>6} {'median s':>9} {'min s':>7}")
            for name, xs in (("floor", floor), ("cold", cold), ("warm", warm)):
                print(f"{name:>6} {statistics.median(xs):>9.3f} {min(xs):>7.3f}")
            print(f"cold/floor (medians) {statistics.median(cold) / statistics.median(floor):.2f}x; peak traced Python memory (warm) {peak / (1 << 20):.1f} MiB")
        finally:
            servers.close()


if __name__ == "__main__":
    main()
