#!/bin/sh
# install.sh: install posthorn on a Debian system, replace Postfix and
# Dovecot, uninstall it, or stage its files under DESTDIR for packaging.
# install.sh --help tells how; README.md ("Installing") tells why.
set -eu

PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export PATH
umask 022

SRC=$(cd "$(dirname "$0")" && pwd)
DESTDIR=${DESTDIR:-}
CONF=/etc/posthorn/posthorn.toml
PAM=/etc/pam.d/posthorn
UNITDIR=/lib/systemd/system
# The programs of bin/ that are not daemons for /usr/lib/posthorn.
TOOLS="posthorn sendmail mailq newaliases"

usage() {
	cat <<'EOF'
usage: install.sh [--replace] [--deb FILE | --bin DIR | --no-deb]
       install.sh --uninstall
       DESTDIR=DIR install.sh [--bin DIR]

Installs posthorn on this Debian system, as root: the posthorn and vmail
users, the spool (/var/spool/posthorn) and state (/var/lib/posthorn)
folders, the programs (/usr/lib/posthorn/, /usr/sbin/posthorn,
/usr/sbin/sendmail, /usr/lib/sendmail, /usr/bin/mailq, /usr/bin/newaliases),
the manual pages, /etc/posthorn/posthorn.toml and /etc/pam.d/posthorn (each
only when missing: an existing one is never overwritten) and the systemd
unit, enabled and started when systemd runs. It builds a Debian package
(make deb) and installs it with apt, which replaces Exim or any other
mail transport agent; without dpkg-deb it copies the files itself.
Running it again changes nothing.

  --replace    replace Postfix and Dovecot: import their settings into a new
               /etc/posthorn/posthorn.toml (postconf, doveconf), then stop
               and disable them. Without it, install.sh refuses to touch a
               host where Postfix or Dovecot is installed.
  --deb FILE   install this package instead of building one
  --bin DIR    take the programs from DIR (default: build them with make,
               or bin/ next to this script)
  --no-deb     copy the files instead of building and installing a package
  --uninstall  stop posthorn and remove its programs, unit, PAM file and
               configuration, asking nothing. A configuration that differs
               from the default is kept as /etc/posthorn/posthorn.toml.removed.
               Mail is kept: mailboxes (/var/mail, /var/vmail, ~/Maildir),
               messages still in the queue (/var/spool/posthorn), the
               virtual users file (/etc/posthorn/users), /etc/aliases and
               the posthorn and vmail users, which may own such files.
  --help       print this

DESTDIR=DIR only stages the files under DIR, for packaging: no users, no
spool, no service changes, and root is not needed.
EOF
}

say() { printf 'install.sh: %s\n' "$*"; }
die() {
	printf 'install.sh: %s\n' "$*" >&2
	exit 1
}

systemd_running() { [ -d /run/systemd/system ]; }

# toml_str VALUE: VALUE as a TOML basic string.
toml_str() {
	printf '"%s"' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')"
}

# toml_list: the lines of standard input as a TOML array of strings.
toml_list() {
	sep="" out="["
	while IFS= read -r item; do
		[ -n "$item" ] || continue
		out="$out$sep$(toml_str "$item")"
		sep=", "
	done
	printf '%s]' "$out"
}

# words: the comma- or space-separated items of $1, one a line.
words() { printf '%s\n' "$1" | tr ',\t ' '\n\n\n' | sed '/^$/d'; }

# ---------------------------------------------------------------- files

# find_bin: the folder with the built programs.
find_bin() {
	if [ -n "$BIN" ]; then
		[ -x "$BIN/master" ] || die "--bin $BIN: no programs there (want $BIN/master)"
		return
	fi
	if command -v go >/dev/null 2>&1 && [ -f "$SRC/Makefile" ]; then
		say "building the programs (make build)"
		make -s -C "$SRC" build >&2 || die "make build failed"
	fi
	[ -x "$SRC/bin/master" ] || die "no programs in $SRC/bin: build them with make build (Go is needed), or pass --bin or --deb"
	BIN=$SRC/bin
}

