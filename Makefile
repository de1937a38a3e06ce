# posthorn — see README.md.
GO      ?= go
DESTDIR ?=
PREFIX  ?= /usr
# Every program in bin/ but these is a daemon for /usr/lib/posthorn.
TOOLS    = posthorn sendmail mailq newaliases
# Debian packages needed to build: auth checks system users' passwords
# through PAM, a C library, so it alone is built with cgo.
BUILD_DEBS = gcc libc6-dev libpam0g-dev
# Packages the tests drive as real clients and peers. postfix brings
# smtp-sink(1), the remote SMTP server of the outbound client's tests.
TEST_DEBS = swaks libnet-ssleay-perl curl fail2ban python3 mandoc postfix debootstrap bsd-mailx isync dovecot-imapd fetchmail dovecot-pop3d

.PHONY: all build build-deps run test test-deps bench install clean fuzz

all: build

build: build-deps
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/ $$($(GO) list ./cmd/... | grep -v '/cmd/auth$$')
	CGO_ENABLED=1 $(GO) build -trimpath -o bin/ ./cmd/auth

# The whole system in the foreground on the development instance
# (etc/posthorn-dev.toml): 127.0.0.1:2525, state under ./run/. Ctrl-C stops it.
run: build
	@mkdir -p run
	exec bin/master -c etc/posthorn-dev.toml

# install_debs installs the Debian packages $(1) that are missing (as root),
# or says how to.
define install_debs
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing$$missing"; \
			(DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing >/dev/null 2>&1 || \
			 (apt-get update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing >/dev/null)) || \
			 { echo "cannot install$$missing"; exit 1; }; \
		else \
			echo "these Debian packages are needed:$$missing"; \
			echo "install them with: sudo apt-get install$$missing"; exit 1; \
		fi; \
	fi
endef

build-deps:
	$(call install_debs,$(BUILD_DEBS))

# Installing postfix or dovecot may start them (where an init system runs
# services): the tests need only smtp-sink and private Dovecot instances,
# so the system ones are stopped again.
test-deps:
	$(call install_debs,$(BUILD_DEBS) $(TEST_DEBS))
	@postfix stop 2>/dev/null || true
	@doveadm stop 2>/dev/null || true

# Unit tests, fuzz seed corpora, and the end-to-end tests in tests/ that
# start the real binaries and talk to them with real clients.
test: test-deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 15m ./...

# Throughput, latency and memory figures (see tests/bench): N messages over
# C concurrent SMTP sessions against posthorn, and against a private Postfix
# instance when Postfix is installed (it is never installed here).
# BENCH_CLIENT=smtp-source drives both with Postfix's client; BENCH_ARGS
# passes flags, e.g. BENCH_ARGS="-n 20000 -c 50 -rounds 1".
# BENCH_CASE=local|relay|both|imap|pop3|all, or several joined by commas
# (default all): delivery to Maildirs; mail submitted on the submission
# port and relayed over SMTP to smtp-sink(1), Postfix relaying to the same
# sink for comparison; IMAP (SELECT, FETCH, SEARCH on a large INBOX, memory
# of IDLE sessions) and POP3 (full download) against a private Dovecot on
# the same Maildir when Dovecot is installed.
BENCH_CASE ?= all
bench: build test-deps
	$(GO) test -run '^$$' -bench . -benchtime 2000x ./pkg/maildir ./pkg/spool
	$(GO) run ./tests/bench -bin bin -case $(BENCH_CASE) $(BENCH_ARGS)

install: build
	install -d $(DESTDIR)$(PREFIX)/lib/posthorn $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/bin \
		$(DESTDIR)/etc/posthorn $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5 \
		$(DESTDIR)$(PREFIX)/share/man/man8
	for p in bin/*; do case " $(TOOLS) " in *" $${p#bin/} "*) ;; *) install -m 0755 $$p $(DESTDIR)$(PREFIX)/lib/posthorn/;; esac; done
	install -m 0755 bin/posthorn $(DESTDIR)$(PREFIX)/sbin/posthorn
	install -m 0755 bin/sendmail $(DESTDIR)$(PREFIX)/sbin/sendmail
	install -m 0755 bin/mailq $(DESTDIR)$(PREFIX)/bin/mailq
	install -m 0755 bin/newaliases $(DESTDIR)$(PREFIX)/bin/newaliases
	[ -e $(DESTDIR)/etc/posthorn/posthorn.toml ] || install -m 0644 etc/posthorn.toml $(DESTDIR)/etc/posthorn/posthorn.toml
	for m in man/*.[158]; do [ -e "$$m" ] || continue; s=$${m##*.}; install -m 0644 $$m $(DESTDIR)$(PREFIX)/share/man/man$$s/; done

# A Debian package of the built programs, made with dpkg-deb alone (see
# etc/debian/build-deb.sh): posthorn_VERSION_ARCH.deb in this folder.
.PHONY: deb
deb: build
	sh etc/debian/build-deb.sh -b bin -o .

clean:
	rm -rf bin run
