#!/usr/bin/perl
# restore.sh's receiver of an archive from outside the environment (restore.sh runs it with BACKUP_SOURCE):
#
#   perl receive.pl MODE PORT TOKEN_SHA256 ID OUT WAIT HASHER
#
# MODE tcp, from another environment's export Job (export.sh): a line `mxinfra-backup/2 token id size`,
# answered `go` (or `no`: refused), the bytes, a line with their sha256, answered ok or bad; or the older
# `mxinfra-backup/1 token id size sha256` and the bytes (an export deployed before 2026-12-07). MODE http,
# from `mxinfra backup restore --archive` through the pod proxy: a PUT at /token/sha256/id.tar.gz with a
# Content-Length. Other connections (and a size of 0: no archive is empty) are refused and waited past (each
# has Transfer.pm's header window, 30 s, to send its whole header; also a /2 sender that closed after its header, having given up on `go`);
# the bytes are copied a MiB at a time into OUT.incoming, hashed as they arrive by HASHER (a command
# reading standard input), checked, then renamed to OUT. Nothing is left behind by a failed receive, nor by a SIGTERM. Exit 0:
# received; 1: nothing received (within WAIT seconds, or a failure, which says why).
# In perl-base, which every Debian system has (the postgres images are Debian-based): no module beyond it.
use strict;
# every failure is 1 (die exits with errno otherwise, a module that does not load 2): restore.sh's "nothing
# restored"; before the modules, so that it holds for them too
END { $? = 1 if $? }
use File::Basename qw(dirname);
use lib dirname($0);
use Transfer;

