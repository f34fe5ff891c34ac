#!/usr/bin/env bash
# The CNCF distribution registry (github.com/distribution/distribution/v3 cmd/registry), built from its
# Go module for the image tests (tests/registry.py starts it on loopback with TLS and basic auth).
#
#   engine/registry.sh build   build (or reuse) the registry; prints the binary's path last
#   engine/registry.sh path    print the binary of the complete cached build (exit 0), or exit 1
#   engine/registry.sh key     print the cache key
#   engine/registry.sh clean   remove this key's cache entry and stale half-built directories
#
# Built with `go install MODULE/cmd/registry@VERSION`: the module's own go.mod and go.sum decide every
# dependency (it has no `replace` directive, so no wrapper module is needed) and the checksum database
# vouches for them. Output: ${MXINFRA_REGISTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mxinfra/registry}/<key>/bin/registry,
# built in a temporary directory beside it and renamed into place after its marker file `complete` was
# written, like engine/toolchain.sh: a killed build never looks complete.
set -euo pipefail

ENGINE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_ROOT="${MXINFRA_REGISTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mxinfra/registry}"
MODULE=github.com/distribution/distribution/v3
VERSION="${MXINFRA_REGISTRY_VERSION:-v3.1.2}"   # the newest v3.1.x the module proxy here serves

die() { echo "engine/registry.sh: $*" >&2; exit 1; }

key() {
  # The version, the Go release and this script decide the binary.
  { echo "$MODULE@$VERSION"; go env GOVERSION 2>/dev/null || true; cat "$ENGINE_DIR/registry.sh"; } \
    | sha256sum | cut -c1-12
}
KEY="registry-${VERSION#v}-$(key)"
DEST="$CACHE_ROOT/$KEY"

complete_bin() {
  [ -f "$DEST/complete" ] && [ -x "$DEST/bin/registry" ] && echo "$DEST/bin/registry"
}

build() {
  if complete_bin >/dev/null; then complete_bin; return 0; fi
  command -v go >/dev/null || die "Go is not on PATH"
  mkdir -p "$CACHE_ROOT"
  exec 9>"$CACHE_ROOT/.lock-$KEY"
  flock 9   # a concurrent build of the same key waits, then finds it complete
  if complete_bin >/dev/null; then complete_bin; return 0; fi
  for d in "$CACHE_ROOT"/.tmp-"$KEY"-*; do [ -d "$d" ] && rm -rf "$d"; done
  BUILD_TMP="$CACHE_ROOT/.tmp-$KEY-$$"
  local start=$SECONDS
  mkdir -p "$BUILD_TMP/bin"
  trap 'rm -rf "$BUILD_TMP"' EXIT
  echo "building $MODULE/cmd/registry@$VERSION into $BUILD_TMP (then $DEST)" >&2
  # GOFLAGS from the environment could carry -mod=vendor or the like, which `go install pkg@v` refuses.
  (cd / && GOFLAGS=-buildvcs=false CGO_ENABLED=0 GOBIN="$BUILD_TMP/bin" \
     nice -n "${MXINFRA_REGISTRY_NICE:-10}" go install -trimpath -ldflags "-s -w" "$MODULE/cmd/registry@$VERSION")
  "$BUILD_TMP/bin/registry" --version >&2
  { echo "module: $MODULE/cmd/registry@$VERSION"; echo "go: $(go env GOVERSION)"
    echo "build seconds: $((SECONDS - start))"; } > "$BUILD_TMP/MANIFEST"
  echo "$KEY" > "$BUILD_TMP/complete"     # the marker, written last
  rm -rf "$DEST"                          # an incomplete entry of the same key only (see complete_bin)
  mv "$BUILD_TMP" "$DEST"                 # one rename: complete or absent
  trap - EXIT
  echo "registry built in $((SECONDS - start)) s: $DEST" >&2
  complete_bin
}

case "${1:-}" in
  build) build ;;
  path) complete_bin || exit 1 ;;
  key) echo "$KEY" ;;
  clean) rm -rf "$DEST" "$CACHE_ROOT"/.tmp-"$KEY"-* ;;
  *) echo "usage: engine/registry.sh build | path | key | clean" >&2; exit 2 ;;
esac
