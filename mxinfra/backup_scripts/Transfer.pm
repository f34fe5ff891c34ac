# The rules both ends of an archive's transfer keep, stated once: export.pl (the sender and the download's
# server) and receive.pl (restore.sh's receiver) load this from their own directory. In perl-base, which every
# Debian system has (the postgres images are Debian-based): no module beyond it.
package Transfer;
use strict;
use IO::Socket::INET;

# Seconds each connection has to send its whole header (an HTTP request, or a line): one that says nothing
# must not hold back the one that is awaited.
our $HEADER_WINDOW = 30;
# Bytes are moved a MiB at a time: flat memory, whatever the archive's size.
our $CHUNK = 1048576;

# A wait (BACKUP_WAIT, which the sh scripts check first: exit 2) as every alarm here takes it: a whole number of
# seconds above 0 (0 would turn each limit off). $who names the script in the message.
sub check_wait {
  my ($wait, $who) = @_;
  die "$who: BACKUP_WAIT must be a whole number of seconds above 0, got $wait\n" unless ($wait // "") =~ /\A[1-9]\d*\z/;
}

# How long a hash may lag behind the last byte: the wait, and a second per 50 MB (a slow hasher, a cold disk).
sub hash_wait { my ($wait, $size) = @_; return $wait + int($size / 50_000_000) }

# The sha256 of a token, by coreutils (perl-base has no Digest::SHA); the token is an argument, never shell text.
sub sha_of {
  open(my $h, "-|", "sh", "-c", q{printf %s "$1" | sha256sum}, "sh", $_[0]) or return "";
  my ($d) = split / /, (<$h> // "");
  close $h;
  return $d // "";
}

# A listening socket on every address of the pod ($who names the script in the message).
sub listen_on {
  my ($port, $who) = @_;
  return IO::Socket::INET->new(LocalAddr => "0.0.0.0", LocalPort => $port, Proto => "tcp", Listen => 4, ReuseAddr => 1)
    || die "$who: cannot listen on port $port: $!\n";
}

# A connection's header, within the header window and what is left before $until: an HTTP request up to its
# blank line (at most 8 KiB), or a line without its newline (at most 300 bytes). undef when it did not come in
# time: the caller closes it and waits on. The alarm is left at what is left before $until.
sub read_head {
  my ($c, $until, $http) = @_;
  my ($head, $ch, $room) = ("", "", $until - time);
  my $whole = eval {
    local $SIG{__DIE__};
    local $SIG{ALRM} = sub { die "slow\n" };
    alarm($room < $HEADER_WINDOW ? ($room > 0 ? $room : 1) : $HEADER_WINDOW);
    if ($http) { while (length $head < 8192 && $head !~ /\r?\n\r?\n\z/ && sysread($c, $ch, 1)) { $head .= $ch } }
    else { while (length $head < 300 && sysread($c, $ch, 1) && $ch ne "\n") { $head .= $ch } }
    alarm 0;  # a header read whole is kept, however near the window's end it came
    1;
  };
  alarm(($until - time) > 0 ? $until - time : 1);
  return $whole ? $head : undef;
}

1;
