#!/bin/sh
# persistence_check.sh - list the places Linux programs use to start again after a reboot or
# at a login: cron and at jobs, systemd units and timers, rc.local and init.d, profile and shell
# rc files, authorized_keys, ld.so.preload, desktop autostart, motd and udev hooks.
#
# Read-only; needs no root: what it cannot read is reported as such. Always exits 0.
# Usage: persistence_check.sh [ROOT]     ROOT: a mounted image or a test tree (default /)
# Output: a tab-separated line per item:
#   CATEGORY  PATH  OWNER  MTIME_UTC  SHA256  NOTE
# SHA256 is "unreadable" for a file the caller may not read, "-" for directories.

set -u
LC_ALL=C
export LC_ALL

ROOT=${1:-/}
ROOT=${ROOT%/}
items=0
unreadable=0
TAB=$(printf '\t')
NL='
'

if command -v sha256sum >/dev/null 2>&1; then
    hash_file() { sha256sum < "$1" 2>/dev/null | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then
    hash_file() { shasum -a 256 < "$1" 2>/dev/null | cut -d' ' -f1; }
else
    hash_file() { openssl dgst -sha256 < "$1" 2>/dev/null | sed 's/^.*= *//'; }
fi

if stat -c '%U' / >/dev/null 2>&1; then
    owner_mtime() { stat -c '%U %Y' -- "$1" 2>/dev/null; }
else
    owner_mtime() { stat -f '%Su %m' -- "$1" 2>/dev/null; }
fi

iso_time() {
    date -u -d "@$1" '+%Y-%m-%dT%H:%M:%SZ' 2>/dev/null ||
        date -u -r "$1" '+%Y-%m-%dT%H:%M:%SZ' 2>/dev/null || printf '%s' "$1"
}

# A value on one line: tabs and line breaks in names or notes become '?'.
one_line() { printf '%s' "$1" | tr '\t\n\r' '???'; }

# report CATEGORY PATH [NOTE]: one output line, if PATH exists (a dangling link counts).
report() {
    cat=$1 path=$2 note=${3:-}
    [ -e "$path" ] || [ -L "$path" ] || return 0
    set -- $(owner_mtime "$path")
    owner=${1:-?}
    mtime=${2:+$(iso_time "$2")}
    if [ -d "$path" ]; then
        sum=-
    elif [ -r "$path" ] && [ -e "$path" ]; then
        sum=$(hash_file "$path")
        [ -n "$sum" ] || sum=unreadable
    elif [ -L "$path" ] && [ ! -e "$path" ]; then
        sum=-
        note="dangling link${note:+; $note}"
    else
        sum=unreadable
    fi
    case "$sum $note" in
        unreadable*|*"not readable"*) unreadable=$((unreadable + 1)) ;;
    esac
    if [ -L "$path" ]; then
        note="link to $(readlink "$path" 2>/dev/null)${note:+; $note}"
    fi
    items=$((items + 1))
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$cat" "$(one_line "$path")" "$owner" "${mtime:--}" \
        "$sum" "$(one_line "$note")"
}

