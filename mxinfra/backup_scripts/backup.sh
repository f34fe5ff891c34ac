#!/bin/sh
# One backup of a Mendix environment, then retention: run by the environment's backup CronJob on
# Kubernetes and by the AWS export task (in the postgres image), and by the tests as it is against a real
# PostgreSQL.
#
# The archive <BACKUP_DIR>/<UTC start>.tar.gz has the layout of a Mendix Cloud full snapshot:
# db/db.backup (pg_dump custom format) and tree/ (the file store: each file at tree/xx/yy/<name>, as the
# runtime's local store and Mendix Cloud keep them; an object's name is its key without the suffix, see
# mxinfra.backup_archive.tree_path), and .metadata, as gzip members read as one stream. Retention is mxinfra.backups.keep:
# every backup of the last 24 hours, the newest of each day for KEEP_DAILY_DAYS days, of each ISO week
# for KEEP_WEEKLY_WEEKS weeks, of each month for KEEP_MONTHLY_MONTHS months, always the newest of all,
# any dated in the future, and BACKUP_KEEP (a restore's source, while the backup before it runs).
#
#   DATABASE_URL   libpq URI of the environment's database (the runtime's own variable)
#   BACKUP_DIR     where archives are kept
#   FILES_DIR      the file store to copy (optional: absent when the environment keeps no files)
#   FILES_LAYOUT   `keys` when FILES_DIR is a copy of an object store (S3, Azure: one file per object, named
#                  by its key); otherwise it is the runtime's own local file store, archived as it is
#   FILES_SUFFIX   (with keys) the key suffix the runtime gives its objects, left out of the archive
#   BACKUP_NOW     the start time as YYYYmmddTHHMMSSZ (optional; default: the clock)
#   BACKUP_KEEP    an archive id (YYYYmmddTHHMMSSZ) retention keeps this time (optional)
#   BACKUP_RANGE_MB  the files are compressed in ranges of this many MiB, two at a time (optional; 64)
#   `backup.sh prune` applies retention only. `backup.sh expired` reads archive names (one a line, any
#   order, other names ignored) and prints those retention removes, deleting nothing: store.sh applies
#   retention in object storage with it (no BACKUP_DIR needed).
set -eu
umask 077

now=${BACKUP_NOW:-$(date -u +%Y%m%dT%H%M%SZ)}
case "$now" in
  [0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z) ;;
  *) echo "backup: BACKUP_NOW must be YYYYmmddTHHMMSSZ, got '$now'" >&2; exit 2 ;;
esac

