#!/usr/bin/env bash
# test-servers.sh up|down|env|status — real FTP servers on 127.0.0.1 for the integration tests.
#
#   proftpd  127.0.0.1:2131  plain FTP and explicit FTPS (AUTH TLS, optional) on the same port,
#                            MLSD, MFMT, passive ports 30000-30099
#   vsftpd   127.0.0.1:2141  plain FTP, LIST only (no MLSD), MDTM with a time sets the mtime,
#                            passive ports 30100-30199
#   sshd     127.0.0.1:2151  OpenSSH, SFTP only (internal-sftp), password or key login; a private
#                            instance with its own sshd_config and host key in the state dir, which
#                            leaves a system sshd (port 22, /etc/ssh) alone
#
# The FTP servers chroot one throwaway system user (ftpsynctest, no login shell) into its own folder
# on disk; sshd lets it see the whole disk and the tests use its folder by absolute path. For sshd
# the state dir also holds a client key pair authorized for that user and a known_hosts file for the
# private host key.
# The password is generated once into the state dir (mode 0600); the TLS CA and server certificate
# are generated there too. All state lives under $FTPSYNC_SERVERS_DIR (default: <repo>/.servers).
# vsftpd conflicts with proftpd as a Debian package, so it is unpacked with apt-get download + dpkg -x
# into the state dir and run from there. Missing packages are installed with apt-get (needs root).
#
# `env` prints shell exports for the servers that are running; the tests skip a server whose
# variables are absent (and fail instead when CI=true):
#   eval "$(scripts/test-servers.sh env)"
# Files the tests put into a root folder directly must be owned by FTPSYNC_TEST_UID/GID, or the
# FTP user cannot overwrite or delete them.
set -euo pipefail
# useradd, chpasswd and proftpd live in sbin, which a non-login shell may leave out of PATH.
export PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state=${FTPSYNC_SERVERS_DIR:-$repo/.servers}
ftp_user=ftpsynctest
host=127.0.0.1
proftpd_port=2131
proftpd_pasv="30000 30099"
vsftpd_port=2141
vsftpd_pasv_min=30100
vsftpd_pasv_max=30199
sshd_port=2151
sshd_bin=/usr/sbin/sshd
ready_timeout=15 # seconds each server gets to answer a login after start

pro=$state/proftpd
vs=$state/vsftpd
vsroot=$state/vsftpd-root # the unpacked vsftpd package
tls=$state/tls
sshd_dir=$state/sshd

