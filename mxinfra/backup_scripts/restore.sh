#!/bin/sh
# Restore one backup archive (backup.sh's format) over the environment's database and file store: run by
# a Job made from the environment's suspended restore CronJob, and by the tests as it is.
#
#   DATABASE_URL   libpq URI of the environment's database
#   BACKUP_DIR     where archives are kept
#   BACKUP_ID      the archive to restore: its UTC start time, YYYYmmddTHHMMSSZ
#   FILES_DIR      the file store to replace (optional: absent when the environment keeps no files)
#   FILES_LAYOUT   `keys` when FILES_DIR is a copy of an object store (S3, Azure), which store.sh copies
#                  back: a file the archive keeps at tree/xx/yy/<name> (Mendix Cloud's layout) is written
#                  as <name><FILES_SUFFIX>, its key (mxinfra.backup_archive.store_key decides the same);
#                  otherwise FILES_DIR is the runtime's local file store, which has tree/'s layout
#   FILES_SUFFIX   (with keys) the key suffix the runtime gives its objects
#   BACKUP_SOURCE  another environment whose archive BACKUP_ID is restored (optional): it is first
#                  received from that environment's export Job (export.sh) on BACKUP_PORT, checked
#                  (the token, size, sha256) and kept as $BACKUP_DIR/from-<source>/<id>.tar.gz (only
#                  the newest copy per source: retention and `mxinfra backup list` see none of them)
#   BACKUP_PORT    the port to receive on (with BACKUP_SOURCE)
#   BACKUP_TOKEN_SHA256  the sha256 of the one-time token the sender presents (with BACKUP_SOURCE): the
#                  token itself is never in this pod's spec, which an environment's `monitor` reads; with it,
#                  a pod of theirs that reaches the port could send its own archive before the real sender
#   BACKUP_WAIT    seconds to wait for the archive to arrive (optional; default 900)
#   BACKUP_RECEIVE `http` (with BACKUP_SOURCE): receive the archive as one HTTP PUT at
#                  /<token>/<sha256>/<id>.tar.gz instead, from `mxinfra backup restore --archive`
#                  through the API server's pod proxy (an archive from this machine: any target's download)
#   BACKUP_SHA256  (without BACKUP_SOURCE) the archive in BACKUP_DIR came from outside, through a bucket
#                  (AWS: `mxinfra backup restore --archive` uploaded it, store.sh fetched it): its sha256
#                  must be this, checked before anything changes, and it is judged as an archive received
#                  over HTTP is (below)
#   RESTORE_ALONE_WAIT  seconds to wait for every other session of the database's user to end before restoring
#                  (optional: the app was stopped first; see below)
#   RESTORE_SETTLE_WAIT  seconds to ask what became of the restore's transaction when psql failed (default 300)
#   RESTORE_CLEAN_SQL  the text of clean.sql, where no file can be put beside this script (a Fargate task
#                  runs it inline); otherwise clean.sql is read from this script's directory
set -eu
umask 077
# Exit 3: the database was restored, the files were not; 4: the database may or may not have been (the
# callers record both apart). A 3 or 4 before the database step (a command's status under set -e, perl's
# die: errno's) is a 1; any failure during that step or after a 4 is a 4, after a restored database a 3.
db_restored=
db_rc=
trap 'rc=$?
if [ "$rc" != 0 ]; then
  case "$db_rc" in running|4) exit 4 ;; 0) [ "$rc" = 3 ] || exit 3 ;; esac
fi
if { [ "$rc" = 3 ] && [ "$db_restored" != 1 ]; } || { [ "$rc" = 4 ] && [ "$db_rc" != 4 ]; }; then exit 1; fi' EXIT
: "${DATABASE_URL:?restore: DATABASE_URL is not set}"
: "${BACKUP_DIR:?restore: BACKUP_DIR is not set}"
RESTORE_SETTLE_WAIT=${RESTORE_SETTLE_WAIT:-300}
# sha256 by OpenSSL where it works (postgresql-common needs it; SHA instructions: 4x coreutils' here), else sha256sum
sha256=sha256sum
[ "$(printf mx | openssl dgst -sha256 -r 2>/dev/null)" != "d7f890c4f72a3d49b69870b2dc2850c698e7b841eb2dd7cd21e4de551a29f4c4 *stdin" ] || sha256="openssl dgst -sha256 -r"
case "$RESTORE_SETTLE_WAIT" in
  *[!0-9]*|""|0?*) echo "restore: RESTORE_SETTLE_WAIT must be a number of seconds (no leading zero), got '$RESTORE_SETTLE_WAIT'" >&2; exit 2 ;;
