#!/usr/bin/env bash
# Does the built toolchain work? Everything in a temporary directory outside the repository; every
# server on loopback, stopped at the end. Exit 0 only when every check passed.
#
#   engine/check.sh [BIN]     BIN defaults to `engine/toolchain.sh path`
#
# 1. `pulumi version` is the CLI's module version; `pulumi login file://` (the local backend).
# 2. A tiny Python project (passphrase secrets, no plugin acquisition, plugins from BIN on PATH):
#    `pulumi up` of a dynamic resource (the SDK's dynamic provider script) and, when the random
#    provider is in BIN, a random.RandomString; then `preview --expect-no-changes` and `destroy`.
# 3. etcd and kube-apiserver on loopback with a self-made CA, serving certificate and token; `/version`
#    answers the pinned Kubernetes version; kube-controller-manager turns a Deployment into pods
#    (pending: there is no node).
set -euo pipefail
ENGINE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$ENGINE_DIR")"
BIN="${1:-$("$ENGINE_DIR/toolchain.sh" path)}" || { echo "no engine toolchain: run ./dev engine first" >&2; exit 2; }
PY="${MXINFRA_PYTHON:-$REPO_DIR/.venv/bin/python}"
[ -x "$PY" ] || { echo "no Python with the pulumi SDK at $PY (run ./dev test once)" >&2; exit 2; }
WORK="$(mktemp -d /tmp/mxinfra-engine-check.XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] && echo "kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT
failed=0
ok() { echo "ok:   $*"; }
bad() { echo "FAIL: $*"; failed=1; }
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

export PATH="$BIN:$PATH" PULUMI_HOME="$WORK/pulumi-home" PULUMI_CONFIG_PASSPHRASE="check-passphrase"
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true PULUMI_SKIP_UPDATE_CHECK=true PULUMI_PYTHON_CMD="$PY"
export PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK=true

# 1. the CLI
want="$(sed -n 's/^pulumi: .*@\(v[^ ]*\).*/\1/p' "$BIN/../MANIFEST")"
got="$(pulumi version)"
[ "$got" = "$want" ] && ok "pulumi version: $got" || bad "pulumi version: $got, want $want"
mkdir -p "$WORK/state"
pulumi login "file://$WORK/state" >/dev/null && ok "pulumi login file://" || bad "pulumi login file://"

# 2. a tiny project
mkdir -p "$WORK/proj"
cat > "$WORK/proj/Pulumi.yaml" <<'EOF'
name: engine-check
runtime: python
EOF
have_random=0; [ -x "$BIN/pulumi-resource-random" ] && have_random=1
cat > "$WORK/proj/__main__.py" <<EOF
import pulumi
from pulumi.dynamic import CreateResult, Resource, ResourceProvider


class Echo(ResourceProvider):
    def create(self, props):
        return CreateResult(id_="echo-" + props["word"], outs={"word": props["word"], "shout": props["word"].upper()})


class Shout(Resource):
    def __init__(self, name, word, opts=None):
        super().__init__(Echo(), name, {"word": word, "shout": None}, opts)


s = Shout("shout", "hello")
pulumi.export("shout", s.shout)
pulumi.export("secret", pulumi.Config().require_secret("token"))
if $have_random:
    import pulumi_random
    r = pulumi_random.RandomString("rnd", length=12, special=False)
    pulumi.export("random_length", r.result.apply(len))
EOF
(
  cd "$WORK/proj"
  pulumi stack init check --secrets-provider passphrase >/dev/null
  pulumi config set --secret token s3cr3t-value >/dev/null
  pulumi up --yes --skip-preview > "$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; exit 1; }
) && ok "pulumi up of a dynamic resource$([ $have_random = 1 ] && echo ' and a random.RandomString')" \
  || bad "pulumi up (log above)"
out="$(cd "$WORK/proj" && pulumi stack output shout 2>&1 || true)"
[ "$out" = "HELLO" ] && ok "dynamic resource output: $out" || bad "dynamic resource output: $out"
if [ $have_random = 1 ]; then
  out="$(cd "$WORK/proj" && pulumi stack output random_length 2>&1 || true)"
  [ "$out" = "12" ] && ok "random.RandomString length: $out" || bad "random.RandomString length: $out"
else
  echo "skip: random.RandomString (no pulumi-resource-random in $BIN; see MANIFEST)"
fi
if (cd "$WORK/proj" && pulumi stack export) | grep -q 's3cr3t-value'; then bad "stack export shows the secret"; else ok "stack export keeps the config secret encrypted"; fi
(cd "$WORK/proj" && pulumi preview --expect-no-changes > "$WORK/preview.log" 2>&1) \
  && ok "second preview: no changes" || { cat "$WORK/preview.log"; bad "second preview has changes"; }
(cd "$WORK/proj" && pulumi destroy --yes --skip-preview > "$WORK/destroy.log" 2>&1) \
  && ok "pulumi destroy" || { cat "$WORK/destroy.log"; bad "pulumi destroy"; }

