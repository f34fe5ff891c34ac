"""The sh twins of mxinfra.backup_archive (backup.sh, restore.sh and its receive.pl, export.sh and its export.pl, the two
perl files' Transfer.pm, store.sh), run by the targets' backup tasks in the postgres and rclone images, which have no Python;
package data of the core."""

from pathlib import Path

SCRIPTS = Path(__file__).parent
# What a target's backup containers need beside each other (restore.sh runs receive.pl, export.sh export.pl, from
# their own directory; both load Transfer.pm from theirs):
# listed here, with the scripts, so that a target never ships an older list than the core's scripts need.
SCRIPT_NAMES = ("backup.sh", "restore.sh", "receive.pl", "export.sh", "export.pl", "Transfer.pm", "store.sh")

# What restore.sh's exit status says, for every target that reads it: the database (and the files) restored;
# nothing restored (its own failure, or bad input); the database restored, the files not; the database may
# or may not have been restored (the server could not say what became of its transaction).
RESTORED = 0
NOTHING_RESTORED = frozenset({1, 2})
FILES_NOT_RESTORED = 3
MAYBE_RESTORED = 4
