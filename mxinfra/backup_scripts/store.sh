#!/bin/sh
# The archives in object storage (`backups.s3` or `backups.azure`): run by the rclone container of an
# environment's backup Job (`store.sh upload`, after backup.sh wrote the archive) and restore Job
# (`store.sh fetch`, before restore.sh reads it); by the tests as it is, with rclone against moto's S3
# server and Azurite. rclone checks every object's size and hash on the way up and down.
#
#   BACKUP_DIR     the Job's scratch volume: backup.sh writes the one archive there, restore.sh reads it
#   BACKUP_REMOTE  where the archives are, as rclone names it: store:<bucket or container>/<prefix>; the
#                  remote `store` is defined by RCLONE_CONFIG_STORE_* variables
#   BACKUP_ID      (fetch) the archive to fetch, YYYYmmddTHHMMSSZ
#   BACKUP_SOURCE  (fetch) set when the archive comes from another environment's export Job instead
#   KEEP_*, BACKUP_KEEP  (upload) retention, as backup.sh applies it to a claim (`backup.sh expired`)
#
# `store.sh put` (the AWS export task, after backup.sh): uploads the one archive with its sha256 as the
# object's metadata `mxinfra-sha256`, which the downloader checks what it fetched against; no listing and
# no retention (the exports bucket's lifecycle expires archives), so it needs no backup.sh beside it.
#
# The runtime's file store in S3 or Azure: `store.sh pull-files` (before backup.sh) copies it into the
# scratch directory backup.sh archives as tree/; `store.sh push-files` (after restore.sh) copies the
# archive's files back. Copies, never a sync: a file the runtime wrote since stays (the restored
# database does not refer to it), and an archive without files deletes nothing.
#   FILES_DIR      the scratch copy of the file store
#   FILES_REMOTE   the file store as rclone names it: files:<bucket or container> (RCLONE_CONFIG_FILES_*)
#   FILES_SUFFIX   (optional) the key suffix the runtime gives its objects (S3_KEY_SUFFIX): only those
set -eu
umask 077
here=$(dirname "$0")
case "${1:-}" in
  pull-files|push-files)
    : "${FILES_DIR:?store: FILES_DIR is not set}"
    : "${FILES_REMOTE:?store: FILES_REMOTE is not set}"
    # the runtime's objects only, where it marks them with a suffix (others share the bucket); the
    # config allows letters, digits and . _ - in a suffix, so it is no rclone glob
    case "${FILES_SUFFIX:-}" in
      *[!A-Za-z0-9._-]*) echo "store: FILES_SUFFIX may hold letters, digits and . _ - only, got '$FILES_SUFFIX'" >&2; exit 2 ;;
    esac
    step=$1
    # never a restore's own staging (restore.sh keeps it inside FILES_DIR, and removes it); rclone applies
    # --filter rules in the order given
    if [ -n "${FILES_SUFFIX:-}" ]; then
      set -- --filter "- /.mxinfra-*/**" --filter "+ *$FILES_SUFFIX" --filter "- **"
    else
      set -- --filter "- /.mxinfra-*/**"
    fi
    if [ "$step" = pull-files ]; then
      # rclone makes no directory for an empty store, and backup.sh wants one (a mounted volume elsewhere)
      mkdir -p "$FILES_DIR"
      rclone copy "$@" "$FILES_REMOTE" "$FILES_DIR"
      echo "backup: copied $(find "$FILES_DIR" -type f | wc -l) files of $FILES_REMOTE"
    else
      all=$(find "$FILES_DIR" -path "$FILES_DIR/.mxinfra-*" -prune -o -type f -print | wc -l)
      mine=$(find "$FILES_DIR" -path "$FILES_DIR/.mxinfra-*" -prune -o -type f -name "*${FILES_SUFFIX:-}" -print | wc -l)
      if [ "$mine" -ne "$all" ]; then
        # files of another store's naming (e.g. another environment's suffix): the runtime would not find them
        echo "store: $((all - mine)) of the archive's $all files do not end in '$FILES_SUFFIX', the suffix of $FILES_REMOTE: none copied" >&2
        exit 2
      fi
      rclone copy "$@" "$FILES_DIR" "$FILES_REMOTE"
      echo "restore: copied $mine files back to $FILES_REMOTE"
    fi
    exit 0
    ;;