# Sets `day` (days since 1970-01-01, proleptic Gregorian), `week` (the day of its Monday) and `month`
# (year * 12 + month - 1) of a YYYYmmdd... string, in shell arithmetic: no GNU date, no subshell per backup.
calendar() {
  rest=${1#????}; y=${1%"$rest"}
  m=${rest%"${rest#??}"}; rest=${rest#??}; d=${rest%"${rest#??}"}
  m=${m#0}; d=${d#0}
  month=$((y * 12 + m - 1))
  y=$((y - (m <= 2)))
  era=$((y / 400)); yoe=$((y - era * 400))
  doy=$(( (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1 ))
  day=$((era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468))
  # 1970-01-01 was a Thursday: (day + 3) % 7 counts from Monday.
  week=$((day - (day + 3) % 7))
  # seconds since the epoch, from the HHMMSS after the T (a leading 1 keeps a leading 0 from reading as octal)
  t=${1#*T}; t=${t%Z}; h=${t%????}; rest=${t#??}; mi=${rest%??}; s=${rest#??}
  secs=$((day * 86400 + (1$h - 100) * 3600 + (1$mi - 100) * 60 + 1$s - 100))
}

# The archive names on stdin that retention removes, printed one a line.
expired() {
  daily=${KEEP_DAILY_DAYS:-14}; weekly=${KEEP_WEEKLY_WEEKS:-13}; monthly=${KEEP_MONTHLY_MONTHS:-12}
  nowt=${now#*T}; nowt=${nowt%Z}; nowd=${now%T*}
  calendar "$now"
  recent=$((secs - 86400))
  first_day=$((day - daily + 1)); first_monday=$((week - 7 * (weekly - 1))); first_month=$((month - monthly + 1))
  days=' '; weeks=' '; months=' '; newest=1
  for path in $(grep -E '^[0-9]{8}T[0-9]{6}Z\.tar\.gz$' | sort -r); do
    id=${path%.tar.gz}
    keep=$newest; newest=0
    # after now: a clock ahead is no reason to delete (compared as the date, then the time)
    idt=${id#*T}; idd=${id%T*}
    if [ "$idd" -gt "$nowd" ] || { [ "$idd" -eq "$nowd" ] && [ "1${idt%Z}" -gt "1$nowt" ]; }; then continue; fi
    calendar "$id"
    if [ "$secs" -gt "$recent" ] || [ "$id" = "${BACKUP_KEEP:-}" ]; then keep=1; fi
    if [ "$daily" -gt 0 ] && [ "$day" -ge "$first_day" ]; then
      case "$days" in *" $day "*) ;; *) days="$days$day "; keep=1 ;; esac
    fi
    if [ "$weekly" -gt 0 ] && [ "$week" -ge "$first_monday" ]; then
      case "$weeks" in *" $week "*) ;; *) weeks="$weeks$week "; keep=1 ;; esac
    fi
    if [ "$monthly" -gt 0 ] && [ "$month" -ge "$first_month" ]; then
      case "$months" in *" $month "*) ;; *) months="$months$month "; keep=1 ;; esac
    fi
    if [ "$keep" = 0 ]; then echo "$path"; fi
  done
}

prune() {
  ls "$BACKUP_DIR" | expired | while read -r path; do
    rm -f "$BACKUP_DIR/$path"
    echo "backup: retention removed $path"
  done
}

if [ "${1:-backup}" = expired ]; then
  expired
  exit 0
fi
: "${BACKUP_DIR:?backup: BACKUP_DIR is not set}"
if [ "${1:-backup}" = prune ]; then
  prune
  exit 0
fi
: "${DATABASE_URL:?backup: DATABASE_URL is not set}"
if [ -n "${FILES_DIR:-}" ] && [ ! -d "$FILES_DIR" ]; then
  echo "backup: FILES_DIR $FILES_DIR is not a directory (the file store's volume is not mounted?)" >&2
  exit 2
fi

case "${FILES_SUFFIX:-}" in
  *[!A-Za-z0-9._-]*) echo "backup: FILES_SUFFIX may hold letters, digits and . _ - only, got '$FILES_SUFFIX'" >&2; exit 2 ;;
esac

# An id names one backup: a second run in the same second fails rather than replace the first.
range_mb=${BACKUP_RANGE_MB:-64}
case "$range_mb" in
  ''|*[!0-9]*|0*|?????*) echo "backup: BACKUP_RANGE_MB must be a whole number of MiB from 1 to 9999, got '$range_mb'" >&2; exit 2 ;;
esac

if [ -e "$BACKUP_DIR/$now.tar.gz" ]; then
  echo "backup: $now.tar.gz exists already: not overwritten" >&2
  exit 3
fi
# Built beside the archives and renamed when complete: a run that dies leaves no archive that
# retention or a restore would take for a backup (only one run at a time: the CronJob forbids overlap).
work="$BACKUP_DIR/.incomplete-$now"
rm -rf "$BACKUP_DIR"/.incomplete-*
mkdir -p "$work/db"
# Both cores at once (where the Job has them). The archive is gzip members, which gzip and GNU tar read as
# one stream (RFC 1952): db/ first, as tar with 512-byte records and its end marker (two zero blocks, 1024 bytes)
# cut off, then tree/, so a restore reaches the dump without unpacking the files (bench/bench_backup.py).
# The dump is taken uncompressed (-Z0) and compressed once, at level 1 (pg_dump's own zlib at its default
# level costs far more CPU). Meanwhile, in a session of its own (setsid: a failure stops the
# whole of it), the file store goes straight into tree.tar on the claim (renamed to tree/ on the way,
# no copy first), which is then compressed in ranges of BACKUP_RANGE_MB, two at a time, each range its own gzip
# member: random documents compress at ~40 MB/s a core, so one gzip alone would be the whole backup.
# Each step leaves a mark of its success (dash has no pipefail). A failed step leaves no archive.
# The deflating is zlib's, through zstd where it writes gzip (the official postgres images carry it):
# faster than GNU gzip's own, and it can store a range that does not compress (documents and images,
# most of a file store: deflating them gains nothing and costs most of the backup's time) as gzip's
# stored blocks, judged by its first MiB. Without it, GNU gzip -1 for all. Either way a plain .tar.gz.
if [ "$(printf mx | zstd -q --format=gzip -1 -c 2>/dev/null | gzip -dc 2>/dev/null)" = mx ]; then
  zip="zstd -q --format=gzip"