esac
case "${RESTORE_ALONE_WAIT:-0}" in
  *[!0-9]*) echo "restore: RESTORE_ALONE_WAIT must be a number of seconds, got '$RESTORE_ALONE_WAIT'" >&2; exit 2 ;;
esac
id=${BACKUP_ID:-}
case "$id" in
  [0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z) ;;
  *) echo "restore: BACKUP_ID must name a backup as YYYYmmddTHHMMSSZ, got '$id'" >&2; exit 2 ;;
esac
archive="$BACKUP_DIR/$id.tar.gz"
if [ -n "${BACKUP_SOURCE:-}" ]; then
  case "$BACKUP_SOURCE" in
    *[!a-z0-9-]*) echo "restore: BACKUP_SOURCE must be an environment name (a-z, 0-9, -), got '$BACKUP_SOURCE'" >&2; exit 2 ;;
  esac
  : "${BACKUP_PORT:?restore: BACKUP_PORT is not set (needed with BACKUP_SOURCE)}"
  : "${BACKUP_TOKEN_SHA256:?restore: BACKUP_TOKEN_SHA256 is not set (needed with BACKUP_SOURCE)}"
  copies="$BACKUP_DIR/from-$BACKUP_SOURCE"
  # an archive from the caller's machine is kept apart from every environment's copies
  [ "${BACKUP_RECEIVE:-}" != http ] || copies="$BACKUP_DIR/uploaded"
  rm -rf "$copies"
  mkdir -p "$copies"
  case "${BACKUP_WAIT:-900}" in
    *[!0-9]*|""|0*) echo "restore: BACKUP_WAIT must be a whole number of seconds above 0, got '$BACKUP_WAIT'" >&2; exit 2 ;;
  esac
  # The receiver: receive.pl beside this script (perl-base: the postgres images are Debian-based). In the
  # background, so that a SIGTERM to this shell (the pod's first process, as a Job is deleted) reaches it and
  # it removes what it wrote; a SIGTERM ends the first wait early.
  perl "$(dirname "$0")/receive.pl" "${BACKUP_RECEIVE:-tcp}" "$BACKUP_PORT" "$BACKUP_TOKEN_SHA256" "$id" "$copies/$id.tar.gz" "${BACKUP_WAIT:-900}" "$sha256" &
  receiver=$!
  trap 'kill -TERM "$receiver" 2>/dev/null || :' TERM
  received=0
  wait "$receiver" || received=$?
  [ "$received" -le 128 ] || { wait "$receiver" || :; received=1; }
  trap - TERM
  [ "$received" = 0 ] || exit 1
  archive="$copies/$id.tar.gz"
