#!/usr/bin/env bash
# stress-ng-mount.sh BIN: runs stress-ng's filesystem stressors, with
# verification on, against a mount of the embedded server on 127.0.0.1, each
# for STRESS_TIME (default 30s), then unmounts: the unmount must upload every
# change, and the server's folder must end empty (stress-ng removes what it
# makes). Hard and symbolic links are not supported by the mount; stress-ng
# detects that and skips --link and --symlink, so they are not run.
# `make stress` runs it; it needs root (FUSE) and the stress-ng package.
set -euo pipefail

bin=${1:?usage: stress-ng-mount.sh path/to/ftpsync-mount}
bin=$(realpath "$bin")
time=${STRESS_TIME:-30s}
port=${STRESS_PORT:-2197}
work=$(mktemp -d)
export FTPSYNC_PASSWORD=stress-$RANDOM$RANDOM
mkdir -p "$work/root" "$work/mnt" "$work/cache"

"$bin" serve "$work/root" --addr "127.0.0.1:$port" --user stress >"$work/serve.log" 2>&1 &
serve_pid=$!
cleanup() {
	umount -l "$work/mnt" 2>/dev/null || true
	kill "$serve_pid" 2>/dev/null || true
	wait "$serve_pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 50); do # the server is ready once it accepts
	if (: <"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
	sleep 0.1
done
"$bin" mount --daemon --cache-dir "$work/cache" --write-back 1s "ftp://stress@127.0.0.1:$port/" "$work/mnt"

# Each line: a stressor and its options. dirdeep is left out: removing its
# deep tree takes minutes past the time limit.
stressors=(
	"--hdd 2 --hdd-opts wr-seq,rd-seq --hdd-bytes 8m"
	"--hdd 1 --hdd-opts wr-rnd,rd-rnd --hdd-bytes 4m"
	"--dir 1"
	"--rename 1"
	"--dentry 1"
	"--fstat 1"
	"--fallocate 1"
	"--seek 1 --seek-size 8m"
)
failed=0
for s in "${stressors[@]}"; do
	echo "== stress-ng $s --verify -t $time"
	# shellcheck disable=SC2086 # $s is a list of options
	if ! (cd "$work/mnt" && timeout 600 stress-ng --temp-path "$work/mnt" $s --verify -t "$time" --metrics-brief); then
		echo "FAILED: stress-ng $s"
		failed=1
	fi
done
start=$(date +%s)
"$bin" unmount "$work/mnt"
echo "unmount uploaded the queue in $(($(date +%s) - start))s"
left=$(find "$work/root" -mindepth 1 | head -20)
if [[ -n $left ]]; then
	echo "FAILED: the server still holds what stress-ng removed:"
	echo "$left"
	failed=1
fi
if grep -E 'level=(error|fatal|panic)' "$work/cache/mount.log"; then
	echo "FAILED: errors in the mount's log"
	failed=1
fi
exit $failed
