#!/bin/sh
# Adds one workload to a copy of the base root filesystem.
# Usage: add-workload.sh ROOTFS RECIPE_DIR WORKLOAD NETWORK(0|1)
# The binary itself is already at ROOTFS/usr/local/bin/WORKLOAD.
set -eu
root="$1"
recipe="$2"
workload="$3"
network="$4"

unit="$root/etc/systemd/system/harness-workload.service"
sed "s/@WORKLOAD@/$workload/g" "$recipe/harness-workload.service.in" > "$unit"
chmod 0644 "$unit"
ln -sf /etc/systemd/system/harness-workload.service \
    "$root/etc/systemd/system/multi-user.target.wants/harness-workload.service"

if [ "$network" = 1 ]; then
    chroot "$root" systemctl enable --quiet systemd-networkd.service
fi