fi
[ -f "$archive" ] || { echo "restore: no backup $id in $BACKUP_DIR" >&2; exit 2; }
# an archive from outside the environment: one from this machine over HTTP (above), one another
# environment sent, or one a caller uploaded, whose sha256 the caller vouched for
outside=
[ "${BACKUP_RECEIVE:-}" != http ] || outside=1
# or one another environment's export sent (restore --from): its holders could have written it
[ -z "${BACKUP_SOURCE:-}" ] || outside=1
# set at all, even empty, it must be a sha256: an empty value never makes an outside archive a trusted one
if [ -z "${BACKUP_SOURCE:-}" ] && [ -n "${BACKUP_SHA256+set}" ]; then
  case "$BACKUP_SHA256" in
    *[!0-9a-f]*) digits= ;;
    *) digits=${#BACKUP_SHA256} ;;
  esac
  [ "$digits" = 64 ] || { echo "restore: BACKUP_SHA256 must be 64 lowercase hex digits, got '$BACKUP_SHA256'" >&2; exit 2; }
  got=$($sha256 "$archive")
  got=${got%% *}
  if [ "$got" != "$BACKUP_SHA256" ]; then
    echo "restore: $id has sha256 $got, not $BACKUP_SHA256 (the archive the caller checked): nothing was restored" >&2
    exit 1
  fi
  echo "restore: $id has the sha256 the caller checked ($got)"
  outside=1
fi

# Both cores at once: the dump streams into pg_restore while tree/ is unpacked in the background into a
# staging directory inside the file store (moving it in is a rename), moved in only once the database is
# restored: a failed database step leaves the files as they were. One transaction: a failed restore leaves
# the database as it was; a dump cut short fails pg_restore.
# Our own archives are inflated by zlib through zstd where it reads gzip (the postgres images carry it):
# GNU gzip inflates at a tenth of zlib's speed; zstd checks each member's CRC-32 and length as gzip does.
# An archive from outside (BACKUP_RECEIVE=http, BACKUP_SHA256) always goes through GNU gzip: zstd also
# takes xz, lz4 and zstd frames, and refuses zeros after the last member, which gzip and the caller accept.
gz=gzip
if [ -z "$outside" ] && [ "$(printf mx | gzip -c | zstd -qdc 2>/dev/null)" = mx ]; then
  gz="zstd -q"
fi
echo "restore: inflating with ${gz%% *}"
files_pid=
staging=
from=
dump=
FILES_DIR=${FILES_DIR:-}
FILES_DIR=${FILES_DIR%/}
# tar writes each file of an object store copy under its key as it unpacks it (no second pass)
keys=
if [ "${FILES_LAYOUT:-}" = keys ]; then
  case "${FILES_SUFFIX:-}" in
    *[!A-Za-z0-9._-]*) echo "restore: FILES_SUFFIX may hold letters, digits and . _ - only, got '$FILES_SUFFIX'" >&2; exit 2 ;;
  esac
  # tree/xx/yy/<name> as mxinfra.backup_archive.store_key reads it (tar in the C locale: a character is a byte)
  c="[A-Za-z0-9._-]" d="[A-Za-z0-9_-]"
  keys="s,^tree/\($d$c\|$c$d\)/\($d$c\|$c$d\)/\(\1\2[^/]*\)\$,tree/\3${FILES_SUFFIX:-},"
fi
if [ -n "$outside" ]; then
  # An archive from outside the environment (`mxinfra backup restore --archive`): the caller judged it with
  # another tar reader, and tar readers can disagree on a crafted header. So GNU tar alone decides its
  # names here, writing the whole of it into a directory of its own (beside the files: moving them in is
  # a rename), and what it wrote is judged on disk before anything is restored: db/db.backup, plain files
  # and directories under tree/, nothing else (no link, no device, no hard link, nothing beside them).
  staging="${FILES_DIR:-${copies:-$BACKUP_DIR}}/.mxinfra-upload-$id"
  rm -rf "$staging"
  # (a scratch copy of an object store may not exist yet: a task's fresh volume)
  mkdir -p "${staging%/*}"
  mkdir "$staging"
  if ! LC_ALL=C tar -xzf "$archive" -C "$staging" --keep-old-files --no-same-owner --no-same-permissions ${keys:+--transform="$keys"}; then
    rm -rf "$staging"
    echo "restore: $id could not be unpacked (see above): nothing was restored" >&2
    exit 1
  fi
  # the archive's modes are not ours: a directory it made read-only could not be emptied, nor written by the
  # runtime later
  chmod -R u+rwX "$staging"
  odd=$(find "$staging" -mindepth 1 \( ! -type f ! -type d -o -type f -links +1 \) | head -n 3)
  beside=$(find "$staging" -mindepth 1 -maxdepth 1 ! -name db ! -name tree ! \( -name .metadata -type f \) | head -n 3)
  [ ! -d "$staging/db" ] || beside="$beside$(find "$staging/db" -mindepth 1 ! -path "$staging/db/db.backup" | head -n 3)"
  if [ -n "$odd$beside" ] || [ ! -f "$staging/db/db.backup" ] || { [ -e "$staging/tree" ] && [ ! -d "$staging/tree" ]; }; then
    echo "restore: $id is not a backup archive (only .metadata, db/db.backup and plain files under tree/): ${odd}${beside}: nothing was restored" >&2
    rm -rf "$staging"
    exit 1
  fi
  mkdir -p "$staging/tree"
  dump="$staging/db/db.backup"
  [ -z "$FILES_DIR" ] || from="$staging/tree"
