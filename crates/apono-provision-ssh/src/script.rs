//! The fixed shell scripts the provisioner runs on a server, and the one way to build the
//! command line that runs them. Public so that operators can audit exactly what runs as root.
//!
//! **Architecture invariant**: no value is ever spliced into script text. Each action sends one
//! command line, `sudo -n /bin/sh -c '<constant script>' apono-ssh '<arg>'…`, whose arguments
//! were validated (by the core name grammar, or because this crate formatted them) and are
//! then single-quoted; key material travels on the channel's standard input.
//!
//! **Architecture invariant**: nothing the grantee can write decides anything. What revoke and
//! cleanup decide (which grants remain, which groups they need, the account's expiry date,
//! whether the account is in use) comes only from the root-owned records under
//! [`STATE_DIR`] (one file per grant, written by [`GRANT`] from validated arguments) and from
//! the connector's own grant state. The grantee's home directory is never read by root.
//!
//! Each script works in two phases:
//!
//! 1. **Under the server-wide lock, as root, never touching the home directory**: records,
//!    account creation, groups, password lock, account expiry, and (when the last grant ends)
//!    killing every process of the user. No step of this phase runs as the grantee, so the
//!    grantee cannot stop it, and it cannot hold the lock hostage.
//! 2. **After the lock is released, bounded in time**: `~/.ssh/authorized_keys` is rewritten
//!    *as the user* (`setpriv`, so a symbolic link planted by the user cannot make root write
//!    elsewhere) from lines root composed from the records, under a per-user lock and a
//!    `timeout -s KILL`. A grantee who stops or sabotages this step delays only their own
//!    account's key file, by at most [`EDIT_TIMEOUT_SECS`] seconds.

/// Where the root-owned grant records live on a server (mode 0700, owned by root):
/// `grants/<user>/<grant id>.grant` (`<end, seconds since the epoch> <account expiry date>
/// <groups, comma-separated, or ->`) and `grants/<user>/<grant id>.key` (the grant's
/// `authorized_keys` line); `accounts/<user>` marks an account the connector created;
/// `locks/<user>` serialises the rewriting of one account's key file.
pub const STATE_DIR: &str = "/var/lib/apono-provision-ssh";

/// How long the key-file edit that runs as the user may take before it is killed.
pub const EDIT_TIMEOUT_SECS: u32 = 5;

