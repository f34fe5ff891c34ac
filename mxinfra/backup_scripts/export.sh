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
  sha=$(perl -MIO::Socket::INET -e '
    my ($port, $token_sha, $id, $path, $size, $wait, $hasher) = @ARGV;
    $SIG{PIPE} = "IGNORE";  # a reader gone is a failed write that says so, not a silent death
    my $hasher_pid = open(my $h, "-|", "sh", "-c", "exec $hasher < \"\$1\"", "sh", $path) or die "export: cannot start $hasher: $!\n";
    $SIG{__DIE__} = sub { kill "KILL", $hasher_pid if $hasher_pid };
    # the sha256 of a token, by coreutils (perl-base has no Digest::SHA); the token is an argument, never shell text
    sub sha_of { open(my $h, "-|", "sh", "-c", q{printf %s "$1" | sha256sum}, "sh", $_[0]) or return ""; my ($d) = split / /, (<$h> // ""); close $h; $d // "" }
    $SIG{ALRM} = sub { die "export: nobody fetched $id within ${wait}s\n" };
    alarm $wait;
    my $srv = IO::Socket::INET->new(LocalAddr => "0.0.0.0", LocalPort => $port, Proto => "tcp", Listen => 4, ReuseAddr => 1)
      or die "export: cannot listen on port $port: $!\n";
    my $until = time + $wait;
    while (my $c = $srv->accept) {
      binmode $c;
      my ($head, $ch) = ("", "");
      # 30 s for each connection to send its request (one that says nothing must not hold the real one back)
      my $room = $until - time;
      my $slow = !eval {
        local $SIG{__DIE__};
        local $SIG{ALRM} = sub { die "slow\n" };
        alarm($room < 30 ? ($room > 0 ? $room : 1) : 30);
        while (length $head < 8192 && $head !~ /\r?\n\r?\n\z/ && sysread($c, $ch, 1)) { $head .= $ch }
        1;
      };
      alarm(($until - time) > 0 ? $until - time : 1);
      if ($slow) { close $c; next }
      my ($method, $target) = $head =~ m{\A(\S+) (\S+) HTTP/1\.[01]\r?\n};
      my ($token) = ($target // "") =~ m{\A/([A-Za-z0-9_-]{1,128})/\Q$id\E\.tar\.gz\z};
      unless (($method // "") eq "GET" && defined $token && sha_of($token) eq $token_sha) {
        print $c "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        close $c; next;
      }
      print $c "HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\nContent-Length: $size\r\nConnection: close\r\n\r\n";
      open my $f, "<", $path or die "export: $path: $!\n"; binmode $f;
      my ($buf, $n, $sent) = ("", 0, 0);
      while ($n = sysread $f, $buf, 1048576) {
        $sent += $n;
        alarm $wait;  # from here on a limit on a stalled reader, not on the whole (large) transfer
        my $off = 0;
        while ($off < $n) { my $w = syswrite $c, $buf, $n - $off, $off; die "export: the reader went away: $!\n" unless defined $w; $off += $w }
      }
      die "export: reading $path: $!\n" unless defined $n;
      die "export: $path changed while it was served ($sent of $size bytes)\n" unless $sent == $size;
      close $c;
      my $lag = $wait + int($size / 50_000_000);  # as for a send (below)
      local $SIG{ALRM} = sub { die "export: hashing $path ($hasher) did not end within ${lag}s\n" };
      alarm $lag;
      my ($sha) = split / /, (<$h> // "");
      close $h;
      $hasher_pid = 0;
      die "export: hashing $path ($hasher) gave no sha256\n" unless ($sha // "") =~ /\A[0-9a-f]{64}\z/;
      print "$sha\n";
      exit 0;
    }
    die "export: accept failed: $!\n";
  ' "$BACKUP_SERVE_PORT" "$BACKUP_TOKEN_SHA256" "$id" "$archive" "$size" "${BACKUP_WAIT:-900}" "$sha256") || exit 1
  echo "export: serving $id ($size bytes, sha256 $sha) on port $BACKUP_SERVE_PORT"
  echo "export: served $id"
  exit 0
fi
# perl-base is part of every Debian system (the postgres images are Debian-based): no extra tool needed.
# mxinfra-backup/2: a header line without the sha256, answered `go` (or `no`: refused); exactly $size bytes
# copied a MiB at a time (flat memory); their sha256 on a line of its own; answered ok or bad. The hasher reads
# the file beside the send, a second reader of the same pages (started before the connection: while the
# receiver's pod starts it may run ahead, which costs nothing): a whole pass before the first byte leaves
# would cost a read (from disk, for an archive written hours ago) and a hash on one core first. A hasher that
# gives no sha256 ends the connection short of that line: the receiver keeps nothing. A receiver deployed
# before /2 closes the connection on its header: then the sha256 first and mxinfra-backup/1, which carries it
# there. Every wait is bounded by BACKUP_WAIT (for the receiver, taking bytes, the answer); the hash, a local
# read, by that and a second per 50 MB.
echo "export: hashing with ${sha256%% *} beside the send"
sha=$(perl -MIO::Socket::INET -e '
  my ($target, $wait, $token, $id, $size, $path, $hasher) = @ARGV;
  $SIG{PIPE} = "IGNORE";  # a receiver gone is a failed write that says so, not a silent death
  my $hasher_pid = open(my $h, "-|", "sh", "-c", "exec $hasher < \"\$1\"", "sh", $path) or die "export: cannot start $hasher: $!\n";
  $SIG{__DIE__} = sub { kill "KILL", $hasher_pid if $hasher_pid };  # a send that fails leaves no hasher reading on
  my $until = time + $wait;
  sub connected {
    my $s;
    until ($s = IO::Socket::INET->new(PeerAddr => $target, Proto => "tcp", Timeout => 10)) {
      die "export: cannot connect to $target: $!\n" if time > $until;
      sleep 1;
    }
    binmode $s; $s->autoflush(1);
    return $s;
  }
  sub hashed {
    # a local process reading a local file: the wait, and a second per 50 MB (a slow hasher, a cold disk)
    my $lag = $wait + int($size / 50_000_000);
    local $SIG{ALRM} = sub { die "export: hashing $path ($hasher) did not end within ${lag}s\n" };
    alarm $lag;
    my ($sha) = split / /, (<$h> // "");
    close $h;
    $hasher_pid = 0;
    alarm 0;
    die "export: hashing $path ($hasher) gave no sha256: the receiver keeps nothing\n" unless ($sha // "") =~ /\A[0-9a-f]{64}\z/;
    return $sha;
  }
  sub send_all {
    my ($s, $head, $tail) = @_;
    local $SIG{ALRM} = sub { die "export: the receiver took nothing for ${wait}s\n" };
    alarm $wait;
    print $s $head or die "export: the receiver went away: $!\n";
    open my $f, "<", $path or die "export: $path: $!\n"; binmode $f;
    my ($buf, $n, $sent) = ("", 0, 0);
    while ($n = sysread $f, $buf, 1048576) {
      $sent += $n;
      alarm $wait;
      my $off = 0;
      while ($off < $n) { my $w = syswrite $s, $buf, $n - $off, $off; die "export: the receiver went away: $!\n" unless defined $w; $off += $w }
    }
    die "export: reading $path: $!\n" unless defined $n;
    die "export: $path changed while it was sent ($sent of $size bytes)\n" unless $sent == $size;
    my $sha = $tail ? hashed() : "";
    alarm $wait;
    print $s "$sha\n" or die "export: the receiver went away: $!\n" if $tail;
    shutdown $s, 1;
    local $SIG{ALRM} = sub { die "export: the receiver did not confirm the archive within ${wait}s\n" };
    my $ack = <$s>;
    alarm 0;
    die "export: the receiver did not confirm the archive\n" unless defined $ack && $ack eq "ok\n";
    return $sha;
  }
  my $s = connected();
  print $s "mxinfra-backup/2 $token $id $size\n" or die "export: the receiver went away: $!\n";
  my $go = eval { local $SIG{__DIE__}; local $SIG{ALRM} = sub { die "slow\n" }; alarm $wait; my $l = <$s>; alarm 0; $l // "" };
  die "export: the receiver did not answer the mxinfra-backup/2 header within ${wait}s\n" unless defined $go;
  if ($go eq "go\n") { print send_all($s, "", 1), "\n"; exit 0 }
  die "export: the receiver refused the header (the token, the archive id or its size)\n" if $go eq "no\n";
  die "export: the receiver answered the mxinfra-backup/2 header with neither go nor no\n" if $go ne "";
  close $s;
  print STDERR "export: the receiver closed on the mxinfra-backup/2 header (deployed before 2026-12-07): mxinfra-backup/1, the sha256 first\n";
  my $sha = hashed();
  send_all(connected(), "mxinfra-backup/1 $token $id $size $sha\n", 0);
  print "$sha\n";
' "$BACKUP_TARGET" "${BACKUP_WAIT:-300}" "$BACKUP_TOKEN" "$id" "$size" "$archive" "$sha256") || exit 1
echo "export: sent $id ($size bytes, sha256 $sha) to $BACKUP_TARGET"
