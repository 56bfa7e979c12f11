#!/usr/bin/env bash
# Installs the Debian packages dots1 needs to build, test and run, when they are missing.
# Run as root (or with sudo available). Safe to run again: it installs only what is missing.
set -euo pipefail
packages=(
  build-essential cmake pkg-config git
  libeigen3-dev libboost-test-dev nlohmann-json3-dev
  libpcre2-dev libutf8proc-dev libcli11-dev
  libopenmpi-dev openmpi-bin
  chromium  # tests: the HTML report of `dots1 report` is rendered headless (tests/instrument/)
)
# DOTS1_DEPS_SANITIZERS=1 (tests/run-fuzzers.sh, tests/run-sanitizers.sh): clang with libFuzzer and the
# sanitizer runtimes (libclang-rt-14-dev), and LLVM's OpenMP runtime with its ThreadSanitizer tool Archer.
[[ "${DOTS1_DEPS_SANITIZERS:-}" == 1 ]] && packages+=(clang libclang-rt-14-dev libomp-14-dev)
[[ "${DOTS1_DEPS_EXTRA:-}" ]] && read -r -a extra <<<"$DOTS1_DEPS_EXTRA" && packages+=("${extra[@]}")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
[[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
