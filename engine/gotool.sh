#!/usr/bin/env bash
# Third-party Go programs the tests run for real, built from their Go modules into a cache outside the
# clone (the module proxy serves them; no release binaries):
#   registry  the CNCF distribution registry, for the image tests (tests/registry.py: TLS, basic auth)
#   rclone    what the Kubernetes backup Jobs run to keep archives in S3 or Azure Blob (scripts/store.sh;
#             the tests run it against moto's S3 server and Azurite)
#
#   engine/gotool.sh build TOOL   build (or reuse) TOOL; prints the binary's path last
#   engine/gotool.sh path TOOL    print the binary of the complete cached build (exit 0), or exit 1
#   engine/gotool.sh key TOOL     print the cache key
#   engine/gotool.sh clean TOOL   remove this key's cache entry and stale half-built directories
#
# Built with `go install PACKAGE@VERSION`: the module's own go.mod and go.sum decide every dependency
# (neither has a `replace` directive, so no wrapper module is needed) and the checksum database vouches
# for them. Output: ${MXINFRA_<TOOL>_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mxinfra/<tool>}/<key>/bin/<tool>,
# built in a temporary directory beside it and renamed into place after its marker file `complete` was
# written, like engine/toolchain.sh: a killed build never looks complete.
set -euo pipefail

ENGINE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
die() { echo "engine/gotool.sh: $*" >&2; exit 1; }

ACTION="${1:-}"; TOOL="${2:-}"
case "$TOOL" in
  registry)
    PACKAGE=github.com/distribution/distribution/v3/cmd/registry
    VERSION="${MXINFRA_REGISTRY_VERSION:-v3.1.2}"   # the newest v3.1.x the module proxy here serves
    LDFLAGS="-s -w"; CHECK=(--version); CACHE_ROOT="${MXINFRA_REGISTRY_CACHE:-}" ;;
  rclone)
    PACKAGE=github.com/rclone/rclone
    VERSION="${MXINFRA_RCLONE_VERSION:-v1.76.0}"    # the one the backup Jobs' default image runs (backups.TRANSFER_IMAGE)
    # without it the binary calls itself v1.76.0-DEV
    LDFLAGS="-s -w -X github.com/rclone/rclone/fs.Version=$VERSION"; CHECK=(version); CACHE_ROOT="${MXINFRA_RCLONE_CACHE:-}" ;;
  *) echo "usage: engine/gotool.sh build|path|key|clean registry|rclone" >&2; exit 2 ;;
esac
CACHE_ROOT="${CACHE_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/mxinfra/$TOOL}"

key() {
  # The package, its version, the Go release and this script decide the binary.
  { echo "$PACKAGE@$VERSION $LDFLAGS"; go env GOVERSION 2>/dev/null || true; cat "$ENGINE_DIR/gotool.sh"; } \
    | sha256sum | cut -c1-12
}
KEY="$TOOL-${VERSION#v}-$(key)"
DEST="$CACHE_ROOT/$KEY"

complete_bin() {
  [ -f "$DEST/complete" ] && [ -x "$DEST/bin/$TOOL" ] && echo "$DEST/bin/$TOOL"
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
  echo "building $PACKAGE@$VERSION into $BUILD_TMP (then $DEST)" >&2
  # GOFLAGS from the environment could carry -mod=vendor or the like, which `go install pkg@v` refuses.
  (cd / && GOFLAGS=-buildvcs=false CGO_ENABLED=0 GOBIN="$BUILD_TMP/bin" \
     nice -n "${MXINFRA_GOTOOL_NICE:-10}" go install -trimpath -ldflags "$LDFLAGS" "$PACKAGE@$VERSION")
  "$BUILD_TMP/bin/$TOOL" "${CHECK[@]}" >&2
  { echo "package: $PACKAGE@$VERSION"; echo "go: $(go env GOVERSION)"
    echo "build seconds: $((SECONDS - start))"; } > "$BUILD_TMP/MANIFEST"
  echo "$KEY" > "$BUILD_TMP/complete"     # the marker, written last
  rm -rf "$DEST"                          # an incomplete entry of the same key only (see complete_bin)
  mv "$BUILD_TMP" "$DEST"                 # one rename: complete or absent
  trap - EXIT
  echo "$TOOL built in $((SECONDS - start)) s: $DEST" >&2
  complete_bin
}

case "$ACTION" in
  build) build ;;
  path) complete_bin || exit 1 ;;
  key) echo "$KEY" ;;
  clean) rm -rf "$DEST" "$CACHE_ROOT"/.tmp-"$KEY"-* ;;
  *) echo "usage: engine/gotool.sh build|path|key|clean registry|rclone" >&2; exit 2 ;;
esac
