#!/usr/bin/env bash
# Build the sample image the README tours: examples/sample.tar (docker-archive) and
# examples/sample-oci/ (OCI layout with tags 1.0 and 1.1), with buildah and skopeo only.
#
# Every layer is made by hand on a mounted root filesystem and committed on its own, so the
# layers show what imgtool is for: files added, modified and chmod-ed, a whiteout, an opaque
# directory, usr-merge symlinks, a hardlink and a setuid file. Timestamps are fixed
# (buildah commit --timestamp), so a rebuild with the same tool versions gives the same bytes.
#
# Needs root (buildah mount), buildah, skopeo, unshare, and a kernel that mounts overlayfs:
# the overlay storage driver is what turns "rm -rf DIR; mkdir DIR" into an opaque marker
# (.wh..wh..opq); the vfs driver would write one whiteout per removed child instead.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"

if [ "$(id -u)" != 0 ]; then
    echo "build-sample.sh: run as root (buildah mount needs it)" >&2
    exit 2
fi
for tool in buildah skopeo unshare mount; do
    command -v "$tool" >/dev/null || { echo "build-sample.sh: $tool is not installed" >&2; exit 2; }
done

# Run in a private mount namespace: the overlay mounts vanish with it, and the blob-info cache
# that containers/image keeps under /var/lib/containers is redirected to the scratch directory.
if [ -z "${IMGTOOL_SAMPLE_NS:-}" ]; then
    work="$(mktemp -d "${TMPDIR:-/tmp}/imgtool-sample.XXXXXX")"
    trap 'rm -rf "$work"' EXIT
    status=0
    IMGTOOL_SAMPLE_NS="$work" unshare --mount --propagation private -- bash "$0" "$@" || status=$?
    exit "$status"
fi

work="$IMGTOOL_SAMPLE_NS"
mkdir -p "$work/root" "$work/run" "$work/tmp" "$work/conf" "$work/var-lib" "$work/out"
shadow=/var/lib/containers
[ -d "$shadow" ] || shadow=/var/lib
mount --bind "$work/var-lib" "$shadow"

printf '[storage]\ndriver = "overlay"\ngraphroot = "%s"\nrunroot = "%s"\n' \
    "$work/root" "$work/run" >"$work/conf/storage.conf"
printf 'unqualified-search-registries = []\n' >"$work/conf/registries.conf"
printf '{"default": [{"type": "insecureAcceptAnything"}]}\n' >"$work/conf/policy.json"
export CONTAINERS_STORAGE_CONF="$work/conf/storage.conf"
export CONTAINERS_REGISTRIES_CONF="$work/conf/registries.conf"
export TMPDIR="$work/tmp" TZ=UTC LC_ALL=C
umask 022

bh() { buildah --root "$work/root" --runroot "$work/run" --storage-driver overlay "$@"; }
storage="containers-storage:[overlay@$work/root+$work/run]"

# layer FROM IMAGE TIMESTAMP CREATED_BY FUNCTION: run FUNCTION in the mounted root filesystem
# of a new container on FROM and commit the result as IMAGE, adding exactly one layer.
layer() {
    local from="$1" image="$2" stamp="$3" created_by="$4" step="$5" ctr mnt
    ctr="$(bh from --pull-never "$from")"
    mnt="$(bh mount "$ctr")"
    (cd "$mnt" && "$step")
    bh umount "$ctr" >/dev/null
    bh config --created-by "$created_by" "$ctr"
    bh commit --quiet --timestamp "$stamp" "$ctr" "$image" >/dev/null
    bh rm "$ctr" >/dev/null
}

base() {
    mkdir -p usr/bin usr/sbin usr/lib etc home/app root tmp var/log var/cache
    ln -s usr/bin bin
    ln -s usr/sbin sbin
    ln -s usr/lib lib
    chmod 1777 tmp
    chmod 0700 root
    chown 1000:1000 home/app
    chmod 0750 home/app
    printf 'NAME="Sample Linux"\nID=sample\nVERSION_ID=1.0\nPRETTY_NAME="Sample Linux 1.0"\n' >etc/os-release
    printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n' >etc/passwd
    printf 'root:x:0:\napp:x:1000:\n' >etc/group
    printf '#!/bin/sh\necho "hello from the sample image"\n' >usr/bin/hello
    chmod 0755 usr/bin/hello
    ln usr/bin/hello usr/bin/hi
    printf '#!/bin/sh\n# stands in for a setuid-root program\nexec "$@"\n' >usr/bin/su
    chmod 4755 usr/bin/su
    seq -f 'libgreet symbol %04g' 1 200 >usr/lib/libgreet.so.1
    ln -s libgreet.so.1 usr/lib/libgreet.so
}

