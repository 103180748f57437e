#!/usr/bin/env bash
# The base of the MLflow image (images/mlflow/Containerfile's PYTHON_IMAGE) made without any container registry:
# debootstrap --variant=minbase bookworm with python3 (3.11, what the image's pins are resolved for), python3-venv,
# python-is-python3 (`python` on PATH) and ca-certificates, bookworm-updates and -security applied, apt lists, caches,
# docs and locales removed, written as one tar with sorted names, numeric owners and every mtime clamped to the
# newest Release date of the archive (the same archive state gives the same tar). sandbox/images.py imports it
# into podman as localhost/carbon254/python:3.11-bookworm-<hash>.
#
#   images/python-base/build.sh OUT.tar
# env: MIRROR (default http://deb.debian.org/debian), SECURITY_MIRROR, SUITE (bookworm), SOURCE_DATE_EPOCH,
#      SECURITY=0 skips the updates.
set -euo pipefail
OUT=${1:?usage: build.sh OUT.tar}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SUITE=${SUITE:-bookworm}
SECURITY=${SECURITY:-1}
PKGS=python3,python3-venv,python-is-python3,ca-certificates
WORK=$(mktemp -d "${OUT%/*}/.rootfs-XXXXXX")
trap 'rm -rf "$WORK" "$OUT.tmp"' EXIT
t() { local t0=$SECONDS; "$@"; echo "$(( SECONDS - t0 )) s: $*" >&2; }

rm -rf "$WORK"; mkdir -p "$WORK"
# debootstrap mounts /proc and /sys in the target and unmounts them itself; run it in a private mount
# namespace anyway so that nothing can stay mounted on the host if it is interrupted.
t env -u TMPDIR unshare --mount --propagation private \
  debootstrap --variant=minbase --include="$PKGS" --components=main "$SUITE" "$WORK" "$MIRROR"

cat > "$WORK/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
# keep apt from leaving caches in derived images (like the official Debian images' docker-clean)
cat > "$WORK/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
EOF
echo 'Acquire::Languages "none";' > "$WORK/etc/apt/apt.conf.d/docker-no-languages"
printf 'path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\npath-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\npath-exclude /usr/share/locale/*\npath-include /usr/share/locale/locale.alias\n' \
  > "$WORK/etc/dpkg/dpkg.cfg.d/docker-excludes"

if [ "$SECURITY" = 1 ]; then
  # the host's resolv.conf was copied by debootstrap; chroot without /proc is enough for apt/dpkg here
  t unshare --mount --propagation private chroot "$WORK" \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 sh -ec \
    'export DEBIAN_FRONTEND=noninteractive; apt-get -q update; apt-get -qy upgrade; apt-get -qy clean'
fi

# default timestamp for the layer: the newest archive Date of the suites used (the same archive state gives
# the same tar); files newer than it (written at install time) are clamped to it
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(for f in "$WORK"/var/lib/apt/lists/*Release; do
    date -d "$(sed -n 's/^Date: //p' "$f" | head -1)" +%s; done | sort -n | tail -1)
fi
echo "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH ($(date -u -d "@$SOURCE_DATE_EPOCH"))"

# trim: apt lists/caches, logs, docs/man/locale already installed, host-specific files, python caches
rm -rf "$WORK"/var/lib/apt/lists/* "$WORK"/var/cache/apt/* "$WORK"/var/cache/debconf/*-old \
  "$WORK"/var/lib/dpkg/*-old "$WORK"/var/log/* "$WORK"/tmp/* "$WORK"/var/tmp/* \
  "$WORK"/var/cache/ldconfig/aux-cache "$WORK"/root/.bash_history
find "$WORK/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete 2>/dev/null || true
find "$WORK/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
rm -rf "$WORK"/usr/share/man/* "$WORK"/usr/share/info/*
find "$WORK/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + 2>/dev/null || true
find "$WORK" -xdev -name __pycache__ -type d -prune -exec rm -rf {} +
: > "$WORK/etc/resolv.conf"            # podman/kubelet bind-mount their own
echo localhost > "$WORK/etc/hostname"
[ -e "$WORK/etc/machine-id" ] && : > "$WORK/etc/machine-id"
chroot "$WORK" python --version
chroot "$WORK" dpkg-query -W python3 python3.11 python3-venv python3-pip-whl python-is-python3 ca-certificates passwd

# one deterministic layer: sorted, numeric owners, mtimes clamped to SOURCE_DATE_EPOCH
tar -C "$WORK" --format=gnu --sort=name --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime \
  -cf "$OUT.tmp" .
touch -d "@$SOURCE_DATE_EPOCH" "$OUT.tmp"   # podman import takes the image's Created from it
mv "$OUT.tmp" "$OUT"
echo "rootfs tar: $(du -b "$OUT" | cut -f1) bytes, sha256 $(sha256sum "$OUT" | cut -c1-16)"
