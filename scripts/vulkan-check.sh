#!/usr/bin/env bash
# The Vulkan path: burn's wgpu backend on Mesa's lavapipe (software Vulkan on the CPU):
# tiny-fixture parity with transformers, block size 1 static == greedy AR, and two OPDLM
# training steps against the NdArray losses (tests/tests/wgpu.rs). The last step of
# .ci/run: on a clean clone on 2 idle cores it took 17.4 min (its build 17.2 min) after the
# rest of .ci/run (25.5 min), 42.9 min in all (commit 6900fcb).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian 12: lavapipe is in mesa-vulkan-drivers, the Vulkan loader in libvulkan1.
vulkan_packages=(mesa-vulkan-drivers libvulkan1)
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=()
for package in "${vulkan_packages[@]}"; do
    installed "$package" || missing+=("$package")
done
if ((${#missing[@]})); then
    sudo=()
    [[ $(id -u) == 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update
    "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
fi
lavapipe=/usr/share/vulkan/icd.d/lvp_icd.$(uname -m).json
[[ -f $lavapipe ]] || { echo "lavapipe ICD $lavapipe missing" >&2; exit 1; }
# Only lavapipe: the same CPU Vulkan driver on every runner, whatever GPU it may have.
# --nocapture: the measured differences go to the log, and so does the panic of cubecl's
# device thread when no Vulkan adapter is found (captured, it is lost: the process then
# aborts with "double free or corruption"). Mesa's "XDG_RUNTIME_DIR is invalid" is noise.
VK_DRIVER_FILES="$lavapipe" VK_ICD_FILENAMES="$lavapipe" \
    cargo test -p opdlm-tests --features wgpu --test wgpu -- --nocapture
