#!/usr/bin/perl
# export.sh's sender (and the download's server) of one archive; export.sh checks the environment and runs it:
#
#   perl export.pl send TARGET WAIT TOKEN ID SIZE PATH HASHER          to receive.pl, over mxinfra-backup/2
#   perl export.pl serve PORT WAIT TOKEN_SHA256 ID SIZE PATH HASHER    once over HTTP, to the caller with the token
#
# Prints the archive's sha256 once it is sent (served); exit 0. Anything else fails, and says why.
#
# The hasher (HASHER, a command reading standard input) reads the file beside the transfer, a second reader of
# the same pages, started before the connection (while the receiver's pod starts it may run ahead, which
# costs nothing): a whole pass before the first byte leaves would cost a read (from disk, for an archive
# written hours ago) and a hash on one core first.
#
# mxinfra-backup/2: a header line without the sha256, answered `go` (or `no`: refused); exactly SIZE bytes;
# their sha256 on a line of its own; answered ok or bad. A hasher that gives no sha256 ends the connection
# short of that line: the receiver keeps nothing. A receiver deployed before /2 closes the connection on its
# header: then the sha256 first and mxinfra-backup/1, which carries it there. Every wait is bounded by WAIT
# (for the receiver, for the caller, for taking bytes, for the answer); the hash, a local read, by
# Transfer::hash_wait.
# In perl-base, which every Debian system has (the postgres images are Debian-based): no module beyond it.
use strict;
use File::Basename qw(dirname);
use IO::Socket::INET;
use lib dirname($0);
use Transfer;

my ($mode, $where, $wait, $token, $id, $size, $path, $hasher) = @ARGV;
die "export.pl: send|serve TARGET|PORT WAIT TOKEN|TOKEN_SHA256 ID SIZE PATH HASHER\n" unless defined $hasher && $mode =~ /\A(send|serve)\z/;
Transfer::check_wait($wait, "export");
$SIG{PIPE} = "IGNORE";  # a peer gone is a failed write that says so, not a silent death
my $until = time + $wait;  # for the caller to come (serve), or for the receiver to listen (send)

my $hasher_pid = open(my $h, "-|", "sh", "-c", "exec $hasher < \"\$1\"", "sh", $path) or die "export: cannot start $hasher: $!\n";
$SIG{__DIE__} = sub { kill "KILL", $hasher_pid if $hasher_pid };  # a transfer that fails leaves no hasher reading on

# The hasher's sha256 ($after: what its absence means to the peer).
sub hashed {
  my ($after) = @_;
  my $lag = Transfer::hash_wait($wait, $size);
  local $SIG{ALRM} = sub { die "export: hashing $path ($hasher) did not end within ${lag}s\n" };
  alarm $lag;
  my ($sha) = split / /, (<$h> // "");
  close $h;
  $hasher_pid = 0;
  alarm 0;
  die "export: hashing $path ($hasher) gave no sha256$after\n" unless ($sha // "") =~ /\A[0-9a-f]{64}\z/;
  return $sha;
}

# The file's SIZE bytes to $s; each write within WAIT (from here on a limit on a stalled peer, not on the
# whole, large, transfer). A read error or a file that changed fails it rather than sending a short body.
sub copy_to {
  my ($s, $peer, $done) = @_;
  open my $f, "<", $path or die "export: $path: $!\n";
  binmode $f;
  my ($buf, $n, $sent) = ("", 0, 0);
  while ($n = sysread $f, $buf, $Transfer::CHUNK) {
    $sent += $n;
    alarm $wait;
    my $off = 0;
    while ($off < $n) { my $w = syswrite $s, $buf, $n - $off, $off; die "export: $peer went away: $!\n" unless defined $w; $off += $w }
  }
  die "export: reading $path: $!\n" unless defined $n;
  die "export: $path changed while it was $done ($sent of $size bytes)\n" unless $sent == $size;
}

if ($mode eq "serve") {
  # Only the token's sha256 is here ($token): whoever may read the pod's spec must not fetch the archive first.
  $SIG{ALRM} = sub { die "export: nobody fetched $id within ${wait}s\n" };
  alarm $wait;
  my $srv = Transfer::listen_on($where, "export");
  while (my $c = $srv->accept) {
    binmode $c;
    my $head = Transfer::read_head($c, $until, 1);
    unless (defined $head) { close $c; next }
    my ($method, $target) = $head =~ m{\A(\S+) (\S+) HTTP/1\.[01]\r?\n};
    my ($t) = ($target // "") =~ m{\A/([A-Za-z0-9_-]{1,128})/\Q$id\E\.tar\.gz\z};
    unless (($method // "") eq "GET" && defined $t && Transfer::sha_of($t) eq $token) {
      print $c "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      close $c;
      next;
    }
    print $c "HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\nContent-Length: $size\r\nConnection: close\r\n\r\n";
    copy_to($c, "the reader", "served");
    close $c;
    print hashed(""), "\n";
    exit 0;
  }
  die "export: accept failed: $!\n";
}

sub connected {
  my $s;
  until ($s = IO::Socket::INET->new(PeerAddr => $where, Proto => "tcp", Timeout => 10)) {
    die "export: cannot connect to $where: $!\n" if time > $until;
    sleep 1;
  }
  binmode $s;
  $s->autoflush(1);
  return $s;
}
# $head (the /1 header) or nothing, the bytes, then (with $tail, /2) their sha256; the receiver's ok.
sub send_all {
  my ($s, $head, $tail) = @_;
  local $SIG{ALRM} = sub { die "export: the receiver took nothing for ${wait}s\n" };
  alarm $wait;
  print $s $head or die "export: the receiver went away: $!\n";
  copy_to($s, "the receiver", "sent");
  my $sha = $tail ? hashed(": the receiver keeps nothing") : "";
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
my $sha = hashed(": the receiver keeps nothing");
send_all(connected(), "mxinfra-backup/1 $token $id $size $sha\n", 0);
print "$sha\n";