esac
: "${BACKUP_DIR:?store: BACKUP_DIR is not set}"
: "${BACKUP_REMOTE:?store: BACKUP_REMOTE is not set}"
names='^[0-9]{8}T[0-9]{6}Z\.tar\.gz$'
listing="$BACKUP_DIR/.store-listing"
trap 'rm -f "$listing" "$listing.all" "$listing.expired"' EXIT

# The archives in the store, one name a line, into $listing (a failed listing stops the script: it is
# not piped, so its status is seen).
list() {
  rclone lsf --files-only --max-depth 1 "$BACKUP_REMOTE" > "$listing.all"
  grep -E "$names" "$listing.all" > "$listing" || true
}

# The one archive the backup step wrote (the glob's expansion as arguments): its name in $name, or the
# script stops.
the_archive() {
  if [ $# -ne 1 ] || [ ! -f "$1" ]; then
    echo "store: expected the one archive the backup step writes in $BACKUP_DIR, found: $*" >&2
    exit 2
  fi
  name=${1##*/}
  echo "$name" | grep -qE "$names" || { echo "store: $name is not an archive name (YYYYmmddTHHMMSSZ.tar.gz)" >&2; exit 2; }
}

case "${1:-}" in
  upload)
    set -- "$BACKUP_DIR"/*.tar.gz
    the_archive "$@"
    list
    if grep -qx "$name" "$listing"; then
      echo "store: $name exists in $BACKUP_REMOTE already: not overwritten" >&2
      exit 3
    fi
    size=$(wc -c < "$1")
    # --no-check-dest: the listing above said it is not there; rclone's own check would HEAD the key,
    # which a grant limited to the prefix answers 403 for a key that does not exist
    rclone copyto --no-check-dest "$1" "$BACKUP_REMOTE/$name"
    rm -f "$1"
    echo "backup: stored $name in $BACKUP_REMOTE ($size bytes)"
    list
    # retention as on a claim, counted from this archive's time. The archive is stored by now: a delete
    # the store refuses (a lock, a key without delete) is a warning, not a failed backup that would run again.
    BACKUP_NOW=${name%.tar.gz} sh "$here/backup.sh" expired < "$listing" > "$listing.expired"
    while read -r path; do
      if rclone deletefile "$BACKUP_REMOTE/$path"; then
        echo "backup: retention removed $path"
      else
        echo "backup: warning: retention could not remove $path (see above): it stays" >&2
      fi
    done < "$listing.expired"
    list
    # What `mxinfra backup list` reads (from this container's log): the archives kept, newest first.
    echo "backup: archives: $(sort -r "$listing" | tr '\n' ' ')"
    ;;
  put)
    set -- "$BACKUP_DIR"/*.tar.gz
    the_archive "$@"
    size=$(wc -c < "$1")
    sha=$(sha256sum "$1") && sha=${sha%% *}
    # --no-check-dest and --s3-no-head: the writer may put objects, not read them back (the archive is the
    # downloader's to read); rclone checks the upload against what S3 answers to it
    rclone copyto --no-check-dest --s3-no-head --header-upload "x-amz-meta-mxinfra-sha256: $sha" "$1" "$BACKUP_REMOTE/$name"
    echo "backup: stored $name in $BACKUP_REMOTE ($size bytes, sha256 $sha)"
    ;;
  fetch)
    if [ -n "${BACKUP_SOURCE:-}" ]; then
      # a restore from another environment: its export Job sends the archive (restore.sh receives it)
      echo "restore: $BACKUP_ID comes from $BACKUP_SOURCE's export Job: nothing to fetch here"
      exit 0
    fi
    id=${BACKUP_ID:-}
    case "$id" in
      [0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z) ;;
      *) echo "store: BACKUP_ID must name a backup as YYYYmmddTHHMMSSZ, got '$id'" >&2; exit 2 ;;
    esac
    mkdir -p "$BACKUP_DIR"  # a task's fresh volume has none
    list
    grep -qx "$id.tar.gz" "$listing" || { echo "store: no backup $id in $BACKUP_REMOTE" >&2; exit 2; }
    rclone copyto "$BACKUP_REMOTE/$id.tar.gz" "$BACKUP_DIR/$id.tar.gz"
    echo "restore: fetched $id from $BACKUP_REMOTE ($(wc -c < "$BACKUP_DIR/$id.tar.gz") bytes)"
    ;;
  *)
    echo "usage: store.sh upload | put | fetch | pull-files | push-files" >&2
    exit 2
    ;;
esac