# 3. etcd + kube-apiserver + kube-controller-manager on loopback
K="$WORK/kube"; mkdir -p "$K"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=mxinfra-check-ca" \
  -keyout "$K/ca.key" -out "$K/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout "$K/apiserver.key" -out "$K/apiserver.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n' > "$K/san.ext"
openssl x509 -req -in "$K/apiserver.csr" -CA "$K/ca.crt" -CAkey "$K/ca.key" -CAcreateserial -days 1 \
  -extfile "$K/san.ext" -out "$K/apiserver.crt" 2>/dev/null
openssl genrsa -out "$K/sa.key" 2048 2>/dev/null
openssl rsa -in "$K/sa.key" -pubout -out "$K/sa.pub" 2>/dev/null
TOKEN="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
echo "$TOKEN,admin,admin,system:masters" > "$K/tokens.csv"
EP="$(free_port)"; EPP="$(free_port)"; AP="$(free_port)"
etcd --name check --data-dir "$K/etcd" --listen-client-urls "http://127.0.0.1:$EP" \
  --advertise-client-urls "http://127.0.0.1:$EP" --listen-peer-urls "http://127.0.0.1:$EPP" \
  --initial-advertise-peer-urls "http://127.0.0.1:$EPP" --initial-cluster "check=http://127.0.0.1:$EPP" \
  > "$K/etcd.log" 2>&1 &
PIDS+=($!)
kube-apiserver --etcd-servers "http://127.0.0.1:$EP" --bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
  --secure-port "$AP" --cert-dir "$K/certs" --tls-cert-file "$K/apiserver.crt" --tls-private-key-file "$K/apiserver.key" \
  --client-ca-file "$K/ca.crt" --token-auth-file "$K/tokens.csv" --authorization-mode RBAC \
  --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$K/sa.pub" \
  --service-account-signing-key-file "$K/sa.key" --service-cluster-ip-range 10.0.0.0/24 \
  > "$K/apiserver.log" 2>&1 &
PIDS+=($!)
api() { curl -sS --max-time 5 --cacert "$K/ca.crt" -H "Authorization: Bearer $TOKEN" "$@"; }
ready=0
for _ in $(seq 1 120); do
  if [ "$(api "https://127.0.0.1:$AP/readyz" 2>/dev/null)" = ok ]; then ready=1; break; fi
  sleep 1
done
if [ $ready = 1 ]; then
  ok "kube-apiserver ready on 127.0.0.1:$AP (etcd on 127.0.0.1:$EP)"
  want="$(sed -n 's/^kube-apiserver.*k8s.io\/kubernetes@\(v[^ ]*\).*/\1/p' "$BIN/../MANIFEST")"
  got="$(api "https://127.0.0.1:$AP/version" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["gitVersion"])')"
  [ "$got" = "$want" ] && ok "/version gitVersion: $got" || bad "/version gitVersion: $got, want $want"
  cat > "$K/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: check, cluster: {server: "https://127.0.0.1:$AP", certificate-authority: "$K/ca.crt"}}]
users: [{name: admin, user: {token: "$TOKEN"}}]
contexts: [{name: check, context: {cluster: check, user: admin}}]
current-context: check
EOF
  got="$(kubectl --kubeconfig "$K/kubeconfig" version -o json | "$PY" -c 'import json,sys; d=json.load(sys.stdin); print(d["clientVersion"]["gitVersion"], d["serverVersion"]["gitVersion"])')"
  [ "$got" = "$want $want" ] && ok "kubectl version (client server): $got" || bad "kubectl version: $got"
  kube-controller-manager --kubeconfig "$K/kubeconfig" --authentication-kubeconfig "$K/kubeconfig" \
    --authorization-kubeconfig "$K/kubeconfig" --bind-address 127.0.0.1 --secure-port "$(free_port)" \
    --leader-elect=false --service-account-private-key-file "$K/sa.key" --root-ca-file "$K/ca.crt" \
    --use-service-account-credentials=false --controllers '*' > "$K/controller-manager.log" 2>&1 &
  PIDS+=($!)
  kubectl --kubeconfig "$K/kubeconfig" create deployment check --image=registry.invalid/none:1 --replicas=2 >/dev/null
  pods=0
  for _ in $(seq 1 60); do
    pods="$(kubectl --kubeconfig "$K/kubeconfig" get pods -l app=check --no-headers 2>/dev/null | grep -c Pending || true)"
    [ "$pods" = 2 ] && break; sleep 1
  done
  [ "$pods" = 2 ] && ok "kube-controller-manager created the Deployment's 2 pods (Pending, no node)" \
    || { tail -20 "$K/controller-manager.log"; bad "controller manager: $pods pending pods, want 2"; }
else
  tail -30 "$K/etcd.log" "$K/apiserver.log"
  bad "kube-apiserver not ready in 120 s"
fi

[ $failed = 0 ] && echo "engine check: all passed" || echo "engine check: FAILED"
exit $failed
