#!/usr/bin/env bash
# The Debian packages (cmake/packaging.cmake), built from this build tree and
# installed into a throwaway root with dpkg, as on a host:
#   tests/packaging_test.sh BUILD_DIR
# Checks each package's files and dependencies, the system users and folders
# its postinst makes, its systemd units (systemd-analyze verify), the
# installed binaries (--version, init and check against the test's
# PostgreSQL, $STRATA_TEST_PG), a second install (an upgrade: nothing
# doubled) and removal (binaries and units gone; users and state kept).
set -euo pipefail
build=$(cd "${1:?usage: packaging_test.sh BUILD_DIR}" && pwd)
work=$(mktemp -d /tmp/strata-pkg-XXXXXX)
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }
expect() {  # expect DESCRIPTION COMMAND...: the command succeeds
  local what=$1; shift
  if "$@" >"$work/out" 2>&1; then pass "$what"; else fail "$what"; sed 's/^/    /' "$work/out"; fi
}

echo "== cpack"
cpack --config "$build/CPackConfig.cmake" -B "$work/out.d" >"$work/cpack.log" 2>&1 ||
  { cat "$work/cpack.log"; exit 1; }
debs=("$work"/out.d/*.deb)
[ ${#debs[@]} -eq 5 ] && pass "five packages: $(cd "$work/out.d" && echo *.deb)" ||
  fail "expected 5 packages, got ${#debs[@]}"
deb() { echo "$work"/out.d/"$1"_*.deb; }

echo "== contents and dependencies"
declare -A files=(
  [strata-site]="usr/bin/strata-cas usr/bin/strata-primary usr/bin/strata-secondary
    usr/lib/systemd/system/strata-cas.service usr/lib/systemd/system/strata-primary.service
    usr/lib/systemd/system/strata-secondary.service usr/lib/sysusers.d/strata-site.conf
    usr/lib/tmpfiles.d/strata-site.conf usr/share/doc/strata-site/examples/p01.conf"
  [strata-mp]="usr/bin/strata-mp usr/lib/systemd/system/strata-mp.service
    usr/lib/sysusers.d/strata-mp.conf usr/lib/tmpfiles.d/strata-mp.conf"
  [strata-dp]="usr/bin/strata-dp usr/lib/systemd/system/strata-dp.service
    usr/lib/sysusers.d/strata-dp.conf usr/lib/tmpfiles.d/strata-dp.conf"
  [strata-provider]="usr/bin/strata-provider usr/bin/stratactl usr/bin/strata-pki
    usr/lib/systemd/system/strata-provider.service usr/lib/sysusers.d/strata-provider.conf"
  [strata-agent]="usr/bin/strata-agent usr/lib/systemd/system/strata-agent.service
    usr/lib/tmpfiles.d/strata-agent.conf"
)
for pkg in "${!files[@]}"; do
  listing=$(dpkg-deb -c "$(deb "$pkg")" | awk '{print $6}')
  for f in ${files[$pkg]}; do
    grep -qx "./$f" <<<"$listing" || fail "$pkg lacks /$f"
  done
  depends=$(dpkg-deb -f "$(deb "$pkg")" Depends)
  # dpkg-shlibdeps named Debian's shared libraries the binaries link.
  for lib in libgrpc++ libprotobuf libssl3 libc6 systemd; do
    grep -q "$lib" <<<"$depends" || fail "$pkg does not depend on $lib: $depends"
  done
  # Whole listings into variables: `grep -q` ending a pipe early would fail
  # it under pipefail (SIGPIPE), at random.
  control=$(dpkg-deb --ctrl-tarfile "$(deb "$pkg")" | tar -t)
  for script in postinst prerm postrm; do
    grep -qx "./$script" <<<"$control" || fail "$pkg has no $script"
  done
done
grep -q nginx <<<"$(dpkg-deb -f "$(deb strata-dp)" Depends)" || fail "strata-dp does not depend on nginx"
grep -q libpqxx <<<"$(dpkg-deb -f "$(deb strata-site)" Depends)" || fail "strata-site does not depend on libpqxx"
grep -q libcurl <<<"$(dpkg-deb -f "$(deb strata-agent)" Depends)" || fail "strata-agent does not depend on libcurl"
[ $failures -eq 0 ] && pass "files, maintainer scripts and dependencies of every package"

echo "== install into a throwaway root"
root=$work/root
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/etc"
touch "$root/var/lib/dpkg/status"
# The units' dependencies (sysinit.target...) for systemd-analyze, as on a host.
mkdir -p "$root/lib/systemd" && cp -a /usr/lib/systemd/system "$root/lib/systemd/"
# Maintainer scripts run outside a chroot with DPKG_ROOT set (the root holds no
# shell or libraries); dependencies are the host's, hence --force-depends.
install_all() {
  dpkg --root="$root" --log=/dev/null --force-script-chrootless --force-depends -i "${debs[@]}" \
    >"$work/dpkg.log" 2>&1
}
expect "dpkg -i of the five packages" install_all
installed=$(dpkg --root="$root" -l 'strata-*' | grep -c '^ii' || true)
[ "$installed" -eq 5 ] && pass "dpkg lists five installed packages" || fail "dpkg lists $installed installed"

uid() { awk -F: -v u="$1" '$1 == u {print $3}' "$root/etc/passwd"; }
gid() { awk -F: -v g="$1" '$1 == g {print $3}' "$root/etc/group"; }
for u in strata-site strata-mp strata-dp strata-provider; do
  line=$(grep "^$u:" "$root/etc/passwd" || true)
  [ -n "$line" ] || { fail "no system user $u"; continue; }
  [[ "$line" == *:/usr/sbin/nologin ]] || fail "$u can log in: $line"
  [ "$(uid "$u")" -lt 1000 ] || fail "$u is not a system user: $line"
  [ -n "$(gid "$u")" ] || fail "no group $u"
  # No shared group: one service cannot read another's key or configuration.
  [ "$(grep -c ":$u\(,\|$\)" "$root/etc/group")" -eq 0 ] || fail "$u is in another group"
done
pass "system users: $(cut -d: -f1 "$root/etc/passwd" | tr '\n' ' ')"
owner() { stat -c '%u:%g %a' "$root$1"; }
[ "$(owner /etc/strata)" = "0:0 755" ] || fail "/etc/strata is $(owner /etc/strata)"
[ "$(owner /etc/strata/pki)" = "0:0 755" ] || fail "/etc/strata/pki is $(owner /etc/strata/pki)"
for r in site mp dp; do
  want="$(uid strata-$r):$(gid strata-$r) 750"
  [ "$(owner /var/lib/strata/$r)" = "$want" ] || fail "/var/lib/strata/$r is $(owner /var/lib/strata/$r), want $want"
done
[ "$(owner /var/lib/strata/agent)" = "0:0 700" ] || fail "/var/lib/strata/agent is $(owner /var/lib/strata/agent)"
pass "folders: /etc/strata $(owner /etc/strata), /var/lib/strata/mp $(owner /var/lib/strata/mp)"

units=(strata-cas strata-primary strata-secondary strata-mp strata-dp strata-provider strata-agent)
verify() { (cd / && systemd-analyze verify --root="$root" "${units[@]/%/.service}") >"$work/verify" 2>&1; }
if verify && [ ! -s "$work/verify" ]; then
  pass "systemd-analyze verify of ${#units[@]} units: clean"
else
  fail "systemd-analyze verify:"; sed 's/^/    /' "$work/verify"
fi
for u in strata-mp strata-primary strata-dp strata-provider; do
  exposure=$( (cd / && systemd-analyze security --offline=true --root="$root" "$u.service") 2>&1 |
    grep -o 'Overall exposure level.*' || true)
  echo "   $u: ${exposure:-no exposure figure}"
  # systemd's scale: 0 safe .. 10 unsafe; the units aim at "OK" (under 3).
  level=$(awk '{ if (match($0, /[0-9]+\.[0-9]/)) { print substr($0, RSTART, RLENGTH); exit } }' \
    <<<"$exposure")
  [ -n "$level" ] && awk -v l="$level" 'BEGIN { exit !(l < 3.0) }' ||
    fail "$u: exposure ${level:-unknown}, not under 3.0"
done
grep -q '^LimitNOFILE=65536' "$root/usr/lib/systemd/system/strata-mp.service" ||
  fail "strata-mp.service does not raise LimitNOFILE for 25,000+ agents"

echo "== the installed binaries"
before=$failures
for b in strata-cas strata-primary strata-secondary strata-mp strata-dp strata-provider stratactl \
  strata-pki strata-agent; do
  v=$("$root/usr/bin/$b" --version 2>&1 || true)
  [[ "$v" =~ ^(strata|stratactl|strata-pki)\ [0-9] ]] || fail "$b --version: $v"
done
for b in strata-cas strata-primary strata-secondary strata-mp strata-dp strata-provider strata-agent; do
  help=$("$root/usr/bin/$b" --help 2>&1 || true)  # --help exits 1 (Abseil)
  grep -q "$b init FILE" <<<"$help" && grep -q "$b check --config FILE" <<<"$help" ||
    fail "$b --help does not show init and check"
done
[ $failures -eq $before ] && pass "every binary runs from the package (--version; --help shows init and check)"
conf=$root/etc/strata/primary.conf
init_primary() { (umask 077 && "$root/usr/bin/strata-primary" init "$@"); }
expect "strata-primary init writes /etc/strata/primary.conf (under umask 077)" \
  init_primary "$conf" --site_code P01 --database "$STRATA_TEST_PG" \
  --parent cas.example.net:7250
# Mode 0640 whatever the umask (its group, strata-site on a host with the
# package, is given by init as root; tests/setup_test.cc checks that part).
[ "$(stat -c '%a' "$conf")" = "640" ] && pass "the written configuration is 0640" ||
  fail "primary.conf is $(stat -c '%a' "$conf")"
"$root/usr/bin/strata-primary" check --config "$conf" >"$work/check" 2>&1 || true
grep -q '^ok    database: PostgreSQL 15' "$work/check" && grep -q 'wal_level = logical' "$work/check" &&
  pass "check reaches the database: $(grep '^ok    database' "$work/check")" ||
  { fail "check did not reach the database"; sed 's/^/    /' "$work/check"; }
grep -q '^FAIL  certificate /etc/strata/pki/site-P01.pem' "$work/check" &&
  pass "check names the missing certificate at its default path" ||
  { fail "check did not report the missing certificate"; sed 's/^/    /' "$work/check"; }

echo "== reinstall (an upgrade) and removal"
users_before=$(wc -l <"$root/etc/passwd")
expect "dpkg -i again" install_all
[ "$(wc -l <"$root/etc/passwd")" -eq "$users_before" ] && pass "no user made twice" ||
  fail "users doubled: $(cat "$root/etc/passwd")"
remove_mp() {
  dpkg --root="$root" --log=/dev/null --force-script-chrootless --force-depends -r strata-mp \
    >"$work/dpkg.log" 2>&1
}
expect "dpkg -r strata-mp" remove_mp
[ ! -e "$root/usr/bin/strata-mp" ] && [ ! -e "$root/usr/lib/systemd/system/strata-mp.service" ] &&
  pass "strata-mp's binary and unit are gone" || fail "strata-mp left its binary or unit"
[ -d "$root/var/lib/strata/mp" ] && grep -q '^strata-mp:' "$root/etc/passwd" &&
  [ -f "$conf" ] && pass "its user, state folder and /etc/strata are kept" ||
  fail "removal took the user, state or configuration"

if [ $failures -ne 0 ]; then
  echo "packaging_test: $failures check(s) failed"
  exit 1
fi
echo "packaging_test: all checks passed"