my ($mode, $port, $token_sha, $id, $out, $wait, $hasher) = @ARGV;
die "receive.pl: MODE PORT TOKEN_SHA256 ID OUT WAIT HASHER\n" unless defined $hasher;
Transfer::check_wait($wait, "restore");
my $http = $mode eq "http";
$| = 1;  # each line to the pod log as it happens
$SIG{PIPE} = "IGNORE";  # a sender gone before its answer is no reason to stop waiting; a dead hasher fails a print
my $until = time + $wait;
$SIG{ALRM} = sub { die "restore: no archive arrived on port $port within ${wait}s\n" };
alarm $wait;
my $srv = Transfer::listen_on($port, "restore");
print "restore: waiting for $id on port $port" . ($http ? " (HTTP)" : "") . "\n";
sub answer { my ($c, $code, $text) = @_; eval { print $c "HTTP/1.1 $code\r\nContent-Type: text/plain\r\nContent-Length: " . length($text) . "\r\nConnection: close\r\n\r\n$text" }; close $c }
while (my $c = $srv->accept) {
  binmode $c;
  my ($ch, $size, $sha, $trailer) = ("");
  die "restore: no archive arrived on port $port within ${wait}s\n" if $until <= time;
  my $head = Transfer::read_head($c, $until, $http);
  unless (defined $head) { close $c; next }
  if ($http) {
    if ($head !~ /\r?\n\r?\n\z/) { answer($c, "431 Request Header Fields Too Large", "no end of the header within 8 KiB\n"); next }
    my ($method, $target) = $head =~ m{\A(\S+) (\S+) HTTP/1\.[01]\r?\n};
    ($size) = $head =~ m{^Content-Length:\s*(\d+)\s*$}mi;
    my $token;
    ($token, $sha) = ($target // "") =~ m{\A/([A-Za-z0-9_-]{1,128})/([0-9a-f]{64})/\Q$id\E\.tar\.gz\z};
    unless (($method // "") eq "PUT" && defined $sha && Transfer::sha_of($token) eq $token_sha) { answer($c, "404 Not Found", "not here\n"); next }
    if (!defined $size || $head =~ m{^Transfer-Encoding:}mi) { answer($c, "411 Length Required", "a Content-Length is needed\n"); next }
    if ($size == 0) { answer($c, "400 Bad Request", "an empty body: no archive is empty\n"); next }
  } else {
    # /2: the sha256 follows the bytes; /1 (an export before 2026-12-07): the last field of the header
    my ($magic, $t, $i, @rest) = split / /, $head;
    $trailer = ($magic // "") eq "mxinfra-backup/2" && @rest == 1;
    ($size, $sha) = @rest;
    unless (($trailer || ($magic // "") eq "mxinfra-backup/1" && @rest == 2 && ($sha // "") =~ /\A[0-9a-f]{64}\z/) && ($t // "") =~ /\A[A-Za-z0-9_-]{1,128}\z/ && Transfer::sha_of($t) eq $token_sha && ($i // "") eq $id && ($size // "") =~ /\A[1-9]\d*\z/) {
      print STDERR "restore: refused a connection without the token, the archive id and a size\n";
      print $c "no\n" if ($magic // "") eq "mxinfra-backup/2";  # the sender stops there (an old receiver just closes)
      close $c; next;
    }
    print $c "go\n" if $trailer;
  }
  my ($left, $buf, $n) = ($size, "", 0);
  # the first bytes before anything is written: a sender that gave up waiting for `go` has closed (its header
  # was still queued here), and the receive waits on for the one it sent next
  local $SIG{ALRM} = sub { die "restore: the archive stopped after 0 of $size bytes (nothing moved for ${wait}s)\n" };
  alarm $wait;
  if (!($n = sysread $c, $buf, $left < $Transfer::CHUNK ? $left : $Transfer::CHUNK)) {
    die "restore: the archive stopped after 0 of $size bytes\n" unless $trailer;
    print STDERR "restore: a sender closed after its header: waiting on\n";
    close $c;
    alarm(($until - time) > 0 ? $until - time : 1);
    next;
  }
  print "restore: hashing with " . (split / /, $hasher)[0] . "\n";
  # whatever stops this receive (a SIGTERM too) stops the hasher and removes what it wrote
  my $hasher_pid = 0;
  $SIG{__DIE__} = sub { kill "KILL", $hasher_pid if $hasher_pid; unlink "$out.incoming", "$out.incoming.sha256" };
  $SIG{TERM} = sub { die "restore: stopped (SIGTERM): nothing kept\n" };
  open my $f, ">", "$out.incoming" or die "restore: $out.incoming: $!\n"; binmode $f;
  $hasher_pid = open my $h, "|-", "sh", "-c", "exec $hasher > \"\$1\"", "sh", "$out.incoming.sha256" or die "restore: cannot start $hasher: $!\n"; binmode $h;
  # from here on a limit on silence, not on the whole (large) transfer: nothing moved (bytes from the
  # sender, or the hasher taking them) for $wait seconds
  $SIG{ALRM} = sub { die "restore: the archive stopped after " . ($size - $left) . " of $size bytes (nothing moved for ${wait}s)\n" };
  while ($n > 0) {
    print $f $buf or die "restore: $out.incoming: $!\n";
    print $h $buf or die "restore: hashing the archive ($hasher) failed: $!\n";
    $left -= $n;
    last unless $left > 0;
    alarm $wait;
    $n = sysread $c, $buf, $left < $Transfer::CHUNK ? $left : $Transfer::CHUNK;
    die "restore: the archive stopped after " . ($size - $left) . " of $size bytes\n" unless $n;
  }
  close $f or die "restore: $out.incoming: $!\n";
  if ($trailer) {
    my $lag = Transfer::hash_wait($wait, $size);
    local $SIG{ALRM} = sub { die "restore: no sha256 followed the $size bytes of the archive within ${lag}s\n" };
    alarm $lag;
    my $line = "";
    while (length $line < 65 && sysread($c, $ch, 1)) { $line .= $ch; last if $ch eq "\n" }
    ($sha) = $line =~ /\A([0-9a-f]{64})\n\z/ or die "restore: the $size bytes of the archive were not followed by their sha256 (the hash of the sender failed?): nothing kept\n";
  }
  $SIG{ALRM} = sub { die "restore: hashing the archive ($hasher) did not end within ${wait}s of its last byte\n" };
  alarm $wait;  # the hasher ends with what it was given (it kept pace)
  close $h or die "restore: hashing the archive ($hasher) failed\n";
  $hasher_pid = 0;
  alarm 0;
  my ($got) = split / /, do { open my $d, "<", "$out.incoming.sha256" or die "restore: $out.incoming.sha256: $!\n"; <$d> // "" };
  unlink "$out.incoming.sha256";
  die "restore: hashing the archive ($hasher) gave no sha256\n" unless ($got // "") =~ /\A[0-9a-f]{64}\z/;
  if ($got ne $sha) {
    if ($http) { answer($c, "400 Bad Request", "sha256 $got\n") } else { print $c "bad\n" }
    die "restore: the archive arrived with sha256 $got, not $sha\n";
  }
  rename "$out.incoming", $out or die "restore: $out: $!\n";
  if ($http) { answer($c, "200 OK", "ok\n") } else { print $c "ok\n"; close $c }
  print "restore: received $id " . ($http ? "from this machine" : "from the export Job") . " ($size bytes, sha256 $sha)\n";
  exit 0;
}
die "restore: accept failed: $!\n";
