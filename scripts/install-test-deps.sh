#!/usr/bin/env bash
# What the test suite needs beyond PyPI: Debian's chromium (browser tests) with fonts-noto-color-emoji
# (the admin page's level icons are emoji: without a colour emoji font they render as empty boxes),
# espeak-ng (real speech for the transcription tests), helm/kubectl/hadolint/kubernetes-validate (chart checks).
# Idempotent: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
dpkg -s fonts-noto-color-emoji >/dev/null 2>&1 || missing+=(fonts-noto-color-emoji)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing Debian packages: ${missing[*]}" >&2
  $SUDO apt-get update -qq >/dev/null || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
VENV="${VENV:-.venv}" scripts/install-deploy-tools.sh >/dev/null
