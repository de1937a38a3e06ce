#!/bin/sh
# posthorn installer for Debian. For now it installs the programs and the
# example configuration (make install); users, spool and the systemd unit
# follow in the installation work.
set -eu
cd "$(dirname "$0")"
make install DESTDIR="${DESTDIR:-}"