install_app() {
    mkdir -p opt/app/bin opt/app/share etc/app var/cache/app/thumbs var/lib/app
    printf '#!/bin/sh\n# app 1.0\nexec hello "$@"\n' >opt/app/bin/app
    chmod 0755 opt/app/bin/app
    ln -s /opt/app/bin/app usr/bin/app
    printf 'Hello, %%s!\n' >opt/app/share/greeting.txt
    seq -f 'install: unpacked file %04g' 1 120 >opt/app/share/install.log
    printf 'port = 8080\nlog = /var/log/app.log\n' >etc/app/app.conf
    printf 'changeme\n' >etc/app/token
    seq -f 'cache entry %05g' 1 1500 >var/cache/app/index.dat
    seq -f 'thumbnail row %04g' 1 500 >var/cache/app/thumbs/0001.bin
    chown 1000:1000 var/lib/app
}

configure() {
    sed -i 's/^port = 8080$/port = 9090/' etc/app/app.conf
    chmod 0600 etc/app/token
    printf 'Welcome to Sample Linux.\n' >etc/motd
}

clean_up() {
    rm opt/app/share/install.log
    rm -rf var/cache/app
    mkdir var/cache/app
    : >var/cache/app/.keep
}

upgrade() {
    printf '#!/bin/sh\n# app 1.1\nexec hello --loud "$@"\n' >opt/app/bin/app
    printf '1.1: louder greetings\n' >opt/app/share/changelog.txt
    rm etc/motd
}

day=86400
t0=1704067200 # 2024-01-01T00:00:00Z

ctr="$(bh from scratch)"
bh config --os linux --arch amd64 --label io.buildah.version- \
    --label org.opencontainers.image.title=imgtool-sample \
    --env PATH=/usr/bin:/usr/sbin --workingdir /opt/app --user app \
    --entrypoint '["/usr/bin/app"]' --cmd '["--help"]' "$ctr"
mnt="$(bh mount "$ctr")"
(cd "$mnt" && base)
bh umount "$ctr" >/dev/null
bh config --created-by "base: usr-merge dirs, /etc, hello (hardlinked as hi), setuid su" "$ctr"
bh commit --quiet --timestamp "$t0" "$ctr" localhost/sample:base >/dev/null
bh rm "$ctr" >/dev/null

layer localhost/sample:base localhost/sample:app $((t0 + day)) "install app 1.0 into /opt/app" install_app
layer localhost/sample:app localhost/sample:configured $((t0 + 2 * day)) \
    "configure: port 9090, token mode 0600, motd" configure
layer localhost/sample:configured localhost/sample:1.0 $((t0 + 3 * day)) \
    "clean up: install log, reset /var/cache/app" clean_up
layer localhost/sample:1.0 localhost/sample:1.1 $((t0 + 31 * day)) "upgrade app to 1.1" upgrade

sk() { skopeo --policy "$work/conf/policy.json" --tmpdir "$work/tmp" "$@"; }
sk copy --quiet "${storage}localhost/sample:1.0" "docker-archive:$work/out/sample.tar:localhost/sample:1.0"
for tag in 1.0 1.1; do
    sk copy --quiet --format oci "${storage}localhost/sample:$tag" "oci:$work/out/sample-oci:$tag"
done

rm -rf "$here/sample-oci.new"
cp -r "$work/out/sample-oci" "$here/sample-oci.new"
cp "$work/out/sample.tar" "$here/sample.tar.new"
rm -rf "$here/sample-oci"
mv "$here/sample-oci.new" "$here/sample-oci"
mv "$here/sample.tar.new" "$here/sample.tar"

bh rmi --all --force >/dev/null
echo "wrote $here/sample.tar ($(stat -c %s "$here/sample.tar") bytes) and $here/sample-oci/ (tags 1.0, 1.1)"
