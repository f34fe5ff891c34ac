#!/bin/sh
# Restore one backup archive (backup.sh's format) over the environment's database and file store: run by
# a Job made from the environment's suspended restore CronJob, and by the tests as it is.
#
#   DATABASE_URL   libpq URI of the environment's database
#   BACKUP_DIR     where archives are kept
#   BACKUP_ID      the archive to restore: its UTC start time, YYYYmmddTHHMMSSZ
#   FILES_DIR      the file store to replace (optional: absent when the files live in S3 or Azure)
set -eu
umask 077
: "${DATABASE_URL:?restore: DATABASE_URL is not set}"
: "${BACKUP_DIR:?restore: BACKUP_DIR is not set}"
id=${BACKUP_ID:-}
case "$id" in
  [0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z) ;;
  *) echo "restore: BACKUP_ID must name a backup as YYYYmmddTHHMMSSZ, got '$id'" >&2; exit 2 ;;
esac
archive="$BACKUP_DIR/$id.tar.gz"
[ -f "$archive" ] || { echo "restore: no backup $id in $BACKUP_DIR" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -C "$work" -xzf "$archive"
# One transaction: a restore that fails leaves the database as it was, not half dropped.
pg_restore --clean --if-exists --no-owner --no-privileges --single-transaction --exit-on-error \
  --dbname="$DATABASE_URL" "$work/db/db.backup"
if [ -n "${FILES_DIR:-}" ]; then
  find "$FILES_DIR" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
  cp -R "$work/tree/." "$FILES_DIR/"
fi
echo "restore: restored $id"