else
  zip=gzip
fi
# one range: stored when zlib (zstd) is there and its first MiB does not deflate to under 943718 bytes,
# 90% of it (mxinfra.backup_archive.deflates decides the same)
range_job='
work=$1 mb=$2 zip=$3 n=$4
skip=$(( (1$n - 1000000000) * mb ))
level=-1
if [ "$zip" != gzip ] && [ "$(dd if="$work/tree.tar" bs=1048576 skip="$skip" count=1 status=none | $zip -1 -c | wc -c)" -ge 943718 ]; then
  level=-0
fi
{ dd if="$work/tree.tar" bs=1048576 iflag=fullblock skip="$skip" count="$mb" status=none && : > "$work/parts/$n.done"; } | $zip $level -c > "$work/parts/$n.gz"
'
tree_job='
set -eu
src=$1 work=$2 mb=$3 layout=$4 suffix=$5 zip=$6 range_job=$7
if [ -n "$src" ]; then
  # An object store copy: each object at tree/xx/yy/<key without the suffix> where that is such a name
  # (4 characters or more, no "/", the first four letters, digits or . _ -, neither pair ".."), else at
  # tree/<key>: mxinfra.backup_archive.tree_path decides the same (tar and grep in the C locale, where a
  # character is a byte, as it counts them). Refused, as there: a key already laid out so (xx/yy/xxyy...),
  # which would come back as another, and one at a two-byte tree/xx, where the layout keeps folders.
  nest=
  if [ "$layout" = keys ]; then
    c="[A-Za-z0-9._-]" d="[A-Za-z0-9_-]"
    pair="$d$c\\|$c$d"
    if find "$src" -mindepth 3 -maxdepth 3 -type f -printf "%P\0" | LC_ALL=C grep -qz "^\\($pair\\)/\\($pair\\)/\\1\\2[^/]*\$"; then
      echo "backup: an object key of the file store is laid out like a file of Mendix Cloud (xx/yy/<name>): it would come back under another key" >&2
      exit 2
    fi
    if [ -n "$(LC_ALL=C find "$src" -mindepth 1 -maxdepth 1 -name "??" -printf x | head -c 1)" ]; then
      echo "backup: an object key of the file store is two bytes long up to its first /: Mendix Cloud keeps folders of files there (tree/xx/yy/<name>)" >&2
      exit 2
    fi
    nest="s,^\\./\\(\\($pair\\)\\($pair\\)[^/]*\\)$(printf "%s" "$suffix" | sed "s/\\./\\\\./g")\$,tree/\\2/\\3/\\1,S"
  fi
  # not the staging of a restore (restore.sh: .mxinfra-<step>-<id>), which one killed hard leaves until the next
  LC_ALL=C tar --sparse -C "$src" --exclude="./.mxinfra-*" ${nest:+--transform="$nest"} --transform="s,^\.,tree,S" -cf "$work/tree.tar" .
else
  mkdir "$work/tree"
  tar -C "$work" -cf "$work/tree.tar" tree
fi
mkdir "$work/parts"
ranges=$(( ($(wc -c < "$work/tree.tar") + mb * 1048576 - 1) / (mb * 1048576) ))
i=0
# range numbers as 9 digits: the parts sort in order (more than 10^9 ranges is more than a PiB); xargs
# appends each one as $4, so nothing of the paths is rewritten
while [ "$i" -lt "$ranges" ]; do printf "%09d\n" "$i"; i=$((i + 1)); done |
  xargs -P 2 -n 1 sh -c "$range_job" part "$work" "$mb" "$zip"