elif [ -n "${FILES_DIR:-}" ]; then
  staging="$FILES_DIR/.mxinfra-restore-$id"
  from=$staging/tree
  rm -rf "$staging"
  mkdir "$staging" "$from"
  # backup.sh's last gzip member says where tree/ starts (see there); an archive without it, or one whose
  # offset does not land on a gzip member, is read from its start.
  size=$(wc -c < "$archive")
  offset=$(tail -c 64 "$archive" | { dd bs=1 skip=10 count=40 2>/dev/null || true; })
  case "$offset" in
    # 20 digits, the first two 0 (below 10^18: shell arithmetic holds it), leading zeros dropped
    mxinfra-tree-offset=00[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9])
      offset=${offset#mxinfra-tree-offset=}
      while [ "${offset#0}" != "$offset" ]; do offset=${offset#0}; done
      offset=${offset:-0} ;;
    *) offset=0 ;;
  esac
  # the offset is trusted only where a gzip member starts whose tar begins with tree/
  [ "$offset" -gt 0 ] && [ "$offset" -lt "$size" ] && [ "$(tail -c +$((offset + 1)) "$archive" | { $gz -dc 2>/dev/null || true; } | head -c 4)" = tree ] || offset=0
  # dd moves the shared read position. Not tar -I, which copies a standard input through one more tar, 10 KiB
  # at a time. The job is tar (killing it stops the inflater: SIGPIPE); the inflater's status goes to a file.
  # --ignore-zeros: tar reads to the end (past a tar's end), so the inflater checks every member's CRC-32.
  { dd iflag=skip_bytes skip="$offset" count=0 status=none && $gz -dc && r=0 || r=$?; echo $r > "$staging/inflated"; } < "$archive" \
    | LC_ALL=C tar -x --ignore-zeros -C "$from" --keep-old-files ${keys:+--transform="$keys"} --strip-components=1 tree &
  files_pid=$!
fi
# The database, as mxinfra.backup_archive restores one on every target: pg_restore --single-transaction's
# SQL (its COMMIT written only once it read the whole dump), run by psql. Its opening passes through
# `opening` (backup_archive.Opening): first \restrict with our key (a dump's header fields can write a
# \restrict line, never this key), after which psql refuses meta-commands (pg_restore of PostgreSQL 17.6,
# 16.10, 15.14, 14.19, 13.22 and newer: a crafted dump must not reach \!, which runs a shell); then BEGIN;
# the probe (backup_archive.transaction_probe: the transaction's id, backend and the server's run); the
# settings (transaction_timeout made conditional: servers before 17 lack it); clean.sql, in that
# transaction. Each step's status comes back on fd 3, the probe's line on fd 4: success is all three. A
# failure asks the server what became of that transaction (`settled`): psql may have failed after COMMIT.
server_run="pg_catalog.concat(pg_catalog.date_part('epoch', pg_catalog.pg_postmaster_start_time()), '/', (SELECT pg_catalog.date_part('epoch', b.stats_reset) FROM pg_catalog.pg_stat_bgwriter b))"
opening() {
  state=start
  while IFS= read -r line; do
    case "$state:$line" in
      "start:\\restrict $key") state=restricted ;;
      'settings:SET transaction_timeout = 0;') line="SELECT pg_catalog.set_config('transaction_timeout', '0', false) WHERE pg_catalog.current_setting('server_version_num')::int >= 170000;" ;;
      start:|start:--*|restricted:|restricted:--*|settings:|settings:--*|'settings:SET '*|'settings:SELECT pg_catalog.set_config('*) ;;
      start:*) printf '%s\n' "restore: $(pg_restore --version) did not open its output with the \\restrict key it was given, which keeps a dump's text from running psql's meta-commands: use the client tools of PostgreSQL 17.6, 16.10, 15.14, 14.19, 13.22 or newer" >&2; return 1 ;;
      'restricted:BEGIN;') state=settings; line="$line
