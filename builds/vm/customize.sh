#!/bin/sh
# mmdebstrap customize hook for the full-VM base image.
# Usage: customize.sh ROOTFS RECIPE_DIR   (run once per base image, as root)
# Makes the stock Debian system boot unattended on QEMU's serial console and
# report the guest's own memory view; the workload is added later, per image.
set -eu
root="$1"
recipe="$2"

echo harness-vm > "$root/etc/hostname"
# The root filesystem is the whole virtio disk (no partition table); no fsck
# pass, since every boot starts from the same pristine image.
printf '/dev/vda / ext4 rw,relatime 0 0\n' > "$root/etc/fstab"

# The serial console belongs to the harness: no login prompts on it.
ln -sf /dev/null "$root/etc/systemd/system/serial-getty@ttyS0.service"
ln -sf /dev/null "$root/etc/systemd/system/getty@tty1.service"

# A fixed machine id, so that no boot is a systemd "first boot".
rm -f "$root/etc/machine-id"
chroot "$root" systemd-machine-id-setup >/dev/null

# Guest memory report, started once the workload has started.
install -m 0755 "$recipe/harness-meminfo" "$root/usr/local/sbin/harness-meminfo"
install -m 0644 "$recipe/harness-meminfo.service" "$root/etc/systemd/system/harness-meminfo.service"
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/harness-meminfo.service \
    "$root/etc/systemd/system/multi-user.target.wants/harness-meminfo.service"

# DHCP on QEMU user networking; systemd-networkd is enabled only in images of
# workloads that listen on a port (add-workload.sh).
install -m 0644 "$recipe/10-dhcp.network" "$root/etc/systemd/network/10-dhcp.network"

# Smaller image: no package lists or caches are needed at run time.
rm -rf "$root/var/lib/apt/lists/"* "$root/var/cache/apt/"*.bin "$root/var/cache/debconf/"*-old
