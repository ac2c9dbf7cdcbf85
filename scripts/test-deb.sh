#!/usr/bin/env bash
# test-deb.sh: builds the .deb with `make deb` and checks it on a clean Debian 12 (bookworm), the way a
# user would meet it: `apt-get install ./ftpsync-mount_*.deb` on a minimal system, Depends resolved
# from Debian, then the installed program, man page, completion and mount helper are used for real:
# `ftpsync-mount serve` on 127.0.0.1 over a folder, `mount --daemon` with FTPSYNC_PASSWORD, a read and
# a write through the mount, `unmount`, the write checked on the served folder; then the same through
# an /etc/fstab line and mount(8) (type fuse.ftpsync-mount, run by fuse3's mount.fuse); then a purge.
#
# The clean system is `debootstrap --variant=minbase bookworm` into $FTPSYNC_DEB_CACHE/root (default
# /var/tmp/ftpsync-mount-deb-test), made once and reused: each run lays an overlay over it, so every
# run starts from the same untouched root and throws its changes away. Packages apt downloads are kept
# in $FTPSYNC_DEB_CACHE/archives. FTPSYNC_DEB_FRESH=1 makes the root anew; FTPSYNC_DEB_KEEP=1 keeps
# the run's overlay (upper layer and logs) for a look afterwards; FTPSYNC_DEB_MIRROR names the Debian
# mirror (default: the first Debian mirror in this machine's apt sources).
#
# Needs root (debootstrap, chroot, mounts, FUSE) and Debian's mirror: `make deb-test` runs it, `make
# test` does not. Everything runs in a private mount namespace, so no mount made here is ever seen
# outside it; the trap unmounts them and stops what the run started on every exit path all the same.
# Network: only the Debian mirror (debootstrap, apt) and 127.0.0.1 (the test server).
# shellcheck disable=SC2016 # the ${...} in single quotes are dpkg-query's or the root's shell's
set -euo pipefail
export PATH=$PATH:/usr/local/go/bin:/usr/local/sbin:/usr/sbin:/sbin
export LC_ALL=C

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${FTPSYNC_DEB_CACHE:-/var/tmp/ftpsync-mount-deb-test}
suite=bookworm
base=$cache/root
marker=$base/.ftpsync-mount-test-root
chroot_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { echo "test-deb: $*" >&2; }
ok() { echo "test-deb: ok: $*"; }
fail() {
	log "FAIL: $*"
	exit 1
}

[[ $(id -u) -eq 0 ]] || fail "must run as root: debootstrap, chroot, mounts and FUSE need it"
[[ $cache != *[[:space:]]* ]] || fail "FTPSYNC_DEB_CACHE must not contain white space (it is matched in /proc/self/mountinfo)"

# A private mount namespace: whatever happens to this script, its mounts never reach the host's table.
if [[ -z ${FTPSYNC_DEB_IN_NAMESPACE:-} ]]; then
	export FTPSYNC_DEB_IN_NAMESPACE=1
	exec unshare --mount --propagation private -- "$BASH" "${BASH_SOURCE[0]}" "$@"
fi

started=$SECONDS
run= # the run's folder: overlay layers, logs
merged= # the run's root, the overlay over $base
serve_pid=

phase_start=$SECONDS
phases=()
phase_done() {
	phases+=("$1 $((SECONDS - phase_start))s")
	phase_start=$SECONDS
}

# pids_in_root prints the processes whose root is the run's root: those this run started in it.
pids_in_root() {
	local p
	for p in /proc/[0-9]*; do
		[[ $(readlink "$p/root" 2>/dev/null) == "$merged" ]] && echo "${p#/proc/}"
	done
	return 0
}

