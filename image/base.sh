#!/usr/bin/env bash
# Assembles the images' base file system in DIR from Debian packages: the C
# library and libgcc that the binaries link against, and the CA certificates
# that provider endpoints are verified with. No shell, no package manager.
# The Dockerfile's `base` stage and image/build.sh both run this script, so
# the two images share one base.
#
#   image/base.sh DIR [DEB_CACHE]
#
# Needs Debian's apt and dpkg (run `apt-get update` first on a fresh system).
set -euo pipefail

rootfs=${1:?usage: image/base.sh DIR [DEB_CACHE]}
cache=${2:-$(mktemp -d)}
packages=(libc6 libgcc-s1 gcc-12-base ca-certificates)

mkdir -p "$cache"
rootfs=$(realpath -m "$rootfs")
rm -rf "$rootfs"
mkdir -p "$rootfs"

# The candidate versions of the host's apt sources; fetched once per version.
(
	cd "$cache"
	for package in "${packages[@]}"; do
		version=$(apt-cache policy "$package" | awk '/Candidate:/ {print $2}')
		if [[ -z "$version" || "$version" == "(none)" ]]; then
			echo "image/base.sh: no candidate for $package; run apt-get update" >&2
			exit 1
		fi
		# A mirror answers 503 now and then: a few tries before giving up.
		for pause in 0 5 15 30; do
			compgen -G "${package}_${version//:/%3a}_*.deb" >/dev/null && break
			sleep "$pause"
			apt-get download -q -o Acquire::Retries=3 "$package=$version" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true
		done
		compgen -G "${package}_${version//:/%3a}_*.deb" >/dev/null || {
			echo "image/base.sh: could not download $package $version" >&2
			exit 1
		}
	done
)

status="$rootfs/var/lib/dpkg/status.d"
mkdir -p "$status"
for package in "${packages[@]}"; do
	version=$(apt-cache policy "$package" | awk '/Candidate:/ {print $2}')
	deb=$(compgen -G "$cache/${package}_${version//:/%3a}_*.deb" | head -n1)
	dpkg-deb --extract "$deb" "$rootfs"
	# What image scanners read to know the packages and their versions.
	dpkg-deb --field "$deb" >"$status/$package"
	echo "base: $package $version" >&2
done

# The bundle that update-ca-certificates would write, from every certificate
# the package ships (its default selection).
mkdir -p "$rootfs/etc/ssl/certs"
find "$rootfs/usr/share/ca-certificates" -name '*.crt' | LC_ALL=C sort |
	while read -r cert; do sed -e '$a\' "$cert"; done >"$rootfs/etc/ssl/certs/ca-certificates.crt"
[[ -s "$rootfs/etc/ssl/certs/ca-certificates.crt" ]] || {
	echo "image/base.sh: empty CA bundle" >&2
	exit 1
}

# Only the run-time files stay: libraries, the CA bundle, the licences.
# iconv's converters (gconv) go too: the binaries never call iconv.
rm -rf "$rootfs/usr/share/ca-certificates" "$rootfs/usr/sbin" "$rootfs/etc/ca-certificates" \
	"$rootfs/usr/share/lintian" "$rootfs/usr/share/man" "$rootfs/usr/share/info" "$rootfs/usr/share/locale" \
	"$rootfs"/usr/lib/*/gconv
find "$rootfs/usr/share/doc" -mindepth 2 ! -regex '.*/doc/[^/]*/copyright' -delete
find "$rootfs" -depth -type d -empty -delete
mkdir -p "$rootfs/tmp" "$rootfs/etc"
chmod 1777 "$rootfs/tmp"
# Numeric users work without these; they name them for tools that look.
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
