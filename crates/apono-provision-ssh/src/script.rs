//! The fixed shell scripts the provisioner runs on a server, and the one way to build the
//! command line that runs them. Public so that operators can audit exactly what runs as root.
//!
//! **Architecture invariant**: no value is ever spliced into script text. Each action sends one
//! command line, `sudo -n /bin/sh -c '<constant script>' apono-ssh '<arg>'…`, whose arguments
//! were validated (by the core name grammar, or because this crate formatted them) and are
//! then single-quoted; key material travels on the channel's standard input.
//!
//! Files in a user's home directory are only ever touched *as that user* (`setpriv`), so a
//! user who replaces `~/.ssh` with a symbolic link cannot make root write elsewhere.

/// Shared start of every root script: strict mode, a fixed `PATH`, a server-wide lock (two
/// actions on one server never interleave), and the ownership test.
macro_rules! prelude {
    () => {
        r#"set -eu
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LC_ALL=C
export PATH LC_ALL
exec 9>>/run/apono-provision-ssh.lock
flock -w 60 9
marker=apono-managed
gecos='apono-managed account'
is_ours() {
  case " $(id -Gn -- "$1" 2>/dev/null) " in
    *" $marker "*) [ "$(getent passwd "$1" | cut -d: -f5)" = "$gecos" ] ;;
    *) false ;;
  esac
}
as_user() {
  u=$1; shift
  setpriv --reuid="$(id -u -- "$u")" --regid="$(id -g -- "$u")" --init-groups \
    /bin/sh -c "$edit" apono-edit "$@" 9>&-
}
kill_user() {
  uid=$(id -u -- "$1")
  i=0
  while pkill -KILL -U "$uid"; do
    i=$((i + 1))
    [ "$i" -lt 100 ] || break
    sleep 0.05
  done
}
account_expiry() {
  last=$(printf '%s\n' "$1" | awk '$1 == "apono:grant" { print $3 }' | sort | tail -n 1)
  if [ -n "$last" ]; then chage -E "$last" "$2"; fi
}
"#
    };
}

/// Runs as the account (argument 0 of the root script, passed to `setpriv`): rewrites
/// `~/.ssh/authorized_keys` keeping only the marked lines of other grants, plus (for `put`) the
/// line read from standard input; then lists the marked lines that remain as
/// `apono:grant <grant id> <account expiry date> <groups>`. `list` changes nothing.
pub const EDIT_KEYS: &str = r#"set -eu
umask 077
op=$1 home=$2 grant=$3
cd "$home"
file=.ssh/authorized_keys
if [ "$op" != list ]; then
  [ -d .ssh ] || mkdir .ssh
  tmp=$(mktemp .ssh/.apono.XXXXXX)
  if [ -f "$file" ]; then
    awk -v g="$grant" '{ n = split($NF, a, ":"); if (a[1] == "apono-grant" && a[2] != g) print }' "$file" > "$tmp"
  fi
  if [ "$op" = put ]; then cat >> "$tmp"; fi
  mv -f "$tmp" "$file"
fi
if [ -f "$file" ]; then
  awk '{ n = split($NF, a, ":"); if (a[1] == "apono-grant") print "apono:grant", a[2], a[3], a[4] }' "$file"
fi
"#;

/// Grant (and rotation). Arguments: edit script, user, shell, grant id, groups…; standard
/// input: the `authorized_keys` line. Exit 3: the account exists and is not ours; exit 4: a
/// group does not exist.
pub const GRANT: &str = concat!(
    prelude!(),
    r#"edit=$1 user=$2 shell=$3 grant=$4
shift 4
for g in "$@"; do
  getent group "$g" >/dev/null || { echo "apono:missing-group $g"; exit 4; }
done
getent group "$marker" >/dev/null || groupadd --system "$marker"
if getent passwd "$user" >/dev/null; then
  is_ours "$user" || { echo "apono:conflict"; exit 3; }
else
  useradd --create-home --user-group --shell "$shell" --comment "$gecos" --groups "$marker" "$user"
  echo "apono:created"
fi
usermod --password '*' --shell "$shell" "$user"
for g in "$@"; do
  case " $(id -Gn -- "$user") " in
    *" $g "*) ;;
    *) usermod -a -G "$g" "$user"; echo "apono:added $g" ;;
  esac
done
home=$(getent passwd "$user" | cut -d: -f6)
remaining=$(as_user "$user" put "$home" "$grant")
printf '%s\n' "$remaining"
account_expiry "$remaining" "$user"
"#
);

/// Revoke. Arguments: edit script, user, grant id, candidate groups… (the groups the grant
/// asked for); removes the candidates no remaining grant needs; locks the account when no
/// grant remains; kills the user's processes when it locked or removed a group.
pub const REVOKE: &str = concat!(
    prelude!(),
    r#"edit=$1 user=$2 grant=$3
shift 3
getent passwd "$user" >/dev/null || { echo "apono:gone"; exit 0; }
is_ours "$user" || { echo "apono:not-ours"; exit 0; }
home=$(getent passwd "$user" | cut -d: -f6)
remaining=$(as_user "$user" remove "$home" "$grant")
printf '%s\n' "$remaining"
needed=$(printf '%s\n' "$remaining" | awk '$1 == "apono:grant" { print $4 }' | tr ',' '\n')
kill=0
for g in "$@"; do
  if printf '%s\n' "$needed" | grep -qxF -- "$g"; then continue; fi
  case " $(id -Gn -- "$user") " in
    *" $g "*) gpasswd -d "$user" "$g" >/dev/null; echo "apono:removed $g"; kill=1 ;;
  esac
done
if printf '%s\n' "$remaining" | grep -q '^apono:grant '; then
  account_expiry "$remaining" "$user"
else
  usermod -L "$user"
  chage -E 0 "$user"
  echo "apono:locked"
  kill=1
fi
if [ "$kill" = 1 ]; then kill_user "$user"; fi
"#
);

/// Cleanup. Arguments: edit script, user. Deletes the account if it is ours and no marked key
/// remains; removes the marker group once it has no member. Exit 3: not ours.
pub const DELETE: &str = concat!(
    prelude!(),
    r#"edit=$1 user=$2
if getent passwd "$user" >/dev/null; then
  is_ours "$user" || { echo "apono:conflict"; exit 3; }
  home=$(getent passwd "$user" | cut -d: -f6)
  if [ -d "$home" ] && as_user "$user" list "$home" - | grep -q '^apono:grant '; then
    echo "apono:in-use"
    exit 0
  fi
  usermod -L "$user"
  chage -E 0 "$user"
  kill_user "$user"
  if ! userdel -r "$user" 2>/dev/null; then
    if getent passwd "$user" >/dev/null; then userdel -f -r "$user"; fi
  fi
  echo "apono:deleted"
else
  echo "apono:gone"
fi
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
