#!/usr/bin/env bash
# Builds the Dockerfile's image stages (every `FROM scratch AS NAME`) as OCI
# image layouts with umoci, without a container engine and without pulling an
# image: the `base` stage is image/base.sh run here, the `build` stage is the
# cargo build here. Every instruction of those stages is read from the
# Dockerfile, so the images equal what `docker build` makes of it; an
# instruction this script does not know fails the build instead of being
# skipped.
#
#   image/build.sh [--profile release|debug] [--out DIR] [STAGE...]
#
# Writes DIR/STAGE (default target/image/secgroup-operator, .../secgroup-fakecloud),
# tagged with the crate's version, and prints each image's size.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
out=target/image
stages=()
while (($#)); do
	case "$1" in
	--profile) profile=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	-*) echo "image/build.sh: unknown option $1" >&2; exit 2 ;;
	*) stages+=("$1"); shift ;;
	esac
done
case "$profile" in
release) cargo_profile=(--release) ;;
debug) cargo_profile=() ;;
*) echo "image/build.sh: --profile is release or debug, not '$profile'" >&2; exit 2 ;;
esac
# umoci is a Debian package: installed here when missing and we may (as CI does).
if ! command -v umoci >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq umoci >/dev/null ||
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq umoci >/dev/null; }
fi
for tool in umoci python3 apt-get dpkg-deb objcopy; do
	command -v "$tool" >/dev/null || { echo "image/build.sh: needs $tool (apt-get install umoci)" >&2; exit 1; }
done

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
# Layers and config carry the commit's time, so the same commit gives the same layers.
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
# BuildKit's default PATH for Linux images, which `docker build` records in the config.
default_path=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# The instructions of stage NAME, one a line, comments and blank lines dropped.
stage_lines() {
	awk -v name="$1" '
		/^[[:space:]]*(#|$)/ { next }
		toupper($1) == "FROM" { inside = (tolower($3) == "as" && $4 == name); next }
		inside { print }
	' Dockerfile
}
# The elements of an exec-form (JSON array) instruction, NUL-separated.
json_words() {
	python3 -c 'import json, sys
words = json.loads(sys.argv[1])
assert isinstance(words, list) and all(isinstance(w, str) for w in words), "exec form expected"
sys.stdout.write("".join(w + "\0" for w in words))' "$1"
}
# DIR as an uncompressed layer archive: sorted, owned by root, every file at
# the commit time, so that the same inputs give the same layer digest.
layer_tar() {
	(cd "$1" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort) |
		tar -C "$1" --no-recursion --format=gnu --owner=0 --group=0 --numeric-owner \
			--mtime="@$epoch" -T - -cf "$2"
}

if ((${#stages[@]} == 0)); then
	mapfile -t stages < <(awk 'toupper($1) == "FROM" && $2 == "scratch" && tolower($3) == "as" { print $4 }' Dockerfile)
fi
mkdir -p "$out"

# The `base` stage: image/base.sh, as the Dockerfile runs it.
image/base.sh "$out/base" "$out/debs"

# The `build` stage: the binaries the image stages copy from it.
mapfile -t binaries < <(for stage in "${stages[@]}"; do stage_lines "$stage"; done |
	awk 'toupper($1) == "COPY" && $2 == "--from=build" { sub(".*/", "", $3); print $3 }' | sort -u)
bin_args=()
for binary in "${binaries[@]}"; do bin_args+=(--bin "$binary"); done
cargo build --locked "${cargo_profile[@]}" "${bin_args[@]}"
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')

for stage in "${stages[@]}"; do
	layout="$out/$stage"
	image="$layout:$version"
	rm -rf "$layout" "$out/stage"
	umoci init --layout "$layout"
	umoci new --image "$image"
	config=(--config.env "$default_path")
	while read -r instruction rest; do
		history=(--history.created "$created" --history.created_by "$instruction $rest")
		case "${instruction^^}" in
		COPY)
			read -r from source dest extra <<<"$rest"
			[[ -z "$extra" && -n "$dest" ]] || { echo "image/build.sh: $stage: COPY takes --from=STAGE SRC DEST: $rest" >&2; exit 1; }
			case "$from" in
			--from=base) [[ "$source" == /rootfs ]] || { echo "image/build.sh: $stage: the base stage's output is /rootfs" >&2; exit 1; }
				src="$out/base" ;;
			--from=build) src="$target_dir/$profile/${source##*/}" ;;
			*) echo "image/build.sh: $stage: COPY from '$from' is not known here" >&2; exit 1 ;;
			esac
			# The files land at DEST with their parent directories, as COPY makes them.
			mkdir -p "$out/stage"
			if [[ -d "$src" ]]; then
				mkdir -p "$out/stage/${dest#/}"
				cp -a "$src/." "$out/stage/${dest#/}"
			else
				install -D -m 0755 "$src" "$out/stage/${dest#/}"
				# As the Dockerfile's build stage does: line tables out, symbols kept.
				objcopy --strip-debug "$out/stage/${dest#/}"
			fi
			layer_tar "$out/stage" "$out/layer.tar"
			umoci raw add-layer --image "$image" "${history[@]}" "$out/layer.tar"
			rm -rf "$out/stage" "$out/layer.tar"
			;;
		USER) config+=(--config.user "$rest") ;;
		ENV)
			[[ "$rest" == *=* && "$rest" != *" "* ]] || { echo "image/build.sh: $stage: ENV takes one KEY=VALUE: $rest" >&2; exit 1; }
			config+=(--config.env "$rest") ;;
		EXPOSE)
			for port in $rest; do config+=(--config.exposedports "$port$([[ "$port" == */* ]] || echo /tcp)"); done ;;
		ENTRYPOINT | CMD)
			flag=--config.${instruction,,}
			mapfile -d '' -t words < <(json_words "$rest")
			for word in "${words[@]}"; do config+=("$flag" "$word"); done ;;
		WORKDIR) config+=(--config.workingdir "$rest") ;;
		*) echo "image/build.sh: $stage: instruction $instruction is not supported here" >&2; exit 1 ;;
		esac
	done < <(stage_lines "$stage")
	umoci config --image "$image" --no-history --created "$created" --os linux \
		--architecture "$(dpkg --print-architecture)" "${config[@]}"
	umoci gc --layout "$layout"
	python3 - "$layout" "$version" <<'PY'
import gzip, json, os, sys, tarfile
layout, tag = sys.argv[1], sys.argv[2]
blob = lambda d: os.path.join(layout, "blobs", *d.split(":"))
index = json.load(open(os.path.join(layout, "index.json")))
(desc,) = [m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag]
manifest = json.load(open(blob(desc["digest"])))
compressed = desc["size"] + manifest["config"]["size"] + sum(l["size"] for l in manifest["layers"])
unpacked = 0
for layer in manifest["layers"]:
    with tarfile.open(fileobj=gzip.open(blob(layer["digest"]))) as tar:
        unpacked += sum(m.size for m in tar if m.isfile())
print(f"{layout}:{tag}: {compressed / 2**20:.1f} MiB compressed, {unpacked / 2**20:.1f} MiB unpacked, {desc['digest']}")
PY
done
