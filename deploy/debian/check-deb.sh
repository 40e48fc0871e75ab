#!/usr/bin/env bash
# Checks a built sinkhole .deb: every file the package must hold is in it, the unit runs
# /usr/bin/sinkhole, /etc files are conffiles, and the control data names its dependencies.
#
#   deploy/debian/check-deb.sh target/debian/sinkhole_0.1.0-1_amd64.deb
set -euo pipefail
deb=${1:?usage: check-deb.sh FILE.deb}
fail() { echo "check-deb.sh: $deb: $*" >&2; exit 1; }

contents=$(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|')
for path in \
    /usr/bin/sinkhole \
    /usr/lib/systemd/system/sinkhole.service \
    /etc/sinkhole/sinkhole.toml \
    /etc/sinkhole/lists/tiktok-extra.txt \
    /etc/sinkhole/lists/exceptions.txt \
    /etc/logrotate.d/sinkhole \
    /usr/share/sinkhole/blocklists/tiktok.txt \
    /usr/share/sinkhole/blocklists/encrypted-dns-bypass.txt \
    /usr/share/sinkhole/blocklists/allow-example.txt \
    /usr/share/bash-completion/completions/sinkhole \
    /usr/share/zsh/vendor-completions/_sinkhole \
    /usr/share/fish/vendor_completions.d/sinkhole.fish \
    /usr/share/man/man1/sinkhole.1.gz \
    /usr/share/man/man1/sinkhole-run.1.gz \
    /usr/share/man/man1/sinkhole-install.1.gz \
    /usr/share/doc/sinkhole/copyright; do
  grep -qxF "$path" <<<"$contents" || fail "no $path in the package"
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$deb" "$work/root"
dpkg-deb -e "$deb" "$work/control"
exec_start=$(grep '^ExecStart=' "$work/root/usr/lib/systemd/system/sinkhole.service")
[ "$exec_start" = "ExecStart=/usr/bin/sinkhole run -c /etc/sinkhole/sinkhole.toml" ] \
  || fail "the unit says $exec_start"
"$work/root/usr/bin/sinkhole" --version >/dev/null || fail "its binary does not run here"
# The config names its lists under /etc/sinkhole: checked with those paths moved into the package.
sed "s|\"/etc/sinkhole/|\"$work/root/etc/sinkhole/|g" "$work/root/etc/sinkhole/sinkhole.toml" >"$work/staged.toml"
"$work/root/usr/bin/sinkhole" check -c "$work/staged.toml" >"$work/check.out" 2>&1 \
  || fail "its config does not pass sinkhole check: $(cat "$work/check.out")"
for conffile in /etc/sinkhole/sinkhole.toml /etc/sinkhole/lists/tiktok-extra.txt \
                /etc/sinkhole/lists/exceptions.txt /etc/logrotate.d/sinkhole; do
  grep -qxF "$conffile" "$work/control/conffiles" || fail "$conffile is not a conffile"
done
depends=$(dpkg-deb -f "$deb" Depends)
grep -q 'libc6' <<<"$depends" || fail "Depends does not name libc6: $depends"
# Neither enabled nor started on install (Cargo.toml says why), restarted on upgrade only if it
# ran, stopped on removal: dh_installsystemd's scripts for enable = false, start = false.
grep -q 'deb-systemd-helper update-state sinkhole.service' "$work/control/postinst" \
  || fail "postinst does not register the unit"
grep -q 'deb-systemd-helper debian-installed sinkhole.service' "$work/control/postinst" \
  || fail "postinst enables the unit on a first install"
grep -q 'deb-systemd-invoke start' "$work/control/postinst" && fail "postinst starts the service"
grep -q 'deb-systemd-invoke try-restart sinkhole.service' "$work/control/postinst" \
  || fail "postinst does not restart a running service on upgrade"
grep -q 'deb-systemd-invoke stop sinkhole.service' "$work/control/prerm" || fail "prerm does not stop the service"
echo "check-deb.sh: $deb: ok ($(grep -c . <<<"$contents") entries; Depends: $depends)"