[ "$(ls "$work/parts" | grep -c "\.done$")" -eq "$ranges" ]
rm -f "$work/tree.tar"
'
# No job control here (a container's sh, or sh run by a program): setsid does not fork, so $! leads the
# files' session, and `wait` reports its end.
setsid -w sh -c "$tree_job" tree-job "${FILES_DIR:-}" "$work" "$range_mb" "${FILES_LAYOUT:-}" "${FILES_SUFFIX:-}" "$zip" "$range_job" &
tree=$!
dump=
failed() {
  trap - HUP INT TERM
  [ -z "$dump" ] || kill "$dump" 2>/dev/null || true
  # the files' session as a whole: its tar, its dd and gzip pairs
  kill -TERM -"$tree" 2>/dev/null || true
  wait "$tree" 2>/dev/null || true
  echo "backup: $1: no archive written" >&2
  rm -rf "$work" "$work.tar.gz"
  exit 1
}
# a signal to this script alone (a test's timeout, a person's ^C) stops the files' session too
trap 'failed "interrupted"' HUP INT TERM
# in the background and waited for: a signal interrupts `wait` (not a command in the foreground), so the
# trap runs at once
pg_dump --format=custom --compress=0 --no-owner --no-privileges --file="$work/db/db.backup" --dbname="$DATABASE_URL" &
dump=$!
wait "$dump" || failed "pg_dump failed"
dump=
# Mendix Cloud's description of a backup beside db/ (its JSON strings; what is measured here, as
# mxinfra.backup_archive.pack writes it): the dump's size and the files' (stat only, beside the files' tar)
files_size=0
[ -z "${FILES_DIR:-}" ] || files_size=$(find "$FILES_DIR" -type f ! -path "$FILES_DIR/.mxinfra-*" -printf "%s\n" | awk '{ s += $1 } END { printf "%d", s }')
printf '{\n    "dumpSize": "%s",\n    "filesSize": "%s"\n}' "$(wc -c < "$work/db/db.backup")" "$files_size" > "$work/.metadata"
{ tar -b1 -C "$work" -cf - db .metadata && : > "$work/db.done"; } | head -c -1024 | $zip -1 -c > "$work.tar.gz" || failed "compressing the dump failed"
[ -e "$work/db.done" ] || failed "archiving the dump failed"
rm -rf "$work/db" "$work/.metadata"
tree_offset=$(wc -c < "$work.tar.gz")
wait "$tree" || failed "archiving the files failed"
for part in "$work"/parts/*.gz; do
  cat "$part" >> "$work.tar.gz" || failed "writing the archive failed"
  rm -f "$part"
done
# Last, an empty gzip member (it adds nothing to the tar stream, for any reader) whose header comment
# says where tree/ starts: restore.sh unpacks the files from there rather than inflating the dump first.
# The header (FCOMMENT set, no time, Unix), the comment, an empty final stored block, CRC32 0, length 0.
{ printf '\037\213\010\020\000\000\000\000\000\003' && printf 'mxinfra-tree-offset=%020d' "$tree_offset" \
    && printf '\000\001\000\000\377\377\000\000\000\000\000\000\000\000'; } >> "$work.tar.gz" || failed "writing the archive failed"
[ ! -e "$BACKUP_DIR/$now.tar.gz" ] || { echo "backup: $now.tar.gz appeared meanwhile: not overwritten" >&2; exit 3; }
mv "$work.tar.gz" "$BACKUP_DIR/$now.tar.gz"
rm -rf "$work"
echo "backup: wrote $now.tar.gz ($(wc -c < "$BACKUP_DIR/$now.tar.gz") bytes)"
prune
# What `mxinfra backup list` reads (from this pod's log): the archives kept, newest first.
echo "backup: archives: $(ls "$BACKUP_DIR" | grep -E '^[0-9]{8}T[0-9]{6}Z\.tar\.gz$' | sort -r | tr '\n' ' ')"