/// Shared start of every root script: strict mode, a fixed `PATH`, and the functions the
/// scripts share. The paths in it must match [`STATE_DIR`] and [`EDIT_TIMEOUT_SECS`].
macro_rules! prelude {
    () => {
        r#"set -eu
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LC_ALL=C
export PATH LC_ALL
umask 077
state=/var/lib/apono-provision-ssh
marker=apono-managed
gecos='apono-managed account'
# A uid that must own no process: the killer's real uid (see reap).
spare=2147483646
killfail=0
now=$(date +%s)
# The server-wide lock: two root phases on one server never interleave. Nothing that runs as a
# grantee ever runs while it is held.
lock() { exec 9>>/run/apono-provision-ssh.lock; flock -w 60 9; }
unlock() { exec 9>&-; }
check_grant() {
  case $1 in ''|*[!A-Za-z0-9_-]*) echo "apono:bad-argument"; exit 2 ;; esac
}
prepare_state() {
  if [ -L "$state" ] || { [ -e "$state" ] && [ ! -d "$state" ]; }; then
    echo "apono:bad-state-dir"; exit 2
  fi
  [ -d "$state/accounts" ] ||
    install -d -o root -g root -m 0700 "$state" "$state/grants" "$state/locks" "$state/accounts"
}
# Ours: a member of the marker group (only root changes memberships) and either created by
# us (a root-owned record) or carrying our GECOS.
is_ours() {
  case " $(id -Gn -- "$1" 2>/dev/null) " in
    *" $marker "*) ;;
    *) return 1 ;;
  esac
  [ -e "$state/accounts/$1" ] && return 0
  [ "$(getent passwd "$1" | cut -d: -f5)" = "$gecos" ]
}
# The live grants of a user, from the root-owned records: `<grant> <end> <expiry> <groups>`.
live() {
  d=$state/grants/$1
  [ -d "$d" ] || return 0
  for f in "$d"/*.grant; do
    [ -f "$f" ] || continue
    g=${f##*/}
    read -r end exp groups < "$f" || continue
    if [ "$end" -gt "$now" ]; then printf '%s %s %s %s\n' "${g%.grant}" "$end" "$exp" "$groups"; fi
  done
}
# Sets $needed (`,<group>,<group>,…,` of the live grants) and $latest (their latest account
# expiry date, empty when no grant is live).
scan() {
  needed=, latest= best=0
  records=$(live "$1")
  while read -r _ _ exp gs; do
    [ -n "$exp" ] || continue
    needed="$needed$gs,"
    y=${exp%%-*}
    r=${exp#*-}
    n=$y${r%%-*}${r#*-}
    if [ "$n" -gt "$best" ]; then best=$n latest=$exp; fi
  done <<EOF
$records
EOF
}
# Deletes the records of grants that have ended (only under the server-wide lock).
prune() {
  d=$state/grants/$1
  [ -d "$d" ] || return 0
  for f in "$d"/*.grant; do
    [ -f "$f" ] || continue
    end=
    read -r end exp groups < "$f" || true
    case $end in ''|*[!0-9]*) end=0 ;; esac
    if [ "$end" -le "$now" ]; then
      g=${f##*/}
      rm -f -- "$f" "$d/${g%.grant}.key"
    fi
  done
}
# The authorized_keys lines of the live grants, composed by root from the records.
keys_of() {
  live "$1" | while read -r g _; do
    if [ -f "$state/grants/$1/$g.key" ]; then
      while IFS= read -r l; do printf '%s\n' "$l"; done < "$state/grants/$1/$g.key"
    fi
  done
}
# One atomic kill(-1, SIGKILL) with the user's rights, which reaches every process of the
# user at once (a process that keeps forking cannot slip between passes). With perl the
# killer's real uid is $spare and its saved uid root, so the user cannot stop or trace it;
# otherwise setpriv runs it as the user.
reap() {
  if command -v perl >/dev/null 2>&1 && ! getent passwd "$spare" >/dev/null 2>&1 \
    && ! pgrep -U "$spare" >/dev/null 2>&1; then
    timeout -s KILL 5 perl -e '
      my ($u, $k) = @ARGV;
      $< = $k; $> = $u;
      exit 1 unless $< == $k && $> == $u && $u > 0 && $k > 0;
      kill "KILL", -1; exit 0' "$1" "$spare" 9>&- || true
  else
    timeout -s KILL 5 setpriv --reuid="$1" --clear-groups -- kill -9 -1 9>&- || true
  fi
}
# Kills every process of the user until none is left (zombies aside), bounded in time.
kill_all() {
  uid=$(id -u -- "$1" 2>/dev/null) || return 0
  [ "$uid" -gt 0 ] || return 1
  n=0
  # Called after the account was changed (expired and locked, or a group removed) and its
  # scheduled jobs removed: a process holding what was taken away can only come from another
  # one, so none now means none.
  while [ "$(ps -o stat= -U "$uid" 2>/dev/null | grep -cv '^Z' || true)" -gt 0 ]; do
    [ "$n" -lt 100 ] || return 1
    [ "$n" = 0 ] || sleep 0.1
    n=$((n + 1))
    pkill -STOP -U "$uid" 2>/dev/null || true
    reap "$uid"
    pkill -KILL -U "$uid" 2>/dev/null || true
  done
}
# Scheduled work and lingering services of the user.
forget_jobs() {
  if command -v crontab >/dev/null 2>&1; then crontab -r -u "$1" >/dev/null 2>&1 || true; fi
  if command -v atq >/dev/null 2>&1; then
    for j in $(atq 2>/dev/null | awk -v u="$1" '$NF == u { print $1 }'); do
      atrm "$j" 2>/dev/null || true
    done
  fi
  rm -f -- "/var/lib/systemd/linger/$1"
  rm -rf -- "/run/sudo/ts/$1"
}
# The last grant is gone: end the account first, without touching its home directory.
end_account() {
  chage -E 1 "$1"
  usermod -L "$1"
  usermod -G "$marker" "$1"
  echo "apono:locked"
  forget_jobs "$1"
  kill_all "$1" || killfail=1
}
# Makes the account hold exactly the union of its live grants: no live grant ends the account;
# otherwise every supplementary group but the marker that no live record names goes (killing
# the user's processes, which still carry it), and the expiry is the latest record's.
settle() {
  u=$1
  scan "$u"
  if [ -z "$latest" ]; then
    end_account "$u"
    return 0
  fi
  kill=0
  primary=$(id -gn -- "$u")
  for g in $(id -Gn -- "$u"); do
    if [ "$g" = "$primary" ] || [ "$g" = "$marker" ]; then continue; fi
    case $needed in *",$g,"*) continue ;; esac
    gpasswd -d "$u" "$g" >/dev/null
    echo "apono:removed $g"
    kill=1
  done
  chage -E "$latest" "$u"
  if [ "$kill" = 1 ]; then kill_all "$u" || killfail=1; fi
}
# Rewrites the user's authorized_keys from the records, as the user, outside the server-wide
# lock, under the per-user lock and a hard timeout. Fails when the edit could not be done.
write_keys() {
  uid=$(id -u -- "$1" 2>/dev/null) || return 0
  gid=$(id -g -- "$1")
  home=$(getent passwd "$1" | cut -d: -f6)
  [ "$uid" -gt 0 ] || return 1
  exec 8>>"$state/locks/$1"
  if ! flock -w 10 8; then exec 8>&-; return 1; fi
  rc=0
  keys_of "$1" | timeout -s KILL 5 setpriv --reuid="$uid" --regid="$gid" --clear-groups \
    -- /bin/sh -c "$edit" apono-edit "$home" 8>&- || rc=$?
  exec 8>&-
  return "$rc"
}
"#
    };
}