SELECT pg_catalog.concat(pg_catalog.concat_ws(' ', 'mxinfra-transaction $key'::pg_catalog.text, pg_catalog.txid_current(), pg_catalog.pg_backend_pid(), (SELECT pg_catalog.date_part('epoch', s.backend_start) FROM pg_catalog.pg_stat_activity s WHERE s.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()), $server_run), pg_catalog.chr(10), pg_catalog.repeat('#', 1048576));" ;;
      restricted:*) echo "restore: pg_restore --single-transaction did not begin its output with BEGIN" >&2; return 1 ;;
      settings:*) { if [ -n "${RESTORE_CLEAN_SQL:-}" ]; then printf '%s\n' "$RESTORE_CLEAN_SQL"; else cat "$(dirname "$0")/clean.sql"; fi; } && printf '%s\n' "$line" && cat; return ;;
    esac
    printf '%s\n' "$line"
  done
  return 1
}
restore_database() {
  # a key of our own: no dump can write it, and a pg_restore too old to restrict has no such option
  if ! pg_restore --help | grep -q -- --restrict-key; then
    printf '%s\n' "restore: $(pg_restore --version) has no --restrict-key, so its output cannot keep a dump's text from running psql's meta-commands: use the client tools of PostgreSQL 17.6, 16.10, 15.14, 14.19, 13.22 or newer" >&2
    return 1
  fi
  key=$(od -v -An -N32 -tx1 /dev/urandom | tr -d ' \n')
  statuses=$( { { { pg_restore --clean --if-exists --no-owner --no-privileges --single-transaction --exit-on-error --restrict-key="$key" --file=- "$@"; echo "pg_restore $?" >&3; } \
        | { opening; echo "opening $?" >&3; } \
      | psql --no-psqlrc --quiet --tuples-only --no-align --output=/dev/fd/4 --set=ON_ERROR_STOP=1 --dbname="$DATABASE_URL" >&2; echo "psql $?" >&3; } 4>&1 \
    | { sed -n "s/^mxinfra-transaction $key \([0-9][0-9]* [0-9][0-9]* [^ ][^ ]* [^ ][^ ]*\)\$/probe \1/p"; echo "scanner $?"; } >&3; } 3>&1 )
  failed=
  for step in "pg_restore 0" "opening 0" "psql 0"; do
    case "$statuses" in *"$step"*) ;; *) failed=1 ;; esac
  done
  [ -n "$failed" ] || return 0
  probe=$(printf '%s\n' "$statuses" | sed -n 's/^probe //p' | head -n 1)
  if [ -z "$probe" ]; then
    # no probe printed: psql never got past the transaction's first statement, so nothing of it committed
    # (unless the scan itself failed, which may have lost the line)
    case "$statuses" in *"scanner 0"*) return 1 ;; esac
    echo "restore: scanning psql's output for its transaction's id failed: whether that transaction committed is not known" >&2
    return 4
  fi
  # shellcheck disable=SC2086 # four words: the txid, the backend's pid and start, the server's run
  settled $probe
}
# 0: the server says transaction $1 (backend $2 started at $3, the server's run $4) committed; 1: it did
# not; 4: it cannot say, or did not within RESTORE_SETTLE_WAIT seconds. 'in progress': its client is gone,
# so its backend is ended. Each question at most 30 s, its errors apart from its answer.
settled() {
  until=$(( $(date +%s) + RESTORE_SETTLE_WAIT ))
  while :; do
    said=$( { timeout 30 psql --no-psqlrc --quiet --tuples-only --no-align --dbname="$DATABASE_URL" \
      --command="BEGIN; SET LOCAL search_path = pg_catalog; SELECT concat_ws(' ', CASE WHEN $1 >= txid_current() THEN 'unassigned' ELSE txid_status($1) END, $server_run)" \
      2>&1 1>&5 5>&- | sed 's/^/error: /'; } 5>&1 )
    answer=$(printf '%s\n' "$said" | grep -v '^error: ' | tail -n 1)
    # unassigned: a crash lost the id, so it never committed; another run's 'committed' may be another
    # transaction's under the lost id
    case "$answer" in
      "unassigned "*) return 1 ;;
      "committed $4") echo "restore: psql failed (see above), but the server says transaction $1 committed: the database was restored" >&2; return 0 ;;
      "committed "*) echo "restore: the server restarted since transaction $1 began (then at $4, now at ${answer#committed }): its id may have gone to another transaction, so its 'committed' does not say whether the restore did" >&2; return 4 ;;
      "aborted "*) return 1 ;;
      "in progress "*)
        ended=$(timeout 30 psql --no-psqlrc --quiet --tuples-only --no-align --dbname="$DATABASE_URL" \
          --command="SET search_path = pg_catalog; SELECT pg_terminate_backend(a.pid) FROM pg_stat_activity a WHERE a.pid = $2 AND a.backend_xid::text = '$(($1 % 4294967296))' AND pg_catalog.date_part('epoch', a.backend_start)::text = '$3'" 2>/dev/null) || ended=
        [ "$ended" != t ] || echo "restore: transaction $1 was still open with its client gone: its backend $2 was ended" ;;
    esac
    if [ "$(date +%s)" -ge "$until" ]; then
      echo "restore: the server did not say whether transaction $1 committed within ${RESTORE_SETTLE_WAIT}s (its last answer: $(printf '%s' "$said" | tr '\n' ' '))" >&2
      return 4
    fi
    sleep 2
  done
}
# RESTORE_ALONE_WAIT (seconds): restore only once no other session of this user (the app's: every target
# restores as the user the app signs in as) is connected to the database (the app's stopping tasks or pods,
# a running pg_dump), waiting that long for them to end; else nothing is restored. Where the caller stopped
# the app first (AWS, Kubernetes), so no instance still writing takes its part of the database back. Other
# users' sessions (a monitoring agent) do not hold the restore back.
if [ -n "${RESTORE_ALONE_WAIT:-}" ]; then
  # before anything changed: the unpacking stopped and its staging removed
  nothing_restored() {
    echo "restore: $1: nothing was restored" >&2
    [ -z "$files_pid" ] || { kill "$files_pid" 2>/dev/null || true; wait "$files_pid" 2>/dev/null || true; wait; }
    [ -z "$staging" ] || rm -rf "$staging" || true
    exit 1
  }
  waited=0
  while :; do
    # clients only: autovacuum and parallel workers yield to the restore's locks (a session the role may not
    # see the details of shows no backend_type; the login user, session_user, is what the app signs in as)
    others=$(psql --no-psqlrc --quiet --tuples-only --no-align --dbname="$DATABASE_URL" \
      --command="SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE datname = pg_catalog.current_database() AND pid <> pg_catalog.pg_backend_pid() AND (backend_type = 'client backend' OR backend_type IS NULL) AND usename = session_user") \
      || nothing_restored "cannot read the database's sessions (see above)"
    [ "$others" = 0 ] && break
    [ "$waited" -lt "$RESTORE_ALONE_WAIT" ] || nothing_restored "$others other session(s) of the database's user still connected after ${waited}s (an instance of the app, a pg_dump?)"
    echo "restore: waiting for $others other session(s) of the database to end"
    sleep 5
    waited=$((waited + 5))
  done