# put MODE SRC DEST: install SRC as $DESTDIR/DEST unless it is already there
# with the same content.
put() {
	dst=$DESTDIR$3
	if [ -f "$dst" ] && [ ! -L "$dst" ] && cmp -s "$2" "$dst"; then
		chmod "$1" "$dst"
		return
	fi
	mkdir -p "$(dirname "$dst")"
	install -m "$1" "$2" "$dst"
}

# link TARGET DEST: a symbolic link $DESTDIR/DEST pointing at TARGET.
link() {
	dst=$DESTDIR$2
	[ -L "$dst" ] && [ "$(readlink "$dst")" = "$1" ] && return
	mkdir -p "$(dirname "$dst")"
	rm -f "$dst"
	ln -s "$1" "$dst"
}

# install_files: every file posthorn consists of, under $DESTDIR.
install_files() {
	tmp=$(mktemp -d)
	for p in "$BIN"/*; do
		name=${p##*/}
		case " $TOOLS " in *" $name "*) continue ;; esac
		[ -f "$p" ] && [ -x "$p" ] || continue
		put 0755 "$p" "/usr/lib/posthorn/$name"
	done
	put 0755 "$BIN/posthorn" /usr/sbin/posthorn
	put 0755 "$BIN/sendmail" /usr/sbin/sendmail
	put 0755 "$BIN/mailq" /usr/bin/mailq
	put 0755 "$BIN/newaliases" /usr/bin/newaliases
	# Where old programs look for sendmail, as Debian's MTAs provide it.
	link ../sbin/sendmail /usr/lib/sendmail
	for m in "$SRC"/man/*.[1-8]; do
		[ -f "$m" ] || continue
		name=${m##*/}
		gzip -9nc "$m" >"$tmp/$name.gz"
		put 0644 "$tmp/$name.gz" "/usr/share/man/man${name##*.}/$name.gz"
	done
	put 0644 "$SRC/etc/posthorn.service" "$UNITDIR/posthorn.service"
	put 0644 "$SRC/README.md" /usr/share/doc/posthorn/README.md
	put 0644 "$SRC/etc/posthorn.toml" /usr/share/doc/posthorn/examples/posthorn.toml
	# The administrator's files: written when missing, never replaced.
	if [ ! -e "$DESTDIR$CONF" ]; then
		put 0644 "$SRC/etc/posthorn.toml" "$CONF"
	fi
	if [ ! -e "$DESTDIR$PAM" ]; then
		"$DESTDIR/usr/lib/posthorn/auth" -pam-config >"$tmp/pam" || die "auth -pam-config failed"
		put 0644 "$tmp/pam" "$PAM"
	fi
	rm -rf "$tmp"
}

# ---------------------------------------------------------------- package

# build_deb: build the package from the programs; prints its path.
build_deb() {
	command -v dpkg-deb >/dev/null 2>&1 || return 1
	find_bin
	out=$(mktemp -d)
	sh "$SRC/etc/debian/build-deb.sh" -b "$BIN" -o "$out" >&2 || return 1
	ls "$out"/posthorn_*.deb
}

# same_as_installed DEB: whether DEB is the installed posthorn, file for file.
same_as_installed() {
	st=$(dpkg-query -W -f='${Status} ${Version}' posthorn 2>/dev/null) || return 1
	[ "$st" = "install ok installed $(dpkg-deb -f "$1" Version)" ] || return 1
	for part in md5sums conffiles postinst prerm postrm; do
		dpkg-deb -I "$1" "$part" 2>/dev/null | cmp -s - "/var/lib/dpkg/info/posthorn.$part" || return 1
	done
}

