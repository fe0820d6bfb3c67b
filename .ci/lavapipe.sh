#!/usr/bin/env bash
# Makes sure a Vulkan driver is present for the wgpu test run: Mesa's lavapipe (a software
# Vulkan implementation) needs no GPU. Installs it with apt when missing; fails loudly when it
# can neither find nor install one, since the wgpu suites cannot run without it.
set -euo pipefail
if compgen -G "/usr/share/vulkan/icd.d/*.json" >/dev/null && ldconfig -p | grep -q "libvulkan.so.1"; then
  echo "vulkan driver present: $(ls /usr/share/vulkan/icd.d/)"
  exit 0
fi
sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo -n"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y --no-install-recommends mesa-vulkan-drivers libvulkan1 \
  || { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends mesa-vulkan-drivers libvulkan1; } \
  || { echo "cannot install Mesa's Vulkan driver (lavapipe): the wgpu suites need it" >&2; exit 1; }
ls /usr/share/vulkan/icd.d/
