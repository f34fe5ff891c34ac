"""The sh twins of mxinfra.backup_archive (backup.sh, restore.sh, export.sh, store.sh), run by the targets'
backup tasks in the postgres and rclone images, which have no Python; package data of the core."""

from pathlib import Path

SCRIPTS = Path(__file__).parent
