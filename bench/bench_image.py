"""Benchmark: `verify_image` against a real distribution registry on loopback, by layer size.

    .venv/bin/python bench/bench_image.py [--mb 16,128,512] [--repeat 3]

Starts the registry that `engine/registry.sh build` made (tests/registry.py: TLS, basic auth), pushes
for each size an image whose app layer holds the example app plus one incompressible file of that
size under model/ (the package gets the same file), then times a cold verification (the layer is
downloaded into an empty cache) and a warm one (the cached layer is hashed again and scanned). Prints
the median and minimum seconds, MB/s and the peak of traced Python memory; asserts nothing.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from registry import BASE_FILES, layer_tar, mda_files, push_image, registry_binary, start_registry  # noqa: E402

from mxinfra.imagecheck import verify_image  # noqa: E402
from mxinfra.registry import Credentials  # noqa: E402

EXAMPLE = ROOT / "examples" / "orders" / "orders-1.4.2.mda"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", default="16,128,512")
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
            print(f"{'layer MB':>9} {'cold s (med/min)':>18} {'warm s (med/min)':>18} {'MB/s warm':>10} {'peak MiB':>9}")
            for mb in (int(x) for x in args.mb.split(",")):
                big = tmp / f"big-{mb}.bin"
                with open(big, "wb") as f:
                    for _ in range(mb):
                        f.write(os.urandom(1 << 20))
                package = tmp / f"app-{mb}.mda"
                shutil.copy(EXAMPLE, package)
                with zipfile.ZipFile(package, "a", compression=zipfile.ZIP_STORED) as z:
                    z.write(big, "model/resources/big.bin")

                def files(big: Path = big) -> object:
                    yield from mda_files(EXAMPLE)
                    yield ("opt/mendix/build/model/resources/big.bin", big.read_bytes())

                layer = layer_tar(files(), dest=tmp / f"layer-{mb}.tar.gz")  # type: ignore[arg-type]
                digest = push_image(reg, f"bench/app{mb}", [layer_tar(BASE_FILES), layer])
                ref = f"{reg.host}/bench/app{mb}@{digest}"
                cold, warm, peak = [], [], 0
                for i in range(args.repeat):
                    cache = tmp / f"cache-{mb}-{i}"
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
                print(
                    f"{mb:>9} {statistics.median(cold):>9.2f}/{min(cold):<8.2f} {statistics.median(warm):>9.2f}/{min(warm):<8.2f}"
                    f" {mb / min(warm):>10.0f} {peak / (1 << 20):>9.1f}"
                )
                for p in (big, package, tmp / f"layer-{mb}.tar.gz"):
                    p.unlink()
        finally:
            servers.close()


if __name__ == "__main__":
    main()