install_deb() {
	case $1 in /*) ;; *) set -- "$(pwd)/$1" ;; esac
	[ -f "$1" ] || die "no package $1"
	if same_as_installed "$1"; then
		say "posthorn $(dpkg-deb -f "$1" Version) is installed already: nothing to do"
		return
	fi
	for mta in $(dpkg-query -W -f='${db:Status-Abbrev} ${Package} ${Provides}\n' 2>/dev/null |
		awk '$1 == "ii" && $2 != "posthorn" && / mail-transport-agent/ { print $2 }'); do
		say "$mta provides mail-transport-agent: apt replaces it with posthorn"
	done
	say "installing $1"
	if command -v apt-get >/dev/null 2>&1; then
		# The configuration an --replace import wrote is kept (confold);
		# the packaged default then lands beside it as .dpkg-dist.
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
			-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$1" ||
			die "apt-get install $1 failed"
	else
		dpkg -i --force-confdef --force-confold "$1" || die "dpkg -i $1 failed"
	fi
}

posthorn_installed() {
	[ "$(dpkg-query -W -f='${Status}' posthorn 2>/dev/null || true)" = "install ok installed" ]
}

# ---------------------------------------------------------------- others

postfix_present() { command -v postconf >/dev/null 2>&1 && [ -f /etc/postfix/main.cf ]; }
dovecot_present() { command -v doveconf >/dev/null 2>&1; }

# stop_service NAME UNIT...: stop a service now and at boot.
stop_service() {
	name=$1
	shift
	if systemd_running; then
		systemctl stop "$@" 2>/dev/null || true
		systemctl disable "$@" 2>/dev/null || true
	elif [ -x "/etc/init.d/$name" ]; then
		invoke-rc.d "$name" stop 2>/dev/null || "/etc/init.d/$name" stop 2>/dev/null || true
	fi
	if [ -x "/etc/init.d/$name" ] && command -v update-rc.d >/dev/null 2>&1; then
		update-rc.d "$name" disable >/dev/null 2>&1 || true
	fi
}

stop_others() {
	if postfix_present; then
		say "stopping and disabling Postfix"
		stop_service postfix postfix.service 'postfix@-.service'
		if postfix status >/dev/null 2>&1; then postfix stop >/dev/null 2>&1 || true; fi
		postfix status >/dev/null 2>&1 && die "Postfix is still running: stop it (postfix stop) and run install.sh --replace again"
	fi
	if dovecot_present; then
		say "stopping and disabling Dovecot (the package stays installed: remove it with apt purge dovecot-core when you no longer need it)"
		stop_service dovecot dovecot.service dovecot.socket
		if command -v doveadm >/dev/null 2>&1 && doveadm process status >/dev/null 2>&1; then
			doveadm stop >/dev/null 2>&1 || true
		fi
		if [ -f /run/dovecot/master.pid ] && kill -0 "$(cat /run/dovecot/master.pid)" 2>/dev/null; then
			die "Dovecot is still running: stop it (doveadm stop) and run install.sh --replace again"
		fi
	fi
}

pf() { postconf -h "$1" 2>/dev/null || true; }
pfx() { postconf -xh "$1" 2>/dev/null || true; }
explicit() { [ -n "$(postconf -nh "$1" 2>/dev/null || true)" ]; }
dc() { doveconf -h "$1" 2>/dev/null || true; }

# table_domains VALUE: the domains a Postfix domain list names: literal
# names, and the keys of file-based tables (hash:/etc/postfix/x reads the
# source file /etc/postfix/x). Tables it cannot read go to $skipped.
table_domains() {
	words "$1" | while IFS= read -r item; do
		case $item in
		/*) file=$item ;;
		hash:/* | btree:/* | lmdb:/* | cdb:/* | dbm:/* | texthash:/*) file=${item#*:} ;;
		*:*)
			printf '%s\n' "$item" >>"$skipped"
			continue
			;;
		*)
			printf '%s\n' "$item"
			continue
			;;
		esac
		if [ -f "$file" ]; then
			sed -e 's/#.*//' "$file" | awk 'NF { print $1 }'
		else
			printf '%s\n' "$item" >>"$skipped"
		fi
	done
}

