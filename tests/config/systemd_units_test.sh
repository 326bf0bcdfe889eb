#!/usr/bin/env bash
# Checks the shipped systemd units: `systemd-analyze verify` must accept them without a message,
# and the service's `systemd-analyze security` exposure must stay at or below 2.5 (with and without
# the HIP drop-in). Exits 77 (skipped) where systemd-analyze is missing.
set -euo pipefail
src=${1:?usage: systemd_units_test.sh SOURCE_DIR}
command -v systemd-analyze >/dev/null || { echo "systemd-analyze not found; skipping"; exit 77; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$src/systemd/zayad.service" "$src/systemd/zayad.socket" "$tmp/"
# verify insists that ExecStart names an existing executable; the daemon is not installed here.
sed -i 's|^ExecStart=/usr/bin/zayad |ExecStart=/bin/true |' "$tmp/zayad.service"
grep -q '^ExecStart=/bin/true --config /etc/zayad/zayad.toml$' "$tmp/zayad.service" ||
  { echo "FAIL: unexpected ExecStart line in zayad.service"; exit 1; }
cd "$tmp"

fail=0
check_verify() {
  local out
  if ! out=$(SYSTEMD_UNIT_PATH="$tmp:" systemd-analyze verify zayad.service zayad.socket 2>&1); then
    echo "FAIL: systemd-analyze verify $*:"; echo "$out"; fail=1; return
  fi
  # verify reports some problems as messages with status 0; any message about our units fails.
  if grep -E 'zayad\.(service|socket)|hip\.conf' <<<"$out"; then
    echo "FAIL: systemd-analyze verify $* printed the messages above"; fail=1
  fi
}
check_security() {
  local out level
  out=$(SYSTEMD_UNIT_PATH="$tmp:" systemd-analyze security --offline=yes zayad.service 2>&1) || true
  level=$(sed -n 's/.*Overall exposure level for zayad.service: \([0-9.]*\).*/\1/p' <<<"$out")
  if [[ -z "$level" ]]; then
    echo "FAIL: no exposure level from systemd-analyze security $*:"; echo "$out"; fail=1; return
  fi
  echo "exposure $*: $level"
  if ! awk -v l="$level" 'BEGIN { exit !(l <= 2.5) }'; then
    echo "FAIL: exposure $level $* is above 2.5"; fail=1
  fi
}

check_verify "(plain)"
check_security "(plain)"
mkdir zayad.service.d
cp "$src/systemd/zayad-hip.conf" zayad.service.d/hip.conf
check_verify "(with the HIP drop-in)"
check_security "(with the HIP drop-in)"

# The sysusers/tmpfiles snippets must apply cleanly to an empty root (needs root to chown there).
if [[ $(id -u) == 0 ]] && command -v systemd-sysusers >/dev/null &&
   command -v systemd-tmpfiles >/dev/null; then
  root="$tmp/root"
  mkdir -p "$root/etc"
  touch "$root/etc/passwd" "$root/etc/group" "$root/etc/shadow" "$root/etc/gshadow"
  systemd-sysusers --root="$root" "$src/systemd/sysusers.d/zayad.conf" >/dev/null 2>"$tmp/err" ||
    { echo "FAIL: systemd-sysusers:"; cat "$tmp/err"; fail=1; }
  grep -q '^zayad:x:[0-9]*:[0-9]*:.*:/var/lib/zayad:' "$root/etc/passwd" ||
    { echo "FAIL: sysusers.d/zayad.conf did not create the zayad user"; fail=1; }
  systemd-tmpfiles --root="$root" --create "$src/systemd/tmpfiles.d/zayad.conf" 2>"$tmp/err" ||
    { echo "FAIL: systemd-tmpfiles:"; cat "$tmp/err"; fail=1; }
  for d in run/zayad var/lib/zayad; do
    [[ $(stat -c %a "$root/$d" 2>/dev/null) == 750 ]] ||
      { echo "FAIL: tmpfiles.d/zayad.conf did not create /$d with mode 0750"; fail=1; }
  done
fi
[[ $fail == 0 ]] && echo "systemd units OK"
exit $fail