# each_in CATEGORY DIR: every entry of DIR (not recursive); a DIR we may not list says so.
each_in() {
    [ -d "$2" ] || return 0
    if [ ! -r "$2" ] || [ ! -x "$2" ]; then
        report "$1" "$2" "directory not readable"
        return 0
    fi
    for entry in "$2"/* "$2"/.[!.]*; do
        [ -e "$entry" ] || [ -L "$entry" ] || continue
        report "$1" "$entry"
    done
}

# The first ExecStart= of a service unit (what it runs), or the schedule of a timer.
unit_note() {
    [ -r "$1" ] && [ -f "$1" ] || return 0
    case $1 in
        *.service) grep -m1 '^ExecStart=' "$1" 2>/dev/null | cut -c11- ;;
        *.timer) grep -E -m1 '^On(Calendar|BootSec|UnitActiveSec|ActiveSec|StartupSec)=' \
                     "$1" 2>/dev/null ;;
    esac
}

# units CATEGORY DIR: unit files and timers under DIR, its *.wants and drop-in *.d included.
units() {
    [ -d "$2" ] || return 0
    found=$(find "$2" -mindepth 1 -maxdepth 2 \( -type f -o -type l \) \
        \( -name '*.service' -o -name '*.timer' -o -name '*.socket' -o -name '*.path' \
           -o -name '*.conf' \) 2>/dev/null | sort)
    old_ifs=$IFS
    IFS=$NL
    set -f
    for unit in $found; do
        IFS=$old_ifs
        report "$1" "$unit" "$(unit_note "$unit")"
        IFS=$NL
    done
    set +f
    IFS=$old_ifs
}

# Home directories: from passwd, and every directory under /home, each once.
homes() {
    seen=
    {
        [ -r "$ROOT/etc/passwd" ] && cut -d: -f6 "$ROOT/etc/passwd" | sed "s|^|$ROOT|"
        printf '%s\n' "$ROOT/root"
        for h in "$ROOT"/home/*; do printf '%s\n' "$h"; done
    } | while IFS= read -r home; do
        [ -d "$home" ] || continue
        case "$NL$seen$NL" in *"$NL$home$NL"*) continue ;; esac
        seen="$seen$NL$home"
        printf '%s\n' "$home"
    done
}

printf '# persistence_check.sh on %s as %s (uid %s), root %s, %s\n' \
    "$(hostname 2>/dev/null || uname -n)" "$(id -un 2>/dev/null || echo '?')" \
    "$(id -u 2>/dev/null || echo '?')" "${ROOT:-/}" "$(date -u '+%Y-%m-%dT%H:%M:%SZ')"
printf 'CATEGORY\tPATH\tOWNER\tMTIME_UTC\tSHA256\tNOTE\n'

# cron and at
report cron "$ROOT/etc/crontab"
report cron "$ROOT/etc/anacrontab"
for d in cron.d cron.hourly cron.daily cron.weekly cron.monthly; do
    each_in cron "$ROOT/etc/$d"
done
each_in cron "$ROOT/var/spool/cron/crontabs"
for f in "$ROOT"/var/spool/cron/*; do
    [ -f "$f" ] && report cron "$f"
done
each_in at "$ROOT/var/spool/cron/atjobs"
each_in at "$ROOT/var/spool/at"

# systemd units and timers (the packaged ones in /lib and /usr/lib are left out)
for d in etc/systemd/system run/systemd/system usr/local/lib/systemd/system \
         etc/systemd/user usr/local/lib/systemd/user; do
    units systemd "$ROOT/$d"
done

# SysV init
report rc "$ROOT/etc/rc.local"
report rc "$ROOT/etc/rc.d/rc.local"
each_in init.d "$ROOT/etc/init.d"

# login shells
for f in profile bash.bashrc bashrc environment zsh/zshrc zsh/zprofile zsh/zshenv \
         zsh/zlogin csh.cshrc csh.login; do
    report profile "$ROOT/etc/$f"
done
each_in profile.d "$ROOT/etc/profile.d"

# preloading and other hooks
if [ -e "$ROOT/etc/ld.so.preload" ]; then
    preload=$(head -c 200 "$ROOT/etc/ld.so.preload" 2>/dev/null | tr '\n' ' ')
    report ld.so.preload "$ROOT/etc/ld.so.preload" "${preload:+preloads: $preload}"
fi
each_in autostart "$ROOT/etc/xdg/autostart"
each_in motd "$ROOT/etc/update-motd.d"
each_in udev "$ROOT/etc/udev/rules.d"

# user_files HOME: shell rc files, ssh keys, desktop autostart, user units
user_files() {
    home=$1
    if [ ! -x "$home" ]; then
        report shellrc "$home" "home directory not readable"
        return 0
    fi
    for f in .bashrc .bash_profile .bash_login .bash_logout .profile .zshrc .zprofile \
             .zshenv .zlogin .cshrc .tcshrc .config/fish/config.fish; do
        report shellrc "$home/$f"
    done
    for f in .ssh/authorized_keys .ssh/authorized_keys2; do
        if [ -r "$home/$f" ] && [ -f "$home/$f" ]; then
            keys=$(grep -c -v -E '^[[:space:]]*(#|$)' "$home/$f" 2>/dev/null)
            report authorized_keys "$home/$f" "${keys:-0} keys"
        else
            report authorized_keys "$home/$f"
        fi
    done
    report ssh "$home/.ssh/rc"
    each_in autostart "$home/.config/autostart"
    units systemd-user "$home/.config/systemd/user"
}

home_list=$(homes)
old_ifs=$IFS
IFS=$NL
set -f
for home_dir in $home_list; do
    IFS=$old_ifs
    set +f
    user_files "$home_dir"
    IFS=$NL
    set -f
done
set +f
IFS=$old_ifs

printf '# %s items, %s not readable\n' "$items" "$unreadable"
exit 0