/// Runs as the account (through `setpriv`, under a timeout): replaces
/// `~/.ssh/authorized_keys` with standard input, which root composed from the records. Whatever
/// the user put in the way (`~/.ssh` as a file or a symbolic link, modes 000) is moved aside
/// or repaired with the user's own rights. Reads nothing; its output is not used.
pub const EDIT_KEYS: &str = r#"set -eu
umask 077
home=$1
cd -- "$home" 2>/dev/null || { chmod u+rwx -- "$home"; cd -- "$home"; }
if [ -L .ssh ] || { [ -e .ssh ] && [ ! -d .ssh ]; }; then mv -f -- .ssh ".ssh.displaced-$$"; fi
[ -d .ssh ] || mkdir .ssh
if [ ! -r .ssh ] || [ ! -w .ssh ] || [ ! -x .ssh ]; then chmod 700 .ssh; fi
file=.ssh/authorized_keys
if [ -L "$file" ] || { [ -e "$file" ] && [ ! -f "$file" ]; }; then
  mv -f -- "$file" "$file.displaced-$$"
fi
tmp=.ssh/.apono.$$
while IFS= read -r l; do printf '%s\n' "$l"; done > "$tmp"
mv -f -- "$tmp" "$file"
"#;

/// Grant (and rotation). Arguments: edit script, user, shell, grant id, end of the grant
/// (seconds since the epoch), account expiry date (`YYYY-MM-DD`), groups…; standard input:
/// the `authorized_keys` line. Exit 3: the account exists and is not ours; exit 4: a group
/// does not exist; exit 5: the key could not be written to the account's home directory (the
/// grant's record is taken back); exit 7: by the server's clock the grant has already ended
/// (likewise taken back).
pub const GRANT: &str = concat!(
    prelude!(),
    r#"edit=$1 user=$2 shell=$3 grant=$4 end=$5 expiry=$6
shift 6
check_grant "$grant"
case $end in ''|*[!0-9]*) echo "apono:bad-argument"; exit 2 ;; esac
case $expiry in [0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]) ;; *) echo "apono:bad-argument"; exit 2 ;; esac
key=$(cat)
groups=$(IFS=,; printf '%s' "$*")
lock
for g in "$@"; do
  getent group "$g" >/dev/null || { echo "apono:missing-group $g"; exit 4; }
done
prepare_state
d=$state/grants/$user
getent group "$marker" >/dev/null || groupadd --system "$marker"
if getent passwd "$user" >/dev/null; then
  is_ours "$user" || { echo "apono:conflict"; exit 3; }
else
  rm -rf -- "$d"
  useradd --create-home --user-group --shell "$shell" --comment "$gecos" --groups "$marker" "$user"
  : > "$state/accounts/$user"
  echo "apono:created"
fi
install -d -o root -g root -m 0700 "$d"
printf '%s\n' "$key" > "$d/.$grant.key"
mv -f -- "$d/.$grant.key" "$d/$grant.key"
printf '%s %s %s\n' "$end" "$expiry" "${groups:--}" > "$d/.$grant.grant"
mv -f -- "$d/.$grant.grant" "$d/$grant.grant"
usermod --password '*' --shell "$shell" "$user"
for g in "$@"; do
  case " $(id -Gn -- "$user") " in
    *" $g "*) ;;
    *) usermod -a -G "$g" "$user"; echo "apono:added $g" ;;
  esac
done
prune "$user"
scan "$user"
if [ -z "$latest" ]; then
  # By the server's clock the grant has already ended: take everything back at once.
  settle "$user"
  echo "apono:ended-on-server"
  exit 7
fi
chage -E "$latest" "$user"
unlock
if ! write_keys "$user"; then
  lock
  rm -f -- "$d/$grant.grant" "$d/$grant.key"
  settle "$user"
  unlock
  echo "apono:keys-failed"
  exit 5
fi
"#
);

