#!/bin/sh
# build-deb.sh: build posthorn's Debian package with dpkg-deb alone (no
# debhelper): install.sh stages the files, this adds DEBIAN/.
#
#   sh etc/debian/build-deb.sh [-b BINDIR] [-o OUTDIR] [-v VERSION]
#
# BINDIR holds the built programs (default bin/), the package is written to
# OUTDIR (default .) as posthorn_VERSION_ARCH.deb and its path printed.
# VERSION defaults to one made from git describe: a tag vX.Y gives X.Y
# (X.Y+N.gHASH past it); without tags it is 0.1~gitDATE.HASH, or 0.1
# outside git. MAINTAINER overrides the Maintainer field.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
bin=$top/bin out=. version=""
while getopts b:o:v: opt; do
	case $opt in
	b) bin=$OPTARG ;;
	o) out=$OPTARG ;;
	v) version=$OPTARG ;;
	*) exit 2 ;;
	esac
done
bin=$(cd "$bin" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)

if [ -z "$version" ]; then
	if tag=$(git -C "$top" describe --tags --match 'v[0-9]*' 2>/dev/null); then
		# v1.2 -> 1.2; v1.2-3-gabc -> 1.2+3.gabc
		version=$(printf '%s' "${tag#v}" | sed 's/-\([0-9]*\)-g/+\1.g/')
	elif stamp=$(git -C "$top" log -1 --format='%cd.%h' --date=format-local:%Y%m%d%H%M%S 2>/dev/null); then
		version="0.1~git$stamp"
	else
		version=0.1
	fi
fi
arch=$(dpkg --print-architecture)

stage=$(mktemp -d)
chmod 0755 "$stage"
trap 'rm -rf "$stage"' EXIT
DESTDIR=$stage sh "$top/install.sh" --bin "$bin"

# Every libc symbol version the programs use: the oldest libc6 they run on.
glibc=$(for f in "$stage"/usr/lib/posthorn/* "$stage"/usr/sbin/* "$stage"/usr/bin/*; do
	[ -f "$f" ] && ! [ -L "$f" ] && objdump -T "$f" 2>/dev/null
done | sed -n 's/.*GLIBC_\([0-9][0-9.]*\).*/\1/p' | sort -t. -k1,1n -k2,2n -k3,3n | tail -n 1)
[ -n "$glibc" ] || glibc=2.34

# Mail servers announce what they serve, as Dovecot's packages do.
provides=mail-transport-agent
[ -x "$stage/usr/lib/posthorn/imapd" ] && provides="$provides, imap-server"
[ -x "$stage/usr/lib/posthorn/pop3d" ] && provides="$provides, pop3-server"

mkdir -p "$stage/DEBIAN"
size=$(du -sk --apparent-size "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
	-e "s/@GLIBC@/$glibc/" -e "s/@PROVIDES@/$provides/" \
	-e "s/@MAINTAINER@/${MAINTAINER:-posthorn maintainers <postmaster@localhost>}/" \
	"$here/control.in" >"$stage/DEBIAN/control"
printf '%s\n' /etc/posthorn/posthorn.toml /etc/pam.d/posthorn >"$stage/DEBIAN/conffiles"
for s in postinst prerm postrm; do
	install -m 0755 "$here/$s" "$stage/DEBIAN/$s"
done
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' |
	grep -v -x -e etc/posthorn/posthorn.toml -e etc/pam.d/posthorn | LC_ALL=C sort |
	xargs md5sum) >"$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"

deb=$out/posthorn_${version}_$arch.deb
dpkg-deb --root-owner-group -Zgzip --build "$stage" "$deb" >/dev/null
echo "$deb"
