#!/usr/bin/env bash
# make image: the container image without a registry or a base image. buildah assembles it
# FROM scratch out of what the release binary needs (the binary, the four shared libraries
# ldd names, the CA bundle, a passwd with the nonroot user 65532), then the image is run
# and /healthz and /readyz are checked. Installs buildah and podman from Debian if missing.
#
# Running it needs an OCI runtime that may set resource limits; where crun cannot (inside
# some sandboxes and VMs it fails with `setrlimit RLIMIT_NOFILE/RLIMIT_NPROC: Operation not
# permitted` whatever --ulimit says), the script says so and runs the image's root file
# system under chroot as user 65532 instead, which checks the same contents.
# Env: IMAGE (default localhost/rightsizer:<version>), IMAGE_PORT_FROM (18181).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

scripts/deps.sh --image

bin=${CARGO_TARGET_DIR:-target}/release/rightsizer
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
image=${IMAGE:-localhost/rightsizer:$version}

echo "==> assembling $image from scratch"
ctr=$(buildah from scratch)
cleanup() {
  [ -n "${serve_pid:-}" ] && kill "$serve_pid" 2>/dev/null || true
  podman rm -f rightsizer-smoke >/dev/null 2>&1 || true
  buildah umount "$ctr" >/dev/null 2>&1 || true
  buildah rm "$ctr" >/dev/null 2>&1 || true
}
trap cleanup EXIT
root=$(buildah mount "$ctr")
mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp" "$root/home/nonroot"
install -m 0755 "$bin" "$root/usr/local/bin/rightsizer"
for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
chmod 1777 "$root/tmp"
chown 65532:65532 "$root/home/nonroot"
buildah config --entrypoint '["/usr/local/bin/rightsizer"]' --cmd 'serve --listen 0.0.0.0:8080' \
  --user 65532:65532 --port 8080 --workingdir /home/nonroot --env MALLOC_ARENA_MAX=2 \
  --label org.opencontainers.image.title=rightsizer \
  --label "org.opencontainers.image.version=$version" "$ctr"
buildah commit --quiet "$ctr" "$image" >/dev/null
echo "    $(podman image inspect --format '{{.Size}}' "$image" | awk '{printf "%.1f MB", $1/1e6}'), $(find "$root" -type f | wc -l) files"

port=$(free_port "${IMAGE_PORT_FROM:-18181}")
listen="127.0.0.1:$port"
echo "==> running it (serve --listen $listen, host network)"
if podman run -d --name rightsizer-smoke --network host "$image" serve --listen "$listen" \
  >/tmp/rightsizer-image-run.log 2>&1; then
  how="podman run"
else
  echo "    podman run failed: $(tail -1 /tmp/rightsizer-image-run.log)" >&2
  echo "    running the image's root file system under chroot as 65532:65532 instead" >&2
  (cd / && exec chroot --userspec=65532:65532 "$root" /usr/local/bin/rightsizer \
    --database-url sqlite:///tmp/rightsizer.db serve --listen "$listen") >/tmp/rightsizer-image-serve.log 2>&1 &
  serve_pid=$!
  how="chroot"
fi
wait_http "http://$listen/healthz" 30
for path in /healthz /readyz; do
  echo "    GET $path: $(curl -fsS "http://$listen$path")"
done
echo "==> $image runs ($how)"
