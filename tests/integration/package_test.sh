#!/usr/bin/env bash
# The Debian package: builds it with CPack (or takes ZAYA_DEB=path/to/zayad_*.deb), checks its
# control data and file list, installs it into a throw-away root with
#   dpkg --root=ROOT --force-not-root --force-script-chrootless --force-depends -i
# (the maintainer scripts run chrootless with DPKG_ROOT=ROOT, so they create the user, folders and
# enable symlink inside ROOT), runs the installed zayad and zaya from ROOT against the installed
# model and plugin, then purges the package again. The host is never modified: /etc/passwd, group,
# shadow, gshadow, dpkg's status and /etc/systemd/system are compared before and after.
#
#   package_test.sh SOURCE_DIR BUILD_DIR
#
# Exits 77 (skipped) when BUILD_DIR was not configured with -DCMAKE_INSTALL_PREFIX=/usr (a package
# must be built from a /usr tree: zayad compiles its plugin and model folders in) and ZAYA_DEB is not
# set, or when dpkg / root (or fakeroot) are missing.
set -euo pipefail
src=${1:?usage: package_test.sh SOURCE_DIR BUILD_DIR}
build=${2:?usage: package_test.sh SOURCE_DIR BUILD_DIR}

skip() { echo "SKIP: $*"; exit 77; }
fail=0
check() {  # check DESCRIPTION COMMAND...: runs the command, reports, remembers a failure
  local what=$1
  shift
  if "$@" >/dev/null 2>&1; then
    echo "ok   $what"
  else
    echo "FAIL $what"
    fail=1
  fi
}

command -v dpkg-deb >/dev/null && command -v dpkg >/dev/null || skip "dpkg/dpkg-deb not found"

