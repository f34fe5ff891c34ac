#!/usr/bin/env bash
# The real Pulumi engine toolchain, built from Go modules (never downloaded as release binaries).
#
#   engine/toolchain.sh build   build (or reuse) the toolchain; prints its bin directory last
#   engine/toolchain.sh path    print the bin directory of the complete cached toolchain (exit 0), or exit 1
#   engine/toolchain.sh key     print the cache key (versions + the wrapper modules under engine/)
#   engine/toolchain.sh clean   remove this key's cache entry and stale half-built directories
#   engine/toolchain.sh manifest  print what is built from which module version
#
# What is built, and from which wrapper module (each one a go.mod/go.sum of ours under engine/, so that
# the upstream modules' own `replace` directives do not apply):
#   engine/cli                  pulumi                      github.com/pulumi/pulumi/pkg/v3 cmd/pulumi
#   engine/langhost             pulumi-language-python      github.com/pulumi/pulumi/sdk/v3 python/cmd/...
#   (module files, no build)    pulumi-language-python-exec, pulumi-resource-pulumi-python
#                                                           github.com/pulumi/pulumi/sdk/v3 at the SDK's version
#   engine/provider-kubernetes  pulumi-resource-kubernetes  github.com/pulumi/pulumi-kubernetes/provider/v4
#   engine/etcd                 etcd                        go.etcd.io/etcd/server/v3
#   engine/kube                 kube-apiserver, kube-controller-manager, kubectl   k8s.io/kubernetes
# The versions are the `require` lines of those go.mod files plus the ones below; the Go module proxy
# reachable here does not serve every version (see "The real engine" in README.md for what differs from
# the Python lock and why).
#
# Output: ${MXINFRA_ENGINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mxinfra/engine}/<key>/bin, built in a
# temporary directory beside it and renamed into place at the very end, after its marker file `complete`
# was written: a build killed half-way never looks complete. Go's own module and build caches are reused.
# Builds run under `nice -n 10` (MXINFRA_ENGINE_NICE to change) with CGO_ENABLED=0 and -trimpath.
set -euo pipefail

ENGINE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$ENGINE_DIR")"
CACHE_ROOT="${MXINFRA_ENGINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mxinfra/engine}"

# ---- versions: the one place they are written down ------------------------------------------------
# The Python side (what the program's SDK packages are). requirements.lock wins when it pins them.
PY_PULUMI=3.272.0
PY_KUBERNETES=4.34.2
PY_RANDOM=4.21.4
lock_pin() {  # lock_pin NAME: the version requirements.lock pins for NAME, or nothing
  [ -f "$REPO_DIR/requirements.lock" ] || return 0
  sed -n -E "s/^$1==([0-9][^ ;#]*).*/\1/Ip" "$REPO_DIR/requirements.lock" | head -n1
}
v=$(lock_pin pulumi); PY_PULUMI=${v:-$PY_PULUMI}
v=$(lock_pin pulumi-kubernetes); PY_KUBERNETES=${v:-$PY_KUBERNETES}
v=$(lock_pin pulumi-random); PY_RANDOM=${v:-$PY_RANDOM}
# The Go side. The module proxy here refuses (403) github.com/pulumi/pulumi/pkg/v3@v$PY_PULUMI, the
# language host's own module, every github.com/pulumi/pulumi-random module, and serves the Kubernetes
# provider's module at one pseudo-version only; these are the nearest versions it serves.
CLI_VERSION=$(sed -n -E 's/^\s*(require )?github.com\/pulumi\/pulumi\/pkg\/v3 (v[^ ]+).*/\2/p' "$ENGINE_DIR/cli/go.mod" | head -n1)
LANGHOST_VERSION=$(sed -n -E 's/^\s*(require )?github.com\/pulumi\/pulumi\/sdk\/v3 (v[^ ]+).*/\2/p' "$ENGINE_DIR/langhost/go.mod" | head -n1)
SCRIPTS_VERSION="v$PY_PULUMI"          # the exec and dynamic-provider scripts: exactly the SDK's version
K8S_PROVIDER_MODULE_VERSION=$(sed -n -E 's/^\s*(require )?github.com\/pulumi\/pulumi-kubernetes\/provider\/v4 (v[^ ]+).*/\2/p' "$ENGINE_DIR/provider-kubernetes/go.mod" | head -n1)
K8S_PROVIDER_VERSION="4.0.0-${K8S_PROVIDER_MODULE_VERSION##*-}"   # what the plugin reports: 4.0.0-<commit>
ETCD_VERSION=$(sed -n -E 's/^\s*(require )?go.etcd.io\/etcd\/server\/v3 (v[^ ]+).*/\2/p' "$ENGINE_DIR/etcd/go.mod" | head -n1)
KUBE_VERSION=$(sed -n -E 's/^\s*(require )?k8s.io\/kubernetes (v[^ ]+).*/\2/p' "$ENGINE_DIR/kube/go.mod" | head -n1)

