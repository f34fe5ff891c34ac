#!/bin/sh
# Send one backup archive of this environment to another environment's restore Job (restore.sh with
# BACKUP_SOURCE set), which listens for it: run by a Job `mxinfra backup restore --from` makes in this
# (the source) namespace, and by the tests as it is. The pod mounts the backups claim read-only and no
# Secret: it holds nothing but the archive it sends. The receiver checks the size and sha256 sent here.
#
#   BACKUP_DIR     where archives are kept
#   BACKUP_ID      the archive to send: its UTC start time, YYYYmmddTHHMMSSZ
#   BACKUP_TARGET  host:port of the receiving restore Job's pod
#   BACKUP_TOKEN   (sending) the one-time token the receiver expects (refuses any other connection)
#   BACKUP_WAIT    seconds to keep trying to connect while the receiver starts (optional; default 300)
#
# `mxinfra backup download` runs it with BACKUP_SERVE_PORT instead of BACKUP_TARGET: it then serves the
# archive once over HTTP, at /<token>/<id>.tar.gz, to the caller reaching it through the API server's pod
# proxy, and exits (BACKUP_WAIT: seconds to wait for that request; default 900). It holds only the
# token's sha256 (BACKUP_TOKEN_SHA256): whoever may read the pod's spec (an environment's `monitor`) and
# reach its port from a pod of their own must not be able to fetch the archive before the caller does.
set -eu
: "${BACKUP_DIR:?export: BACKUP_DIR is not set}"
[ -n "${BACKUP_TARGET:-}${BACKUP_SERVE_PORT:-}" ] || { echo "export: set BACKUP_TARGET (send) or BACKUP_SERVE_PORT (serve)" >&2; exit 2; }
if [ -n "${BACKUP_SERVE_PORT:-}" ]; then
  : "${BACKUP_TOKEN_SHA256:?export: BACKUP_TOKEN_SHA256 is not set (needed with BACKUP_SERVE_PORT)}"
else
  : "${BACKUP_TOKEN:?export: BACKUP_TOKEN is not set}"
fi
case "${BACKUP_WAIT:-300}" in
  *[!0-9]*|""|0*) echo "export: BACKUP_WAIT must be a whole number of seconds above 0, got '$BACKUP_WAIT'" >&2; exit 2 ;;
esac
id=${BACKUP_ID:-}
case "$id" in
  [0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z) ;;
  *) echo "export: BACKUP_ID must name a backup as YYYYmmddTHHMMSSZ, got '$id'" >&2; exit 2 ;;
esac
archive="$BACKUP_DIR/$id.tar.gz"
[ -f "$archive" ] || { echo "export: no backup $id in $BACKUP_DIR" >&2; exit 2; }
size=$(wc -c < "$archive" | tr -d ' ')
# sha256 by OpenSSL where it works (postgresql-common needs it; SHA instructions: 4x coreutils' here), else sha256sum
sha256=sha256sum
[ "$(printf mx | openssl dgst -sha256 -r 2>/dev/null)" != "d7f890c4f72a3d49b69870b2dc2850c698e7b841eb2dd7cd21e4de551a29f4c4 *stdin" ] || sha256="openssl dgst -sha256 -r"
if [ -n "${BACKUP_SERVE_PORT:-}" ]; then
  # The sha256 is taken beside the serve, as beside a send (below), and logged after it on the line callers
  # have read since before (they read this pod's log once the Job ended and check the bytes they received).
  echo "export: listening on port $BACKUP_SERVE_PORT for $id ($size bytes), hashing with ${sha256%% *} beside"
  sha=$(perl "$(dirname "$0")/export.pl" serve "$BACKUP_SERVE_PORT" "${BACKUP_WAIT:-900}" "$BACKUP_TOKEN_SHA256" "$id" "$size" "$archive" "$sha256") || exit 1
  echo "export: serving $id ($size bytes, sha256 $sha) on port $BACKUP_SERVE_PORT"
  echo "export: served $id"
  exit 0
fi
# The send: export.pl beside this script (perl-base: the postgres images are Debian-based), which says how
# (mxinfra-backup/2, or /1 to a receiver deployed before it).
echo "export: hashing with ${sha256%% *} beside the send"
sha=$(perl "$(dirname "$0")/export.pl" send "$BACKUP_TARGET" "${BACKUP_WAIT:-300}" "$BACKUP_TOKEN" "$id" "$size" "$archive" "$sha256") || exit 1
echo "export: sent $id ($size bytes, sha256 $sha) to $BACKUP_TARGET"