fi
# (the EXIT trap: a shell that dies while this runs may have committed)
db_rc=running
if [ -n "$dump" ]; then
  restore_database "$dump" && db_rc=0 || db_rc=$?
else
  tar -I "$gz" -xOf "$archive" --occurrence=1 db/db.backup | restore_database && db_rc=0 || db_rc=$?
fi
# restore_database says 0, 1 (nothing committed) or 4; anything else (a subshell killed, a shell's own
# failure) may have come after the COMMIT
case "$db_rc" in 0|1|4) ;; *) db_rc=4 ;; esac
db_ok=1
[ "$db_rc" = 0 ] || db_ok=0
files_ok=1
# (a bare wait: some shells' wait for a pipe's pid waits for its last command only)
if [ -n "$files_pid" ]; then wait "$files_pid" || files_ok=0; wait; [ "$(cat "$staging/inflated")" = 0 ] || files_ok=0; fi
if [ "$db_ok" = 1 ] && [ "$files_ok" = 1 ] && [ -n "$from" ]; then
  find "$FILES_DIR" -mindepth 1 -maxdepth 1 ! -path "$staging" -exec rm -rf {} + \
    && find "$from" -mindepth 1 -maxdepth 1 -exec mv -t "$FILES_DIR" {} + \
    && [ -z "$(ls -A "$from")" ] || files_ok=0
fi
[ "$db_ok" = 1 ] && db_restored=1
# left only by a failure (the store keeps what it had): never silently, as it may hold a dump
[ -z "$staging" ] || rm -rf "$staging" || echo "restore: warning: could not remove $staging (see above): remove it by hand" >&2
# 4: the transaction may have committed; the files were not touched either way
[ "$db_rc" != 4 ] || { echo "restore: the database restore of $id failed (see above) and may or may not have committed: check the database; the files are as they were" >&2; exit 4; }
[ "$db_ok" = 1 ] || { echo "restore: the database restore of $id failed (see above): the database and the files are as they were" >&2; exit 1; }
# 3, not 1: the database is the archive's now, only the files are not (the callers record that restore)
[ "$files_ok" = 1 ] || { echo "restore: the files restore of $id failed (see above): the database was restored" >&2; exit 3; }
echo "restore: restored $id${BACKUP_SOURCE:+ of $BACKUP_SOURCE}"
