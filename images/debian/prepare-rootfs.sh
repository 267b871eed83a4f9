#!/bin/sh
# Turn a fresh `debootstrap --variant=minbase` tree into a container base image tree.
#
# Usage: prepare-rootfs.sh ROOTFS SUITE MIRROR SECURITY_MIRROR
#
# Run by scripts/local-images.sh between debootstrap and `docker import`. It mirrors what
# the official Debian images (debuerreotype, "slim" variant) do to a debootstrap tree:
# apt keeps no caches or downloaded lists, dpkg skips docs/man pages/translations, and
# maintainer scripts never start services (there is no init system in a container).
set -eu

root=$1
suite=$2
mirror=$3
security_mirror=$4

[ -x "$root/usr/bin/dpkg" ] || { echo "prepare-rootfs: $root is not a Debian tree" >&2; exit 1; }

# Sources: the release, its updates and its security fixes (plain http: no CA bundle needed).
cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security_mirror $suite-security main
EOF

# apt: no package caches, no translations, compressed lists (same files as debuerreotype's).
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
echo 'Acquire::GzipIndexes "true";' >"$root/etc/apt/apt.conf.d/docker-gzip-indexes"
echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"

# dpkg: no fsync per file (a container layer is thrown away on failure anyway), and the
# "slim" path excludes: documentation (copyright files kept), man/info pages, translations.
mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
echo 'force-unsafe-io' >"$root/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF

# Maintainer scripts must not try to start daemons at install time.
printf '#!/bin/sh\n# installed by devstack prepare-rootfs.sh: no service starts in image builds\nexit 101\n' \
    >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"

# Apply the slim excludes to what debootstrap already unpacked.
find "$root/usr/share/doc" -mindepth 1 -not -type d -not -name copyright -delete 2>/dev/null || :
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || :
for d in man groff info lintian linda locale; do
    rm -rf "${root:?}/usr/share/$d"
    mkdir -p "$root/usr/share/$d"
done

# Trim caches, downloaded lists and logs; the engine provides hostname and resolv.conf.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
    "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/archives/partial/* \
    "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old \
    "$root"/var/log/apt/* "$root"/var/log/bootstrap.log "$root"/tmp/* "$root"/var/tmp/*
mkdir -p "$root/var/lib/apt/lists/partial"
for f in "$root"/var/log/*.log "$root"/var/log/btmp "$root"/var/log/wtmp "$root"/var/log/lastlog; do
    [ -f "$f" ] && : >"$f"
done
: >"$root/etc/resolv.conf"
echo localhost >"$root/etc/hostname"