log() { echo "test-servers: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}

need_root() {
	[[ $(id -u) -eq 0 ]] || die "must run as root (it creates a system user, installs packages and runs chrooting servers)"
}

apt_updated=
apt_update_once() {
	if [[ -z $apt_updated ]]; then
		log "apt-get update"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq
		apt_updated=1
	fi
}

apt_install() {
	apt_update_once
	log "apt-get install $*"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

install_packages() {
	local missing=()
	command -v proftpd >/dev/null || missing+=(proftpd-core)
	# Debian 12 ships mod_tls in proftpd-mod-crypto, not in proftpd-core.
	[[ -e /usr/lib/proftpd/mod_tls.so ]] || missing+=(proftpd-mod-crypto)
	command -v openssl >/dev/null || missing+=(openssl)
	command -v curl >/dev/null || missing+=(curl)
	command -v pgrep >/dev/null || missing+=(procps)
	# Not servers, but what the mount tests run, so that make test works on a fresh machine by itself:
	# fusermount3, and the tools users run in a mount (rsync, git).
	command -v fusermount3 >/dev/null || missing+=(fuse3)
	command -v rsync >/dev/null || missing+=(rsync)
	command -v git >/dev/null || missing+=(git)
	# Its postinst may start the system's sshd on port 22 where services can start (not in a
	# container whose policy-rc.d forbids it); ours runs beside it either way.
	[[ -x $sshd_bin ]] || missing+=(openssh-server)
	if ((${#missing[@]})); then
		apt_install "${missing[@]}"
	fi
}

# unpack_vsftpd fetches the vsftpd package and libwrap0 (its one library not in a base system) and
# extracts them into $vsroot without installing, so they do not fight proftpd over /usr/sbin and /etc.
unpack_vsftpd() {
	[[ -x $vsroot/usr/sbin/vsftpd ]] && return 0
	log "unpacking vsftpd into $vsroot"
	local dl=$state/debs
	rm -rf "$dl" "$vsroot.tmp"
	mkdir -p "$dl" "$vsroot.tmp"
	if ! (cd "$dl" && apt-get download -qq vsftpd libwrap0 2>/dev/null); then
		apt_update_once
		(cd "$dl" && apt-get download -qq vsftpd libwrap0) || die "apt-get download vsftpd libwrap0 failed"
	fi
	local deb
	for deb in "$dl"/*.deb; do
		dpkg -x "$deb" "$vsroot.tmp"
	done
	rm -rf "$dl"
	mv "$vsroot.tmp" "$vsroot"
	local missing_libs
	missing_libs=$(vsftpd_ldd | grep 'not found' || true)
	[[ -z $missing_libs ]] || die "vsftpd needs libraries that are not installed: $missing_libs"
}

vsftpd_libpath() { echo "$vsroot/lib/x86_64-linux-gnu:$vsroot/usr/lib/x86_64-linux-gnu"; }
vsftpd_ldd() { LD_LIBRARY_PATH=$(vsftpd_libpath) ldd "$vsroot/usr/sbin/vsftpd"; }

# ensure_user creates the throwaway user once and sets the password from the state dir every time,
# so the user and the state dir always agree.
ensure_user() {
	mkdir -p "$state"
	chmod 0755 "$state"
	if [[ ! -s $state/password ]]; then
		(umask 077 && openssl rand -hex 16 >"$state/password")
	fi
	chmod 0600 "$state/password"
	if ! id "$ftp_user" >/dev/null 2>&1; then
		log "creating system user $ftp_user"
		useradd --system --no-create-home --home-dir "$state" --shell /usr/sbin/nologin "$ftp_user"
	fi
	# vsftpd changes into the home folder before its local_root, so the home must exist; each
	# server then chroots into its own root folder.
	if [[ $(getent passwd "$ftp_user" | cut -d: -f6) != "$state" ]]; then
		usermod --home "$state" "$ftp_user"
	fi
	echo "$ftp_user:$(cat "$state/password")" | chpasswd
}

# ensure_tls makes a CA and a server certificate for 127.0.0.1 signed by it; tests trust the CA.
ensure_tls() {
	[[ -s $tls/server.pem && -s $tls/ca.pem ]] && return 0
	log "generating TLS CA and server certificate in $tls"
	mkdir -p "$tls"
	(
		cd "$tls"
		umask 077
		openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=ftpsync-mount test CA" \
			-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
			-keyout ca.key -out ca.pem 2>/dev/null
		openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr 2>/dev/null
		printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
			"extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" >server.ext
		openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
			-extfile server.ext -out server.pem 2>/dev/null
		rm -f server.csr server.ext ca.srl
		chmod 0644 ca.pem server.pem
	)
}

ensure_root_dir() {
	mkdir -p "$1"
	# Files a test (running as root) drops in must stay writable for the FTP user.
	chown -R "$ftp_user:" "$1"
	chmod 0755 "$1"
}

# ensure_sshd_keys makes the private host key, the client key pair (authorized for the test user)
# and the known_hosts file naming the host key, once.
ensure_sshd_keys() {
	mkdir -p "$sshd_dir"
	chmod 0755 "$sshd_dir"
	if [[ ! -s $sshd_dir/host_ed25519_key ]]; then
		log "generating the sshd host key and a client key pair in $sshd_dir"
		ssh-keygen -q -t ed25519 -N "" -C "ftpsync-mount test sshd" -f "$sshd_dir/host_ed25519_key"
	fi
	if [[ ! -s $sshd_dir/client_key ]]; then
		ssh-keygen -q -t ed25519 -N "" -C "$ftp_user@ftpsync-mount-tests" -f "$sshd_dir/client_key"
	fi
	cp "$sshd_dir/client_key.pub" "$sshd_dir/authorized_keys"
	echo "[$host]:$sshd_port $(cut -d' ' -f1-2 "$sshd_dir/host_ed25519_key.pub")" >"$sshd_dir/known_hosts"
	chmod 0644 "$sshd_dir/authorized_keys" "$sshd_dir/known_hosts"
}

write_sshd_conf() {
	ensure_root_dir "$sshd_dir/root"
	# sshd insists on its privilege separation folder, the same one a system sshd uses.
	mkdir -p /run/sshd
	chmod 0755 /run/sshd
	# No PAM: the password is checked against the shadow file directly. StrictModes is off because
	# the state dir may sit below folders others can write to.
	cat >"$sshd_dir/sshd_config" <<EOF
ListenAddress $host:$sshd_port
HostKey $sshd_dir/host_ed25519_key
PidFile none
AllowUsers $ftp_user
PermitRootLogin no
UsePAM no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile $sshd_dir/authorized_keys
StrictModes no
Subsystem sftp internal-sftp
ForceCommand internal-sftp
AllowTcpForwarding no
AllowAgentForwarding no
X11Forwarding no
PermitTTY no
MaxSessions 20
LogLevel VERBOSE
EOF
	"$sshd_bin" -t -f "$sshd_dir/sshd_config" >"$sshd_dir/configtest.log" 2>&1 ||
		die "sshd rejects $sshd_dir/sshd_config: $(tail -n 20 "$sshd_dir/configtest.log")"
}

write_proftpd_conf() {
	mkdir -p "$pro"
	ensure_root_dir "$pro/root"
	sed -e "s|@STATE@|$pro|g" -e "s|@ROOT@|$pro/root|g" -e "s|@TLS@|$tls|g" \
		-e "s|@HOST@|$host|g" -e "s|@PORT@|$proftpd_port|g" -e "s|@PASV@|$proftpd_pasv|g" \
		-e "s|@USER@|$ftp_user|g" \
		"$repo/scripts/test-servers/proftpd.conf.in" >"$pro/proftpd.conf"
	proftpd -t -c "$pro/proftpd.conf" >"$pro/configtest.log" 2>&1 ||
		die "proftpd rejects $pro/proftpd.conf: $(tail -n 20 "$pro/configtest.log")"
}

write_vsftpd_conf() {
	mkdir -p "$vs/empty"
	chmod 0755 "$vs/empty"
	ensure_root_dir "$vs/root"
	sed -e "s|@STATE@|$vs|g" -e "s|@ROOT@|$vs/root|g" -e "s|@HOST@|$host|g" -e "s|@PORT@|$vsftpd_port|g" \
		-e "s|@PASV_MIN@|$vsftpd_pasv_min|g" -e "s|@PASV_MAX@|$vsftpd_pasv_max|g" \
		"$repo/scripts/test-servers/vsftpd.conf.in" >"$vs/vsftpd.conf"
	chmod 0600 "$vs/vsftpd.conf"
	# A PAM service of its own: password check through pam_unix only, no shell or ftpusers list.
	cp "$repo/scripts/test-servers/pam-vsftpd-ftpsync" /etc/pam.d/vsftpd-ftpsync
}

server_binary() {
	case $1 in
	proftpd) command -v proftpd ;;
	vsftpd) echo "$vsroot/usr/sbin/vsftpd" ;;
	sshd) echo "$sshd_bin" ;;
	esac
}

# running NAME prints the pid of our server NAME if its recorded process is alive, runs that
# server's binary and leads its own process group, so a recycled pid is never mistaken for it.
# (proftpd rewrites its command line, so that cannot be checked.)
running() {
	local name=$1 pidfile=$state/$1/$1.pid pid exe
	[[ -s $pidfile ]] || return 1
	pid=$(cat "$pidfile")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
	[[ $exe == "$(server_binary "$name")" ]] || return 1
	[[ $(ps -o pgid= -p "$pid" | tr -d ' ') == "$pid" ]] || return 1
	echo "$pid"
}

# probe NAME PORT logs in and lists the root; curl (and sftp in batch mode, with the client key and
# only our known_hosts) exits 0 only on a full, successful exchange.
probe() {
	if [[ $1 == sshd ]]; then
		echo ls | timeout 5 sftp -q -b - -F /dev/null -P "$2" -i "$sshd_dir/client_key" \
			-o BatchMode=yes -o ConnectTimeout=3 -o StrictHostKeyChecking=yes \
			-o UserKnownHostsFile="$sshd_dir/known_hosts" -o GlobalKnownHostsFile=/dev/null \
			"$ftp_user@$host" >/dev/null 2>&1
		return
	fi
	curl -s -o /dev/null --max-time 3 --user "$ftp_user:$(cat "$state/password")" "ftp://$host:$2/"
}

# wait_ready NAME PORT LOG PID waits for the server just started as PID to answer a login.
# Liveness is checked by pid, not with running: until the exec, the process is still a shell.
wait_ready() {
	local name=$1 port=$2 logfile=$3 pid=$4 deadline=$((SECONDS + ready_timeout))
	while ((SECONDS < deadline)); do
		kill -0 "$pid" 2>/dev/null || break
		probe "$name" "$port" && running "$name" >/dev/null && return 0
		sleep 0.2 # a server gives no readiness signal; a bounded login probe is the check
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "$name did not answer a login on $host:$port within ${ready_timeout}s; its logs end with:"
	else
		log "$name exited while starting; its logs end with:"
	fi
	tail -n 30 "$state/$name/stderr.log" "$logfile" >&2 2>/dev/null || true
	stop "$name"
	exit 1
}

# port_free fails loudly when something else already listens where a server is to start.
port_free() {
	if (exec 3<>"/dev/tcp/$host/$2") 2>/dev/null; then
		die "$host:$2 is already in use by another process; $1 cannot start there (see: ss -ltnp)"
	fi
}

start_proftpd() {
	if running proftpd >/dev/null && probe proftpd "$proftpd_port"; then
		log "proftpd already running on $host:$proftpd_port"
		return 0
	fi
	stop proftpd
	port_free proftpd "$proftpd_port"
	write_proftpd_conf
	log "starting proftpd on $host:$proftpd_port"
	# -n keeps it in the foreground, so setsid gives it (and its session children) our own process
	# group; it writes its pid file itself.
	setsid proftpd -n -c "$pro/proftpd.conf" >>"$pro/stderr.log" 2>&1 </dev/null &
	echo $! >"$pro/proftpd.pid"
	wait_ready proftpd "$proftpd_port" "$pro/proftpd.log" $!
}

start_vsftpd() {
	if running vsftpd >/dev/null && probe vsftpd "$vsftpd_port"; then
		log "vsftpd already running on $host:$vsftpd_port"
		return 0
	fi
	stop vsftpd
	port_free vsftpd "$vsftpd_port"
	unpack_vsftpd
	write_vsftpd_conf
	log "starting vsftpd on $host:$vsftpd_port"
	# vsftpd reports start-up errors ("500 OOPS: ...") on fd 0, so all three go to the log.
	LD_LIBRARY_PATH=$(vsftpd_libpath) setsid "$vsroot/usr/sbin/vsftpd" "$vs/vsftpd.conf" \
		0>>"$vs/stderr.log" >&0 2>&0 &
	echo $! >"$vs/vsftpd.pid"
	wait_ready vsftpd "$vsftpd_port" "$vs/vsftpd.log" $!
}

start_sshd() {
	ensure_sshd_keys
	if running sshd >/dev/null && probe sshd "$sshd_port"; then
		log "sshd already running on $host:$sshd_port"
		return 0
	fi
	stop sshd
	port_free sshd "$sshd_port"
	write_sshd_conf
	log "starting sshd on $host:$sshd_port"
	# -D keeps it in the foreground under setsid, -e logs to stderr; sshd wants its absolute path.
	setsid "$sshd_bin" -D -e -f "$sshd_dir/sshd_config" >>"$sshd_dir/stderr.log" 2>&1 </dev/null &
	echo $! >"$sshd_dir/sshd.pid"
	wait_ready sshd "$sshd_port" "$sshd_dir/stderr.log" $!
}

# group_alive PGID succeeds while a process of that group is alive (zombies do not count: where
# PID 1 does not reap, they linger after the server is gone).
group_alive() {
	local pid st
	for pid in $(pgrep -g "$1"); do
		st=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || continue
		[[ -n $st && $st != Z ]] && return 0
	done
	return 1
}

# stop NAME ends the server's whole process group (listener and session processes), waiting a
# bounded time for it to go before using SIGKILL.
stop() {
	local name=$1 pid i
	pid=$(running "$name") || {
		rm -f "$state/$name/$name.pid"
		return 0
	}
	log "stopping $name (process group $pid)"
	if [[ $name == sshd ]]; then
		# Each connection's sshd calls setsid, leaving our group: end those sessions by parent.
		local child
		for child in $(pgrep -P "$pid"); do
			kill -TERM -- "-$child" 2>/dev/null || kill -TERM "$child" 2>/dev/null || true
		done
	fi
	kill -TERM -- "-$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		group_alive "$pid" || break
		sleep 0.1
	done
	if group_alive "$pid"; then
		log "$name ignored SIGTERM; sending SIGKILL"
		kill -KILL -- "-$pid" 2>/dev/null || true
	fi
	rm -f "$state/$name/$name.pid"
}

print_env() {
	local any=
	if running proftpd >/dev/null; then
		any=1
		printf 'export FTPSYNC_TEST_PROFTPD_URL=%q\n' "ftp://$ftp_user@$host:$proftpd_port/"
		printf 'export FTPSYNC_TEST_PROFTPD_ROOT=%q\n' "$pro/root"
		printf 'export FTPSYNC_TEST_CA=%q\n' "$tls/ca.pem"
	fi
	if running vsftpd >/dev/null; then
		any=1
		printf 'export FTPSYNC_TEST_VSFTPD_URL=%q\n' "ftp://$ftp_user@$host:$vsftpd_port/"
		printf 'export FTPSYNC_TEST_VSFTPD_ROOT=%q\n' "$vs/root"
	fi
	if running sshd >/dev/null; then
		any=1
		printf 'export FTPSYNC_TEST_SFTP_URL=%q\n' "sftp://$ftp_user@$host:$sshd_port$sshd_dir/root"
		printf 'export FTPSYNC_TEST_SFTP_ROOT=%q\n' "$sshd_dir/root"
		printf 'export FTPSYNC_TEST_SFTP_KEY=%q\n' "$sshd_dir/client_key"
		printf 'export FTPSYNC_TEST_SFTP_KNOWN_HOSTS=%q\n' "$sshd_dir/known_hosts"
	fi
	if [[ -n $any ]]; then
		printf 'export FTPSYNC_TEST_PASSWORD=%q\n' "$(cat "$state/password")"
		printf 'export FTPSYNC_TEST_UID=%q\n' "$(id -u "$ftp_user")"
		printf 'export FTPSYNC_TEST_GID=%q\n' "$(id -g "$ftp_user")"
	else
		log "no test server is running; start them with: $0 up"
	fi
}

print_status() {
	local name pid
	for name in proftpd vsftpd sshd; do
		if pid=$(running "$name"); then
			echo "$name: running, pid $pid"
		else
			echo "$name: stopped"
		fi
	done
}

case ${1:-} in
up)
	need_root
	# Before anything changes the shared user's password: fail if another instance (another state
	# dir) or another program holds a port.
	running proftpd >/dev/null || port_free proftpd "$proftpd_port"
	running vsftpd >/dev/null || port_free vsftpd "$vsftpd_port"
	running sshd >/dev/null || port_free sshd "$sshd_port"
	install_packages
	ensure_user
	ensure_tls
	start_proftpd
	start_vsftpd
	start_sshd
	log "all servers answer; use: eval \"\$($0 env)\""
	;;
down)
	need_root
	stop proftpd
	stop vsftpd
	stop sshd
	;;
env) print_env ;;
status) print_status ;;
*)
	echo "usage: $0 up|down|env|status" >&2
	exit 2
	;;
esac