/// Revoke. Arguments: edit script, user, grant id. Deletes the grant's record; when no grant
/// remains, ends the account (expired, password locked, supplementary groups, scheduled jobs
/// and every process gone); otherwise leaves exactly the groups and the expiry of the
/// remaining records (killing the user's processes if a group went). Then, best effort,
/// rewrites the key file. Exit 6: a process of the user survived every attempt to kill it
/// (the account is locked all the same).
pub const REVOKE: &str = concat!(
    prelude!(),
    r#"edit=$1 user=$2 grant=$3
check_grant "$grant"
lock
prepare_state
d=$state/grants/$user
if ! getent passwd "$user" >/dev/null; then
  rm -rf -- "$d" "$state/locks/$user" "$state/accounts/$user"
  echo "apono:gone"
  exit 0
fi
is_ours "$user" || { echo "apono:not-ours"; exit 0; }
rm -f -- "$d/$grant.grant" "$d/$grant.key"
prune "$user"
settle "$user"
unlock
write_keys "$user" || echo "apono:keys-unchanged"
if [ "$killfail" != 0 ]; then echo "apono:processes-remain"; exit 6; fi
"#
);

/// Cleanup. Arguments: edit script, user. Deletes the account if it is ours and no live
/// record remains (ending it first, as the last revoke does); removes the marker group once it
/// has no member. Exit 3: not ours; exit 6: a process of the user survived.
pub const DELETE: &str = concat!(
    prelude!(),
    r#"edit=$1 user=$2
lock
prepare_state
d=$state/grants/$user
if getent passwd "$user" >/dev/null; then
  is_ours "$user" || { echo "apono:conflict"; exit 3; }
  prune "$user"
  if [ -n "$(live "$user")" ]; then
    echo "apono:in-use"
    exit 0
  fi
  end_account "$user"
  if [ "$killfail" != 0 ]; then echo "apono:processes-remain"; exit 6; fi
  if ! userdel -r "$user" 2>/dev/null; then
    if getent passwd "$user" >/dev/null; then userdel -f -r "$user"; fi
  fi
  echo "apono:deleted"
else
  echo "apono:gone"
fi
rm -rf -- "$d" "$state/locks/$user" "$state/accounts/$user"
getent group "$marker" >/dev/null || exit 0
members=$(getent group "$marker" | cut -d: -f4)
[ -n "$members" ] || groupdel "$marker"
"#
);

/// A word that is safe to single-quote: this crate only passes validated names, dates, paths
/// and scripts it owns, so anything else is a bug, refused rather than sent.
fn check_arg(arg: &str) -> bool {
    !arg.is_empty() && !arg.contains('\0')
}

/// `word` as one single-quoted POSIX shell word.
///
/// Every byte but `'` stands for itself inside single quotes; `'` becomes `'\''`.
pub fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The command line that runs `script` as root with `args` as `$1…`; `None` if an argument
/// is empty or contains NUL (never produced by this crate).
pub fn command_line(script: &str, args: &[&str]) -> Option<String> {
    let mut line = String::from("sudo -n /bin/sh -c ");
    line.push_str(&quote(script));
    line.push_str(" apono-ssh");
    for arg in args {
        if !check_arg(arg) {
            return None;
        }
        line.push(' ');
        line.push_str(&quote(arg));
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_words_whole() {
        assert_eq!(quote("a'b"), r"'a'\''b'");
        let line = command_line("echo \"$1\"", &["x y", "$(id)"]).unwrap();
        assert_eq!(
            line,
            r#"sudo -n /bin/sh -c 'echo "$1"' apono-ssh 'x y' '$(id)'"#
        );
        assert!(command_line("true", &[""]).is_none());
    }

    #[test]
    fn scripts_use_the_documented_paths_and_limits() {
        for script in [GRANT, REVOKE, DELETE] {
            assert!(script.contains(&format!("\nstate={STATE_DIR}\n")));
            assert!(script.contains(&format!(
                "timeout -s KILL {EDIT_TIMEOUT_SECS} setpriv --reuid=\"$uid\""
            )));
            // Nothing runs as the user before the server-wide lock is released: the only
            // `setpriv` as the user is the key edit, which runs after `unlock`.
            let edit = script.find("write_keys \"$user\"").unwrap_or(script.len());
            let body = &script[script.find("edit=$1").unwrap()..];
            assert!(!body[..body.len().min(edit)].contains("setpriv"));
        }
    }

    #[test]
    fn scripts_parse() {
        for script in [GRANT, REVOKE, DELETE, EDIT_KEYS] {
            let status = std::process::Command::new("sh")
                .args(["-n", "-c", script])
                .status()
                .unwrap();
            assert!(status.success(), "{script}");
        }
    }
}