die() { echo "engine/toolchain.sh: $*" >&2; exit 1; }
for name in CLI_VERSION LANGHOST_VERSION K8S_PROVIDER_MODULE_VERSION ETCD_VERSION KUBE_VERSION; do
  [ -n "${!name}" ] || die "cannot read $name from the wrapper go.mod files under $ENGINE_DIR"
done

# pulumi-random: the proxy refuses its module, so it is built from the provider source the workplace
# keeps beside the checkout (third-party code, never copied into this repository). This is the one
# place the repository reads the folder beside the checkout; without it the toolchain is built without the random plugin
# and says so (the stacks that generate passwords then cannot run under the engine).
RANDOM_SRC="${MXINFRA_RANDOM_SRC:-$REPO_DIR/../shared/vendor/pulumi-random/provider}"
if [ -f "$RANDOM_SRC/go.mod" ] && [ -d "$RANDOM_SRC/cmd/pulumi-resource-random" ]; then
  RANDOM_SRC="$(cd "$RANDOM_SRC" && pwd)"
  RANDOM_ID=$( { cat "$RANDOM_SRC/go.mod" "$RANDOM_SRC/go.sum"; find "$RANDOM_SRC" -name '*.go' -type f | LC_ALL=C sort | xargs cat; } | sha256sum | cut -c1-12)
else
  RANDOM_SRC=""; RANDOM_ID=none
fi

key() {
  # Everything that decides the binaries: this script, the wrapper modules and the Python pins.
  { echo "py=$PY_PULUMI k8s=$PY_KUBERNETES random=$PY_RANDOM random-src=$RANDOM_ID"
    cat "$ENGINE_DIR/toolchain.sh"
    for m in cli langhost provider-kubernetes etcd kube; do cat "$ENGINE_DIR/$m/go.mod" "$ENGINE_DIR/$m/go.sum"; done
  } | sha256sum | cut -c1-16
}
KEY="pulumi-${CLI_VERSION#v}-k8s-${KUBE_VERSION#v}-$(key)"
DEST="$CACHE_ROOT/$KEY"

complete_bin() {  # the bin directory of the complete cache entry, or fail
  [ -f "$DEST/complete" ] && [ -x "$DEST/bin/pulumi" ] && echo "$DEST/bin"
}