tmp=$(mktemp -d)
daemon_pid=
cleanup() {
  if [[ -n "$daemon_pid" ]]; then kill -9 "$daemon_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# --- the package ----------------------------------------------------------------------------
deb=${ZAYA_DEB:-}
if [[ -z "$deb" ]]; then
  prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
  [[ "$prefix" == /usr ]] ||
    skip "$build has CMAKE_INSTALL_PREFIX=$prefix; the package is built from a tree configured with" \
      "-DCMAKE_INSTALL_PREFIX=/usr (or set ZAYA_DEB=path/to/zayad_VERSION_ARCH.deb)"
  (cd "$build" && cpack -G DEB -B "$tmp/cpack" >"$tmp/cpack.log" 2>&1) ||
    { cat "$tmp/cpack.log"; echo "FAIL cpack -G DEB"; exit 1; }
  deb=$(ls "$tmp"/cpack/zayad_*.deb)
fi
version=$(sed -n 's/^project(zayad VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
arch=$(dpkg --print-architecture)
echo "package: $deb"
check "file name is zayad_${version}_${arch}.deb" test "$(basename "$deb")" = "zayad_${version}_${arch}.deb"

# --- control data ---------------------------------------------------------------------------
info=$(dpkg-deb --info "$deb")
field() { dpkg-deb --field "$deb" "$1"; }
check "Package: zayad" test "$(field Package)" = zayad
check "Version: $version" test "$(field Version)" = "$version"
check "Architecture: $arch" test "$(field Architecture)" = "$arch"
for dep in libzmq5 libsystemd0 systemd; do
  check "Depends names $dep" grep -q "\b$dep\b" <<<"$(field Depends)"
done
mkdir "$tmp/control"
dpkg-deb --control "$deb" "$tmp/control"
for script in postinst prerm postrm; do
  check "maintainer script $script is executable" test -x "$tmp/control/$script"
  check "$script is valid sh" sh -n "$tmp/control/$script"
done
check "conffiles lists /etc/zayad/zayad.toml" grep -qx /etc/zayad/zayad.toml "$tmp/control/conffiles"
check "postinst creates the user (systemd-sysusers)" grep -q 'systemd-sysusers' "$tmp/control/postinst"
check "postinst creates the folders (systemd-tmpfiles)" grep -q 'systemd-tmpfiles' "$tmp/control/postinst"
check "postinst enables zayad.service" grep -q 'enable zayad.service' "$tmp/control/postinst"
check "prerm stops the daemon and socket" grep -q 'stop zayad.socket zayad.service' "$tmp/control/prerm"
grep -q 'DPKG_ROOT' "$tmp/control/postinst" ||
  { echo "FAIL postinst ignores DPKG_ROOT: refusing a chrootless install that would touch this host"; exit 1; }

# --- file list: FHS places, root-owned -------------------------------------------------------
dpkg-deb --contents "$deb" >"$tmp/contents"
paths=$(awk '{print $NF}' "$tmp/contents" | sed 's|^\./|/|')
has() { grep -qx "$1" <<<"$paths"; }
for p in /usr/bin/zayad /usr/bin/zaya /usr/lib/systemd/system/zayad.service \
  /usr/lib/systemd/system/zayad.socket /usr/lib/sysusers.d/zayad.conf \
  /usr/lib/tmpfiles.d/zayad.conf /etc/zayad/zayad.toml \
  /usr/share/zayad/models/zaya-tiny-reasoner/config.json \
  /usr/share/zayad/models/zaya-tiny-reasoner/model.safetensors \
  /usr/share/zayad/models/zaya-tiny-reasoner/tokenizer.json \
  /usr/share/doc/zayad/operations.md /usr/share/doc/zayad/examples/zayad-hip.conf; do
  check "contains $p" has "$p"
done
plugin=$(grep -E '^/usr/lib/[^/]+/zayad/plugins/libzaya-backend-cpu\.so$' <<<"$paths" || true)
check "contains the CPU plugin in /usr/lib/<multiarch>/zayad/plugins/" test -n "$plugin"
check "binaries are mode 0755" test "$(grep -cE '^-rwxr-xr-x .* \./usr/bin/zaya(d)?$' "$tmp/contents")" = 2
check "every entry is owned by root/root" test -z "$(awk '$2 != "root/root"' "$tmp/contents")"
check "nothing outside /etc and /usr" test -z "$(grep -vE '^/(etc|usr)(/|$)' <<<"$paths" | grep -v '^/$')"
check "nothing in /usr/local" test -z "$(grep '^/usr/local' <<<"$paths")"
dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/lib/systemd/system/zayad.service >"$tmp/zayad.service"
check "zayad.service runs /usr/bin/zayad --config /etc/zayad/zayad.toml" \
  grep -qx 'ExecStart=/usr/bin/zayad --config /etc/zayad/zayad.toml' "$tmp/zayad.service"
dpkg-deb --fsys-tarfile "$deb" | tar -xO ./etc/zayad/zayad.toml >"$tmp/zayad.toml"
check "zayad.toml points at the bundled model" \
  grep -qx 'path = "/usr/share/zayad/models/zaya-tiny-reasoner"' "$tmp/zayad.toml"

# --- install into a throw-away root ----------------------------------------------------------
run_dpkg=(dpkg)
if [[ $(id -u) != 0 ]]; then
  command -v fakeroot >/dev/null || { [[ $fail == 0 ]] || exit 1; skip "not root and no fakeroot: package contents checked, install not run"; }
  run_dpkg=(fakeroot dpkg)
fi
command -v systemd-sysusers >/dev/null ||
  { [[ $fail == 0 ]] || exit 1; skip "systemd-sysusers missing: package contents checked, install not run"; }

host_state() {
  md5sum /etc/passwd /etc/group /etc/shadow /etc/gshadow /var/lib/dpkg/status 2>/dev/null || true
  find /etc/systemd/system /etc/zayad /usr/bin/zayad /usr/bin/zaya /run/zayad /var/lib/zayad \
    2>/dev/null | sort || true
}
host_state >"$tmp/host.before"

root="$tmp/root"
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/triggers"
touch "$root/var/lib/dpkg/status" "$root/var/lib/dpkg/available"
dpkg_root=("${run_dpkg[@]}" --root="$root" --force-not-root --force-script-chrootless
  --force-depends --log=/dev/null)
if "${dpkg_root[@]}" -i "$deb" >"$tmp/install.log" 2>&1; then
  echo "ok   dpkg -i into $root"
else
  cat "$tmp/install.log"
  echo "FAIL dpkg -i into a throw-away root"
  exit 1
fi
check "dpkg records zayad as installed" \
  grep -q "^Status: install ok installed" <(dpkg --root="$root" -s zayad 2>/dev/null)
check "installed /usr/bin/zayad" test -x "$root/usr/bin/zayad"
check "installed $plugin" test -f "$root$plugin"
zayad_uid=$(awk -F: '$1 == "zayad" {print $3}' "$root/etc/passwd" 2>/dev/null || true)
check "postinst created system user zayad in ROOT/etc/passwd" test -n "$zayad_uid"
check "zayad is a system account (uid < 1000) with home /var/lib/zayad and no login" \
  grep -qE "^zayad:x:[0-9]{1,3}:[0-9]+:[^:]*:/var/lib/zayad:/usr/sbin/nologin$" "$root/etc/passwd"
check "postinst created group zayad" grep -q '^zayad:' "$root/etc/group"
for d in /run/zayad /var/lib/zayad; do
  check "postinst created $d (0750, owned by zayad)" \
    test "$(stat -c '%a %u' "$root$d" 2>/dev/null)" = "750 $zayad_uid"
done
check "postinst enabled zayad.service (multi-user.target.wants symlink)" test \
  "$(readlink "$root/etc/systemd/system/multi-user.target.wants/zayad.service")" = \
  /usr/lib/systemd/system/zayad.service

# --- run what was installed ------------------------------------------------------------------
check "installed zayad --version prints $version" \
  grep -qx "zayad $version" <("$root/usr/bin/zayad" --version)
"$root/usr/bin/zayad" --check-config --config "$root/etc/zayad/zayad.toml" >"$tmp/check.out" 2>&1 ||
  true
check "installed zayad --check-config accepts the installed config" \
  "$root/usr/bin/zayad" --check-config --config "$root/etc/zayad/zayad.toml"
model=$(sed -n 's/^path = "\(.*\)"$/\1/p' "$tmp/check.out" | head -1)
check "effective model.path ($model) is the installed model" test -f "$root$model/model.safetensors"

# The installed daemon and client, on the installed model and plugin: the paths that are absolute
# on a real system are prefixed with ROOT (model.path, the plugin folder), the socket is private.
sed -e "s|^path = \"$model\"$|path = \"$root$model\"|" \
  -e "s|^endpoint = .*|endpoint = \"ipc://$tmp/zayad.sock\"|" \
  "$root/etc/zayad/zayad.toml" >"$tmp/run.toml"
ZAYA_PLUGIN_DIR="$root$(dirname "$plugin")" "$root/usr/bin/zayad" --foreground \
  --config "$tmp/run.toml" 2>"$tmp/zayad.log" &
daemon_pid=$!
for _ in $(seq 300); do
  [[ -S "$tmp/zayad.sock" ]] && break
  kill -0 "$daemon_pid" 2>/dev/null || break
  sleep 0.1
done
check "installed zayad serves (socket appeared)" test -S "$tmp/zayad.sock"
zaya=("$root/usr/bin/zaya")
check "installed zaya health: healthy" grep -q '^healthy' \
  <("${zaya[@]}" health --endpoint "ipc://$tmp/zayad.sock" 2>&1)
check "installed zaya ask answers with the bundled model" \
  "${zaya[@]}" ask "What is 2+3?" --max-tokens 16 --endpoint "ipc://$tmp/zayad.sock"
kill -TERM "$daemon_pid" 2>/dev/null || true
rc=0
wait "$daemon_pid" || rc=$?
daemon_pid=
check "installed zayad stops cleanly on SIGTERM (exit 0)" test "$rc" = 0
[[ $fail == 0 ]] || { echo "--- zayad log"; cat "$tmp/zayad.log"; }

# --- purge -----------------------------------------------------------------------------------
if "${dpkg_root[@]}" --purge zayad >"$tmp/purge.log" 2>&1; then
  echo "ok   dpkg --purge from $root"
else
  cat "$tmp/purge.log"
  echo "FAIL dpkg --purge"
  fail=1
fi
check "purge removed the binaries" test ! -e "$root/usr/bin/zayad"
check "purge disabled the service" test ! -L "$root/etc/systemd/system/multi-user.target.wants/zayad.service"
check "purge removed /var/lib/zayad and /etc/zayad" test ! -e "$root/var/lib/zayad" -a ! -e "$root/etc/zayad"

host_state >"$tmp/host.after"
if diff "$tmp/host.before" "$tmp/host.after"; then
  echo "ok   the host's users, dpkg database and systemd units are unchanged"
else
  echo "FAIL the host changed (diff above)"
  fail=1
fi
exit $fail