# mounts_under DIR prints the mount points at or below DIR, deepest first.
mounts_under() {
	awk -v r="$1" '$5 == r || index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

cleanup() {
	local rc=$? mp pids p
	set +e
	trap - ERR
	if [[ -n $merged ]]; then
		# FUSE mounts first, lazily, so that a daemon stuck on them cannot hold the rest.
		awk -v r="$merged/" 'index($5, r) == 1 && $0 ~ / - fuse/ { print $5 }' /proc/self/mountinfo |
			while read -r mp; do
				log "cleanup: unmounting $mp"
				umount -l "$mp"
			done
		mapfile -t pids < <(pids_in_root)
		if ((${#pids[@]})); then
			for p in "${pids[@]}"; do log "cleanup: stopping pid $p: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)"; done
			kill "${pids[@]}" 2>/dev/null
			for _ in $(seq 50); do
				[[ -z $(pids_in_root) ]] && break
				sleep 0.1
			done
			mapfile -t pids < <(pids_in_root)
			((${#pids[@]})) && kill -KILL "${pids[@]}" 2>/dev/null
		fi
		[[ -n $serve_pid ]] && wait "$serve_pid" 2>/dev/null
		mounts_under "$merged" | while read -r mp; do
			umount "$mp" 2>/dev/null || umount -l "$mp" || log "cleanup: cannot unmount $mp"
		done
	fi
	if [[ -n $run ]]; then
		if [[ -n ${FTPSYNC_DEB_KEEP:-} ]]; then
			log "kept the run's files in $run (upper/ is what the run changed in the root)"
		else
			rm -rf "$run"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
set -E
trap 'fail "line $LINENO: \"$BASH_COMMAND\" exited $?"' ERR

# in_root [VAR=VALUE...] COMMAND...: runs COMMAND in the run's root with a clean environment, as root
# logged in there would; the whole call is bounded by $T seconds (default 120). The lock's fd 9 is
# closed for it: a mount's daemon outlives the call, and must not hold the cache's lock.
in_root() {
	timeout --kill-after=10 "${T:-120}" chroot "$merged" /usr/bin/env -i HOME=/root PATH="$chroot_path" \
		LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive "$@" 9>&-
}

# check DESCRIPTION COMMAND...: runs COMMAND; on failure says what failed, with its output.
check() {
	local what=$1 out rc=0
	shift
	out=$("$@" 2>&1) || rc=$?
	((rc == 0)) || fail "$what: '$*' exited $rc${out:+:
$out}"
	ok "$what"
}

# expect_eq DESCRIPTION WANT GOT
expect_eq() {
	[[ $2 == "$3" ]] || fail "$1: want '$2', got '$3'"
	ok "$1"
}

# mounted_type MOUNTPOINT (inside the root) prints the file system type mounted there, if any.
mounted_type() {
	awk -v m="$merged$1" '$5 == m { for (i = 7; i <= NF; i++) if ($i == "-") { print $(i + 1); exit } }' /proc/self/mountinfo
}

# wait_pid_gone PID SECONDS: true once PID has exited.
wait_pid_gone() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		[[ -d /proc/$1 ]] || return 0
		sleep 0.1
	done
	return 1
}

# Debian mirrors from this machine's apt sources (deb822 .sources and one-line .list files).
apt_uris() {
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		if [[ -f $f ]]; then awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }' "$f"; fi
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		if [[ -f $f ]]; then awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' "$f"; fi
	done
}
uris=$(apt_uris | sed 's|/*$||')
mirror=${FTPSYNC_DEB_MIRROR:-$(awk '/\/debian$/ { print; exit }' <<<"$uris")}
security=$(awk '/\/debian-security$/ { print; exit }' <<<"$uris")
[[ -n $mirror ]] || fail "no Debian mirror in /etc/apt/sources*; set FTPSYNC_DEB_MIRROR"

for tool in debootstrap unshare chroot flock; do
	if ! command -v "$tool" >/dev/null; then
		log "installing $tool"
		apt-get install -y -qq "$tool" >/dev/null || fail "cannot install $tool (apt-get update first?)"
	fi
done

# --- the package ------------------------------------------------------------------------------------
log "building the package: make deb"
timeout 900 make -C "$repo" --no-print-directory deb || fail "make deb"
mapfile -t debs < <(ls -t "$repo"/bin/ftpsync-mount_*.deb 2>/dev/null)
((${#debs[@]} == 1)) || fail "make deb left ${#debs[@]} packages in bin/, want 1: ${debs[*]}"
deb=${debs[0]}
version=$(dpkg-deb -f "$deb" Version)
ok "built $(basename "$deb") (Depends: $(dpkg-deb -f "$deb" Depends))"
phase_done "make-deb"

# --- the clean root -----------------------------------------------------------------------------------
mkdir -p "$cache/archives/partial"
exec 9>"$cache/.lock"
if ! flock -n 9; then
	log "waiting for another test-deb.sh to release $cache/.lock (at most 10 minutes)"
	flock -w 600 9 || fail "another test-deb.sh has held $cache/.lock for 10 minutes"
fi
# Left by a run killed before its trap ran (kill -9): its mounts went with its namespace, but the
# processes it started in its root (the server, a mount) may still run there.
for old in "$cache"/run.*; do
	[[ -e $old ]] || continue
	for p in /proc/[0-9]*; do
		if [[ $(readlink "$p/root" 2>/dev/null) == "$old/merged" ]]; then
			log "stopping pid ${p#/proc/}, left in $old by a killed run"
			kill -KILL "${p#/proc/}" 2>/dev/null || true
		fi
	done
	rm -rf "$old" || log "cannot remove $old"
done

if [[ -n ${FTPSYNC_DEB_FRESH:-} ]]; then rm -rf "$base"; fi
if [[ -f $marker ]]; then
	ok "reusing the Debian $suite root made $(head -n1 "$marker") in $base"
	phase_done "root-reused"
else
	log "making a minimal Debian $suite root in $base from $mirror (debootstrap --variant=minbase)"
	rm -rf "$base" "$base.new"
	timeout 1800 debootstrap --variant=minbase "$suite" "$base.new" "$mirror" >"$cache/debootstrap.log" 2>&1 9>&- ||
		fail "debootstrap (log: $cache/debootstrap.log):
$(tail -n 20 "$cache/debootstrap.log")"
	{
		echo "deb $mirror $suite main"
		echo "deb $mirror $suite-updates main"
		if [[ -n $security ]]; then echo "deb $security $suite-security main"; fi
	} >"$base.new/etc/apt/sources.list"
	# The package lists go into the cached root too, so that a run's own `apt-get update` mostly
	# finds them current instead of downloading them whole.
	cp -L /etc/resolv.conf "$base.new/etc/resolv.conf"
	timeout 600 chroot "$base.new" /usr/bin/env -i PATH="$chroot_path" apt-get update -q \
		>>"$cache/debootstrap.log" 2>&1 9>&- || fail "apt-get update in the new root (log: $cache/debootstrap.log):
$(tail -n 20 "$cache/debootstrap.log")"
	date -u +%Y-%m-%dT%H:%M:%SZ >"$base.new/.ftpsync-mount-test-root"
	echo "debootstrap --variant=minbase $suite $mirror" >>"$base.new/.ftpsync-mount-test-root"
	mv "$base.new" "$base"
	ok "made the root ($(du -sh "$base" | cut -f1))"
	phase_done "debootstrap"
fi

# --- this run's root: an overlay over the clean one -----------------------------------------------
run=$(mktemp -d "$cache/run.XXXXXX")
mkdir "$run/upper" "$run/work" "$run/merged"
mount -t overlay overlay -o "lowerdir=$base,upperdir=$run/upper,workdir=$run/work" "$run/merged"
merged=$run/merged
mount --bind /dev "$merged/dev"
mount -t proc proc "$merged/proc"
mount -t sysfs -o ro sysfs "$merged/sys"
mount --bind "$cache/archives" "$merged/var/cache/apt/archives"
cp -L /etc/resolv.conf "$merged/etc/resolv.conf"
# As in any chroot: packages must not start services here (none of ours does; man-db has a timer).
printf '#!/bin/sh\nexit 101\n' >"$merged/usr/sbin/policy-rc.d"
chmod 755 "$merged/usr/sbin/policy-rc.d"

if ! T=300 in_root apt-get update -q >"$run/apt-update.log" 2>&1; then
	log "apt-get update failed, going on with the root's package lists:"
	tail -n 5 "$run/apt-update.log" >&2
fi
before=$(in_root dpkg-query -W -f '${Package}\n' | sort)
cp "$deb" "$merged/tmp/"
chmod 644 "$merged/tmp/$(basename "$deb")"
T=600 in_root apt-get install -y -q "/tmp/$(basename "$deb")" >"$run/apt-install.log" 2>&1 ||
	fail "apt-get install ./$(basename "$deb"):
$(tail -n 20 "$run/apt-install.log")"
added=$(comm -13 <(echo "$before") <(in_root dpkg-query -W -f '${Package}\n' | sort) | tr '\n' ' ')
ok "apt-get install ./$(basename "$deb") on $suite minbase; it added: $added"
expect_eq "dpkg knows ftpsync-mount $version" "install ok installed $version" \
	"$(in_root dpkg-query -W -f '${Status} ${Version}' ftpsync-mount)"
expect_eq "Depends resolved: fuse3 installed" "install ok installed" "$(in_root dpkg-query -W -f '${Status}' fuse3)"
phase_done "install"

# --- what the package puts in place -------------------------------------------------------------------
out=$(in_root ftpsync-mount version 2>&1) || fail "ftpsync-mount version: $out"
[[ $out == "ftpsync-mount $version "* ]] || fail "ftpsync-mount version: want 'ftpsync-mount $version ...', got '$out'"
ok "ftpsync-mount version: $out"

check "the man pages are installed" in_root test -s /usr/share/man/man1/ftpsync-mount.1.gz \
	-a -s /usr/share/man/man1/ftpsync-mount-mount.1.gz -a -s /usr/share/man/man1/ftpsync-mount-mount-helper.1.gz
# man and bash-completion are not in minbase; a user who types `man` or Tab has them.
T=600 in_root apt-get install -y -q --no-install-recommends man-db bash-completion >"$run/apt-extras.log" 2>&1 ||
	fail "apt-get install man-db bash-completion:
$(tail -n 20 "$run/apt-extras.log")"
out=$(in_root man -P cat ftpsync-mount 2>&1) || fail "man ftpsync-mount: $out"
{ grep -q '^NAME' <<<"$out" && grep -Eq 'ftpsync-mount +- +Mount' <<<"$out"; } || fail "man ftpsync-mount shows no NAME section:
$out"
ok "man ftpsync-mount renders ($(wc -l <<<"$out") lines)"
out=$(in_root man -w mount.ftpsync-mount 2>&1) || fail "man -w mount.ftpsync-mount (the helper's page): $out"
ok "man mount.ftpsync-mount finds $out"

check "bash completion file installed" in_root test -s /usr/share/bash-completion/completions/ftpsync-mount
# bash-completion's loader finds the file by the command's name, as on Tab in an interactive shell.
out=$(in_root bash -c 'source /usr/share/bash-completion/bash_completion
	_completion_loader ftpsync-mount
	COMP_WORDS=(ftpsync-mount mo); COMP_CWORD=1; COMP_LINE="ftpsync-mount mo"; COMP_POINT=${#COMP_LINE}
	__start_ftpsync-mount ftpsync-mount mo ftpsync-mount
	printf "%s\n" "${COMPREPLY[@]}"' 2>"$run/completion.err") || fail "bash completion of 'ftpsync-mount mo': $out
$(cat "$run/completion.err")"
# compopt complains outside a real completion (stderr); the candidates are what counts.
[[ $(sort <<<"$out" | xargs) == "mount mount-helper" ]] ||
	fail "bash completion of 'ftpsync-mount mo<Tab>': want 'mount mount-helper', got '$out' $(cat "$run/completion.err")"
ok "bash completes 'ftpsync-mount mo<Tab>' to mount, mount-helper"

expect_eq "mount helper /sbin/mount.ftpsync-mount is the program" /usr/bin/ftpsync-mount \
	"$(in_root readlink -f /sbin/mount.ftpsync-mount)"
out=$(in_root /sbin/mount.ftpsync-mount --help 2>&1) || fail "mount.ftpsync-mount --help: $out"
grep -q 'mount-helper REMOTE MOUNTPOINT' <<<"$out" || fail "mount.ftpsync-mount --help is not the helper's help:
$out"
ok "mount.ftpsync-mount answers as the mount helper"
check "fuse3 provides /sbin/mount.fuse, which mount -t fuse.TYPE runs" in_root test -x /sbin/mount.fuse
check "the systemd unit runs /usr/bin/ftpsync-mount" \
	in_root grep -q '^ExecStart=/usr/bin/ftpsync-mount ' /usr/lib/systemd/system/ftpsync-mount@.service
phase_done "files"

# --- a server and a mount -------------------------------------------------------------------------------
password=deb-$RANDOM$RANDOM$RANDOM
nonce=$RANDOM$RANDOM
site=$merged/srv/site
mkdir -p "$site" "$merged/mnt/site" "$merged/mnt/fstab"
printf 'hello from the server %s\n' "$nonce" >"$site/hello.txt"

# Not through in_root: $! must be timeout's pid, which passes a TERM on to the server. Port 0: the
# kernel picks a free one, which serve prints once it listens.
timeout --kill-after=10 900 chroot "$merged" /usr/bin/env -i HOME=/root PATH="$chroot_path" LANG=C.UTF-8 \
	FTPSYNC_PASSWORD="$password" ftpsync-mount serve /srv/site --addr 127.0.0.1:0 --user deb \
	>"$run/serve.log" 2>&1 9>&- &
serve_pid=$!
remote=
for _ in $(seq 100); do
	remote=$(sed -n 's|^serving /srv/site at \(ftp://deb@127\.0\.0\.1:[0-9]*/\)$|\1|p' "$run/serve.log")
	[[ -n $remote ]] && break
	[[ -d /proc/$serve_pid ]] || fail "ftpsync-mount serve exited:
$(cat "$run/serve.log")"
	sleep 0.1
done
[[ -n $remote ]] || fail "ftpsync-mount serve did not say where it listens within 10 s:
$(cat "$run/serve.log")"
ok "ftpsync-mount serve /srv/site at $remote"

T=60 in_root FTPSYNC_PASSWORD="$password" ftpsync-mount mount --daemon --log-file /var/log/ftpsync-site.log \
	"$remote" /mnt/site >"$run/mount.out" 2>&1 || fail "ftpsync-mount mount --daemon $remote /mnt/site:
$(cat "$run/mount.out")
$(cat "$merged/var/log/ftpsync-site.log" 2>/dev/null)"
daemon_pid=$(sed -n 's/.*(pid \([0-9]*\)).*/\1/p' "$run/mount.out")
fstype=$(mounted_type /mnt/site)
[[ $fstype == fuse* ]] || fail "after mount --daemon, /mnt/site is not a FUSE mount (type '$fstype')"
ok "ftpsync-mount mount --daemon: /mnt/site is mounted ($fstype, pid $daemon_pid)"

expect_eq "read through the mount" "hello from the server $nonce" "$(in_root cat /mnt/site/hello.txt)"
check "write through the mount: a new folder and file, an append to hello.txt" in_root sh -c \
	'mkdir /mnt/site/sub && printf "written through the mount %s\n" "$1" >/mnt/site/sub/new.txt &&
	echo appended >>/mnt/site/hello.txt' sh "$nonce"
expect_eq "read back through the mount" "written through the mount $nonce" "$(in_root cat /mnt/site/sub/new.txt)"
check "ftpsync-mount status /mnt/site" in_root ftpsync-mount status /mnt/site
check "ftpsync-mount unmount /mnt/site" in_root ftpsync-mount unmount /mnt/site
[[ -z $(mounted_type /mnt/site) ]] || fail "/mnt/site is still mounted after ftpsync-mount unmount"
[[ -z $daemon_pid ]] || wait_pid_gone "$daemon_pid" 30 || fail "the mount's process $daemon_pid still runs 30 s after unmount"
expect_eq "the server's folder got the new file by the time unmount returned" \
	"written through the mount $nonce" "$(cat "$site/sub/new.txt" 2>&1)"
expect_eq "the server's folder got the append" "hello from the server $nonce
appended" "$(cat "$site/hello.txt")"
phase_done "mount"

# --- the fstab way: mount(8) -> /sbin/mount.fuse (fuse3) -> ftpsync-mount's helper ------------------------
printf '%s\n' "$password" >"$merged/root/site.pass"
chmod 600 "$merged/root/site.pass"
echo "$remote /mnt/fstab fuse.ftpsync-mount noauto,password_file=/root/site.pass,cache_dir=/var/cache/ftpsync-fstab,log_file=/var/log/ftpsync-fstab.log 0 0" \
	>>"$merged/etc/fstab"
before_pids=$(pids_in_root)
out=$(T=60 in_root mount /mnt/fstab 2>&1) || fail "mount /mnt/fstab (an fstab line of type fuse.ftpsync-mount): $out
$(cat "$merged/var/log/ftpsync-fstab.log" 2>/dev/null)"
fstype=$(mounted_type /mnt/fstab)
[[ $fstype == fuse* ]] || fail "after mount /mnt/fstab, it is not a FUSE mount (type '$fstype')"
ok "mount /mnt/fstab from an /etc/fstab line: mounted ($fstype)"
mapfile -t fstab_pids < <(comm -13 <(sort <<<"$before_pids") <(pids_in_root | sort))
((${#fstab_pids[@]})) || fail "no process serves /mnt/fstab"
expect_eq "read through the fstab mount what the first mount wrote" "written through the mount $nonce" \
	"$(in_root cat /mnt/fstab/sub/new.txt)"
check "write through the fstab mount" in_root sh -c 'printf "through fstab %s\n" "$1" >/mnt/fstab/fstab.txt' sh "$nonce"
check "umount /mnt/fstab" in_root umount /mnt/fstab
[[ -z $(mounted_type /mnt/fstab) ]] || fail "/mnt/fstab is still mounted after umount"
for p in "${fstab_pids[@]}"; do
	wait_pid_gone "$p" 60 || fail "the fstab mount's process $p still runs 60 s after umount"
done
expect_eq "the server's folder got the fstab mount's write once its process ended" \
	"through fstab $nonce" "$(cat "$site/fstab.txt" 2>&1)"
phase_done "fstab"

# --- removal ----------------------------------------------------------------------------------------
kill "$serve_pid"
wait "$serve_pid" 2>/dev/null || true
serve_pid=
T=300 in_root apt-get purge -y -q ftpsync-mount >"$run/apt-purge.log" 2>&1 || fail "apt-get purge ftpsync-mount:
$(tail -n 20 "$run/apt-purge.log")"
for f in /usr/bin/ftpsync-mount /usr/sbin/mount.ftpsync-mount /usr/share/man/man1/ftpsync-mount.1.gz \
	/usr/share/bash-completion/completions/ftpsync-mount /usr/lib/systemd/system/ftpsync-mount@.service; do
	[[ ! -e $merged$f && ! -L $merged$f ]] || fail "apt-get purge left $f"
done
ok "apt-get purge ftpsync-mount removes what it installed"
phase_done "purge"

echo "test-deb: passed: $(basename "$deb") on Debian $suite minbase in $((SECONDS - started))s (${phases[*]})"