manifest() {
  cat <<EOF
key: $KEY
built: $(date -u +%Y-%m-%dT%H:%M:%SZ)
go: $(go env GOVERSION)
python sdk (lock): pulumi==$PY_PULUMI pulumi-kubernetes==$PY_KUBERNETES pulumi-random==$PY_RANDOM
pulumi: github.com/pulumi/pulumi/pkg/v3@$CLI_VERSION (cmd/pulumi)
pulumi-language-python: github.com/pulumi/pulumi/sdk/v3@$LANGHOST_VERSION (python/cmd/pulumi-language-python)
pulumi-language-python-exec, pulumi-resource-pulumi-python: github.com/pulumi/pulumi/sdk/v3@$SCRIPTS_VERSION (python/cmd, python/dist)
pulumi-analyzer-policy-python: not built (not in sdk/v3@$SCRIPTS_VERSION)
pulumi-resource-kubernetes: github.com/pulumi/pulumi-kubernetes/provider/v4@$K8S_PROVIDER_MODULE_VERSION (reports $K8S_PROVIDER_VERSION)
pulumi-resource-random: $( [ -n "$RANDOM_SRC" ] && echo "provider source $RANDOM_ID (reports $PY_RANDOM), from the workplace's vendor copy" || echo "not built (the proxy refuses github.com/pulumi/pulumi-random; no vendor source beside the checkout)")
etcd: go.etcd.io/etcd/server/v3@$ETCD_VERSION
kube-apiserver, kube-controller-manager, kubectl: k8s.io/kubernetes@$KUBE_VERSION (staging modules at v0.${KUBE_VERSION#v1.})
EOF
}

NICE=(nice -n "${MXINFRA_ENGINE_NICE:-10}")
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly -buildvcs=false"
# Go's build cache for these builds lives beside the toolchain (reused by every key, its size visible);
# MXINFRA_ENGINE_GOCACHE chooses another. Go's module cache is the usual one.
export GOCACHE="${MXINFRA_ENGINE_GOCACHE:-$CACHE_ROOT/go-build}"

module_dir() {  # module_dir PATH@VERSION: the module's directory in Go's module cache (downloaded if needed)
  (cd / && GOFLAGS=-mod=mod go mod download -json "$1") | sed -n -E 's/^\s*"Dir": "(.*)",?$/\1/p'
}

gobuild() {  # gobuild WRAPPER_DIR OUT LDFLAGS PACKAGE
  echo "== $(date -u +%H:%M:%S) building $(basename "$2") ($4)" >&2
  (cd "$1" && "${NICE[@]}" go build -trimpath -ldflags "-s -w $3" -o "$2" "$4")
}

build() {
  if complete_bin >/dev/null; then
    echo "engine toolchain already built: $DEST" >&2
    complete_bin; return 0
  fi
  command -v go >/dev/null || die "Go is not on PATH"
  mkdir -p "$CACHE_ROOT"
  exec 9>"$CACHE_ROOT/.lock-$KEY"
  flock 9   # a second build of the same key waits for the first, then finds it complete
  if complete_bin >/dev/null; then complete_bin; return 0; fi
  # Half-built directories of killed builds (no live process holds their lock any more).
  for d in "$CACHE_ROOT"/.tmp-"$KEY"-*; do [ -d "$d" ] && rm -rf "$d"; done
  BUILD_TMP="$CACHE_ROOT/.tmp-$KEY-$$"
  local tmp="$BUILD_TMP" start=$SECONDS
  mkdir -p "$tmp/bin" "$tmp/work"
  trap 'rm -rf "$BUILD_TMP"' EXIT   # a failed or interrupted build leaves nothing behind
  local bin="$tmp/bin"
  echo "building the engine toolchain into $tmp (then $DEST)" >&2
  manifest | sed 's/^/  /' >&2

  # etcd
  gobuild "$ENGINE_DIR/etcd" "$bin/etcd" "" go.etcd.io/etcd/server/v3

  # The Python language host and the SDK's scripts beside it.
  gobuild "$ENGINE_DIR/langhost" "$bin/pulumi-language-python" \
    "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$LANGHOST_VERSION" \
    github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python
  local sdk; sdk=$(module_dir "github.com/pulumi/pulumi/sdk/v3@$SCRIPTS_VERSION")
  [ -n "$sdk" ] || die "cannot download github.com/pulumi/pulumi/sdk/v3@$SCRIPTS_VERSION"
  install -m 0755 "$sdk/python/cmd/pulumi-language-python-exec" "$bin/"
  install -m 0755 "$sdk/python/dist/pulumi-resource-pulumi-python" "$bin/"
  if [ -f "$sdk/python/dist/pulumi-analyzer-policy-python" ]; then
    install -m 0755 "$sdk/python/dist/pulumi-analyzer-policy-python" "$bin/"
  fi

  # The Kubernetes provider: from a copy of our wrapper module holding the provider's cmd/ package,
  # after its generate step (schema-embed.json, terraform-mapping-embed.json are not in the module zip).
  local prov; prov=$(module_dir "github.com/pulumi/pulumi-kubernetes/provider/v4@$K8S_PROVIDER_MODULE_VERSION")
  [ -n "$prov" ] || die "cannot download the Kubernetes provider module"
  local pk="$tmp/work/provider-kubernetes"
  mkdir -p "$pk/cmd"
  cp "$ENGINE_DIR/provider-kubernetes/go.mod" "$ENGINE_DIR/provider-kubernetes/go.sum" "$pk/"
  cp -R "$prov/cmd/pulumi-resource-kubernetes" "$pk/cmd/"
  chmod -R u+w "$pk/cmd"
  echo "== $(date -u +%H:%M:%S) generating the Kubernetes provider's embedded schema" >&2
  (cd "$pk/cmd/pulumi-resource-kubernetes" && VERSION="$K8S_PROVIDER_VERSION" "${NICE[@]}" go run generate.go)
  gobuild "$pk" "$bin/pulumi-resource-kubernetes" \
    "-X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$K8S_PROVIDER_VERSION" \
    ./cmd/pulumi-resource-kubernetes

  # pulumi-random, from the vendor source (see RANDOM_SRC above): its embedded schema carries the
  # version the Python SDK asks for (what the provider's generate.go writes, without needing pkg/v3).
  if [ -n "$RANDOM_SRC" ]; then
    local pr="$tmp/work/provider-random"
    cp -R "$RANDOM_SRC" "$pr"; chmod -R u+w "$pr"
    python3 - "$pr/cmd/pulumi-resource-random" "$PY_RANDOM" <<'PYEOF'
import json, sys, pathlib
d = pathlib.Path(sys.argv[1]); spec = json.loads((d / "schema.json").read_text())
spec["version"] = sys.argv[2]
(d / "schema-embed.json").write_text(json.dumps(spec))
PYEOF
    gobuild "$pr" "$bin/pulumi-resource-random" \
      "-X github.com/pulumi/pulumi-random/provider/v4/pkg/version.Version=$PY_RANDOM" \
      ./cmd/pulumi-resource-random
  else
    echo "== pulumi-resource-random not built: no provider source at ${MXINFRA_RANDOM_SRC:-../shared/vendor/pulumi-random/provider}" >&2
  fi

  # Kubernetes: the version ldflags hack/lib/version.sh sets (else clients see v0.0.0).
  local kv="${KUBE_VERSION#v}" kflags=""
  local major="${kv%%.*}" minor; minor="${kv#*.}"; minor="${minor%%.*}"
  for pkgv in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    kflags+=" -X $pkgv.gitVersion=$KUBE_VERSION -X $pkgv.gitMajor=$major -X $pkgv.gitMinor=$minor"
    kflags+=" -X $pkgv.gitTreeState=clean"
  done
  for cmd in kube-apiserver kube-controller-manager kubectl; do
    gobuild "$ENGINE_DIR/kube" "$bin/$cmd" "$kflags" "k8s.io/kubernetes/cmd/$cmd"
  done

  # The CLI last (the longest).
  gobuild "$ENGINE_DIR/cli" "$bin/pulumi" \
    "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$CLI_VERSION" \
    github.com/pulumi/pulumi/pkg/v3/cmd/pulumi

  rm -rf "$tmp/work"
  manifest > "$tmp/MANIFEST"
  echo "build seconds: $((SECONDS - start))" >> "$tmp/MANIFEST"
  echo "$KEY" > "$tmp/complete"            # the marker, written last
  rm -rf "$DEST"                           # an incomplete entry of the same key (never a complete one: see above)
  mv "$tmp" "$DEST"                        # one rename: the entry appears complete or not at all
  trap - EXIT
  echo "engine toolchain built in $((SECONDS - start)) s: $DEST ($(du -sh "$DEST" | cut -f1))" >&2
  complete_bin
}

case "${1:-}" in
  build) build ;;
  path) complete_bin || exit 1 ;;
  key) echo "$KEY" ;;
  manifest) manifest ;;
  clean) rm -rf "$DEST" "$CACHE_ROOT"/.tmp-"$KEY"-* ;;   # Go's build cache ($GOCACHE) is kept
  *) echo "usage: engine/toolchain.sh build | path | key | manifest | clean" >&2; exit 2 ;;
esac