# import_config FILE: a posthorn.toml with what Postfix and Dovecot set.
import_config() {
	out=$1
	skipped=$(mktemp)
	{
		echo "# /etc/posthorn/posthorn.toml: posthorn's one configuration file, see"
		echo "# posthorn.toml(5). install.sh --replace wrote it from the settings of"
		echo "# Postfix (postconf) and Dovecot (doveconf) found on $(hostname)."
		echo "# Everything else has its default: the full list, commented, is in"
		echo "# /usr/share/doc/posthorn/examples/posthorn.toml."
		echo
	} >"$out"
	local_list="" virt_list="" relayhost="" home_mailbox="" cert="" key="" passwd_files="" networks=""
	imported=" "
	if postfix_present; then
		host=$(pfx myhostname)
		if explicit myhostname && [ -n "$host" ]; then
			printf '# myhostname\nhostname = %s\n' "$(toml_str "$host")" >>"$out"
			imported="$imported myhostname"
		fi
		virt_list=$(
			if explicit virtual_mailbox_domains; then table_domains "$(pfx virtual_mailbox_domains)"; fi |
				tr '[:upper:]' '[:lower:]' | awk '!seen[$0]++'
		)
		imported="$imported virtual_mailbox_domains"
		local_list=$(table_domains "$(pfx mydestination)" | tr '[:upper:]' '[:lower:]' | awk -v h="$(printf '%s' "$host" | tr '[:upper:]' '[:lower:]')" -v v="$virt_list" '
			BEGIN { n = split(v, vs, "\n"); for (i = 1; i <= n; i++) virt[vs[i]] = 1 }
			$0 == h { $0 = "$hostname" }
			!($0 in virt) && !seen[$0]++')
		printf '# mydestination\nlocal_domains = %s\n' "$(printf '%s\n' "$local_list" | toml_list)" >>"$out"
		imported="$imported mydestination"
		size=$(pfx message_size_limit)
		if explicit message_size_limit && [ "$size" -gt 0 ] 2>/dev/null; then
			printf '# message_size_limit\nmessage_size_limit = %s\n' "$size" >>"$out"
			imported="$imported message_size_limit"
		fi
		# posthorn takes one delimiter; Postfix may list several characters.
		delim=$(pfx recipient_delimiter)
		if explicit recipient_delimiter && [ "${#delim}" -le 1 ]; then
			printf '# recipient_delimiter\nrecipient_delimiter = %s\n' "$(toml_str "$delim")" >>"$out"
			imported="$imported recipient_delimiter"
		fi
		relayhost=$(pfx relayhost)
		imported="$imported relayhost"
		home_mailbox=$(pfx home_mailbox)
		imported="$imported home_mailbox"
		cert=$(pfx smtpd_tls_cert_file)
		key=$(pfx smtpd_tls_key_file)
		imported="$imported smtpd_tls_cert_file smtpd_tls_key_file"
		for n in $(words "$(pfx mynetworks)"); do
			case $n in
			\[*\]*) n=$(printf '%s' "$n" | tr -d '[]') ;;
			/* | *:*)
				printf 'mynetworks: %s\n' "$n" >>"$skipped"
				continue
				;;
			esac
			networks="$networks$n
"
		done
		imported="$imported mynetworks"
	fi
	if dovecot_present; then
		dcert=$(dc ssl_cert | sed 's/^<//')
		dkey=$(dc ssl_key | sed 's/^<//')
		# One certificate serves every posthorn service: Dovecot's when
		# Postfix had none or only Debian's self-signed one.
		case $cert in "" | *snakeoil*)
			if [ -n "$dcert" ] && [ -n "$dkey" ]; then cert=$dcert key=$dkey; fi
			;;
		esac
		# passdb { driver = passwd-file; args = [options] FILE }
		passwd_files=$(doveconf passdb 2>/dev/null | awk '
			/^passdb/ { drv = ""; args = "" }
			$1 == "driver" { drv = $3 }
			$1 == "args" { $1 = ""; $2 = ""; args = $0 }
			/^}/ && drv == "passwd-file" { n = split(args, a, " "); for (i = 1; i <= n; i++) if (a[i] !~ /=/) f = a[i]; print f }')
	fi
	{
		if [ -n "$virt_list" ] || [ -n "$passwd_files" ]; then
			echo
			echo "[virtual]"
			echo "# virtual_mailbox_domains"
			printf 'domains = %s\n' "$(printf '%s\n' "$virt_list" | toml_list)"
		fi
		first=""
		if [ -n "$virt_list" ] && [ ! -e /etc/posthorn/users ]; then
			for f in $passwd_files; do
				case $f in *%*) continue ;; esac
				first=$f
				break
			done
		fi
		if [ -n "$first" ]; then
			echo "# Dovecot's passwd-file: the virtual users (recipients and logins)."
			echo "# It stays where Dovecot kept it: keep it when you remove Dovecot."
			printf 'users_file = %s\n' "$(toml_str "$first")"
		fi
		rest=$(for f in $passwd_files; do [ "$f" = "$first" ] || printf '%s\n' "$f"; done)
		if [ -n "$rest" ]; then
			echo
			echo "[auth]"
			echo "# Dovecot's passwd-files: more users who may log in."
			printf 'passwd_files = %s\n' "$(printf '%s\n' "$rest" | toml_list)"
		fi
		if [ -n "$home_mailbox" ]; then
			echo
			echo "[local]"
			printf '# home_mailbox\nhome_mailbox = %s\n' "$(toml_str "$home_mailbox")"
		fi
		if [ -n "$networks" ]; then
			echo
			echo "[smtpd]"
			printf '# mynetworks\nrelay_networks = %s\n' "$(printf '%s' "$networks" | toml_list)"
		fi
		if [ -n "$cert" ] && [ -n "$key" ]; then
			echo
			echo "[tls]"
			printf '# smtpd_tls_cert_file, smtpd_tls_key_file (or Dovecot'"'"'s ssl_cert, ssl_key)\n'
			printf 'cert_file = %s\nkey_file = %s\n' "$(toml_str "$cert")" "$(toml_str "$key")"
		fi
		if [ -n "$relayhost" ]; then
			echo
			echo "[smtp]"
			printf '# relayhost\nrelayhost = %s\n' "$(toml_str "$relayhost")"
		fi
		if postfix_present; then
			echo
			echo "# Postfix settings in main.cf that were not imported; set their"
			echo "# posthorn equivalents by hand where posthorn.toml(5) has one:"
			postconf -n 2>/dev/null | while IFS= read -r line; do
				case "$imported " in *" ${line%% *} "*) continue ;; esac
				printf '#   %s\n' "$line"
			done
			if [ -s "$skipped" ]; then
				echo "# Tables that were not read (only files can be):"
				sed 's/^/#   /' "$skipped"
			fi
		fi
		echo "# /etc/aliases is used as it is."
	} >>"$out"
	rm -f "$skipped"
}

# ---------------------------------------------------------------- main

do_install() {
	[ "$(id -u)" = 0 ] || die "run me as root (or with DESTDIR=DIR to stage the files)"
	if [ ! -e "$CONF" ] && [ "$REPLACE" = no ]; then
		postfix_present && die "Postfix is installed: install.sh --replace imports its settings and replaces it (or remove it first)"
		dovecot_present && die "Dovecot is installed: install.sh --replace imports its settings and disables it (or remove it first)"
	fi
	newconf=""
	if [ "$REPLACE" = yes ]; then
		if [ -e "$CONF" ]; then
			say "$CONF exists: it is kept, nothing is imported"
		elif postfix_present || dovecot_present; then
			newconf=$(mktemp)
			import_config "$newconf"
		fi
		stop_others
	fi
	if [ -n "$newconf" ]; then
		mkdir -p /etc/posthorn
		install -m 0644 "$newconf" "$CONF"
		rm -f "$newconf"
		say "wrote $CONF from the settings of Postfix and Dovecot:"
		grep -v '^#' "$CONF" | sed '/^$/d; s/^/    /'
	fi
	if [ -z "$DEB" ] && [ "$NODEB" = no ]; then
		DEB=$(build_deb) || DEB=""
		[ -n "$DEB" ] || say "cannot build a package here: copying the files instead"
	fi
	if [ -n "$DEB" ]; then
		install_deb "$DEB"
	else
		find_bin
		say "installing the files"
		install_files
		sh "$SRC/etc/debian/postinst" configure
	fi
	if systemd_running; then
		say "done: systemctl status posthorn shows the service"
	else
		say "done: systemd is not running; start posthorn with: posthorn start"
	fi
}

do_uninstall() {
	[ "$(id -u)" = 0 ] || die "run me as root"
	if [ -f "$CONF" ]; then
		default=/usr/share/doc/posthorn/examples/posthorn.toml
		[ -f "$default" ] || default=$SRC/etc/posthorn.toml
		if ! cmp -s "$CONF" "$default"; then
			cp -p "$CONF" "$CONF.removed"
			say "your configuration is kept as $CONF.removed"
		fi
	fi
	if posthorn_installed || dpkg-query -W posthorn >/dev/null 2>&1; then
		say "removing the posthorn package"
		if command -v apt-get >/dev/null 2>&1; then
			DEBIAN_FRONTEND=noninteractive apt-get purge -y posthorn || die "apt-get purge posthorn failed"
		else
			dpkg --purge posthorn || die "dpkg --purge posthorn failed"
		fi
	else
		sh "$SRC/etc/debian/prerm" remove
		rm -rf /usr/lib/posthorn /usr/share/doc/posthorn
		rm -f /usr/sbin/posthorn /usr/sbin/sendmail /usr/lib/sendmail /usr/bin/mailq /usr/bin/newaliases
		rm -f "$UNITDIR/posthorn.service" "$CONF" "$PAM"
		for m in "$SRC"/man/*.[1-8]; do
			name=${m##*/}
			rm -f "/usr/share/man/man${name##*.}/$name.gz"
		done
		sh "$SRC/etc/debian/postrm" purge
	fi
	say "posthorn is removed; mail is kept: mailboxes, /var/spool/posthorn (queued mail), /etc/aliases, /etc/posthorn/users"
}

REPLACE=no MODE=install DEB="" BIN="" NODEB=no
while [ $# -gt 0 ]; do
	case $1 in
	-h | --help)
		usage
		exit 0
		;;
	--replace) REPLACE=yes ;;
	--uninstall) MODE=uninstall ;;
	--no-deb) NODEB=yes ;;
	--deb=*) DEB=${1#--deb=} ;;
	--bin=*) BIN=${1#--bin=} ;;
	--deb | --bin)
		[ $# -ge 2 ] || die "$1 needs an argument"
		if [ "$1" = --deb ]; then DEB=$2; else BIN=$2; fi
		shift
		;;
	*) die "unknown argument $1 (install.sh --help)" ;;
	esac
	shift
done

if [ -n "$DESTDIR" ]; then
	[ "$MODE" = install ] && [ "$REPLACE" = no ] && [ -z "$DEB" ] ||
		die "DESTDIR= only stages the files: no --replace, --uninstall or --deb"
	case $DESTDIR in /*) ;; *) DESTDIR=$(pwd)/$DESTDIR ;; esac
	find_bin
	install_files
	exit 0
fi
case $MODE in
install) do_install ;;
uninstall) do_uninstall ;;
esac
