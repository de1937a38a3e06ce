//go:build linux && cgo

package pam

/*
#cgo LDFLAGS: -lpam
#include <security/pam_appl.h>
#include <stdlib.h>
#include <string.h>

struct ph_creds {
	const char *user;
	const char *password;
};

// ph_conv answers PAM's prompts: the password for a hidden prompt, the user
// name for a visible one. Messages are ignored; anything else fails.
static int ph_conv(int n, const struct pam_message **msg, struct pam_response **resp, void *appdata) {
	struct ph_creds *c = appdata;
	struct pam_response *r;
	int i;

	if (n <= 0 || n > PAM_MAX_NUM_MSG)
		return PAM_CONV_ERR;
	r = calloc((size_t)n, sizeof *r);
	if (r == NULL)
		return PAM_BUF_ERR;
	for (i = 0; i < n; i++) {
		switch (msg[i]->msg_style) {
		case PAM_PROMPT_ECHO_OFF:
			r[i].resp = strdup(c->password);
			if (r[i].resp == NULL)
				goto fail;
			break;
		case PAM_PROMPT_ECHO_ON:
			r[i].resp = strdup(c->user);
			if (r[i].resp == NULL)
				goto fail;
			break;
		case PAM_ERROR_MSG:
		case PAM_TEXT_INFO:
			break;
		default:
			goto fail;
		}
	}
	*resp = r;
	return PAM_SUCCESS;
fail:
	for (i = 0; i < n; i++) {
		if (r[i].resp != NULL) {
			explicit_bzero(r[i].resp, strlen(r[i].resp));
			free(r[i].resp);
		}
	}
	free(r);
	return PAM_CONV_ERR;
}

// ph_nodelay replaces the delay PAM would sleep after a failure (pam_unix
// asks for two seconds): the auth daemon applies its own, per client and
// per user, without holding a thread.
static void ph_nodelay(int retval, unsigned usec, void *appdata) {
	(void)retval; (void)usec; (void)appdata;
}

// ph_check runs one transaction. *stage is 0 for pam_start, 1 for
// pam_authenticate, 2 for pam_acct_mgmt; on success *canon is PAM_USER,
// to be freed by the caller.
static int ph_check(const char *service, const char *user, const char *password,
		const char *rhost, const char *tty, int *stage, char **canon) {
	struct ph_creds c = { user, password };
	struct pam_conv pc = { ph_conv, &c };
	pam_handle_t *h = NULL;
	const void *item = NULL;
	int rc;

	*stage = 0;
	*canon = NULL;
	rc = pam_start(service, user, &pc, &h);
	if (rc != PAM_SUCCESS)
		return rc;
	rc = pam_set_item(h, PAM_RHOST, rhost);
	if (rc == PAM_SUCCESS)
		rc = pam_set_item(h, PAM_TTY, tty);
	if (rc == PAM_SUCCESS)
		rc = pam_set_item(h, PAM_FAIL_DELAY, (const void *)ph_nodelay);
	if (rc == PAM_SUCCESS) {
		*stage = 1;
		rc = pam_authenticate(h, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
	}
	if (rc == PAM_SUCCESS) {
		*stage = 2;
		rc = pam_acct_mgmt(h, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
	}
	if (rc == PAM_SUCCESS && pam_get_item(h, PAM_USER, &item) == PAM_SUCCESS && item != NULL)
		*canon = strdup(item);
	pam_end(h, rc);
	return rc;
}

static const char *ph_strerror(int rc) {
	// Linux-PAM does not use the handle for this.
	return pam_strerror(NULL, rc);
}
*/
import "C"

import (
	"unsafe"
)

// Available reports whether this build checks passwords through PAM.
const Available = true

// Check runs one PAM transaction for user and password: authentication,
// then the account check. rhost is the client's address (PAM_RHOST, for
// modules that log or restrict by host), tty the protocol (PAM_TTY, which
// some modules require to be set). It blocks its thread for the whole
// check; callers bound how many run at once.
func Check(user, password, rhost, tty string) (Result, error) {
	cService, cUser, cPass := C.CString(Service), C.CString(user), C.CString(password)
	cRhost, cTTY := C.CString(rhost), C.CString(tty)
	defer func() {
		C.explicit_bzero(unsafe.Pointer(cPass), C.size_t(len(password)))
		for _, p := range []*C.char{cService, cUser, cPass, cRhost, cTTY} {
			C.free(unsafe.Pointer(p))
		}
	}()
	var stage C.int
	var canon *C.char
	rc := C.ph_check(cService, cUser, cPass, cRhost, cTTY, &stage, &canon)
	if canon != nil {
		defer C.free(unsafe.Pointer(canon))
	}
	r := Result{Stage: [...]Stage{Start, Authenticate, AccountCheck}[stage]}
	if rc == C.PAM_SUCCESS {
		r.OK, r.User = true, user
		if canon != nil {
			r.User = C.GoString(canon)
		}
		return r, nil
	}
	r.Message = C.GoString(C.ph_strerror(rc))
	switch rc {
	case C.PAM_AUTH_ERR, C.PAM_USER_UNKNOWN, C.PAM_CRED_INSUFFICIENT, C.PAM_MAXTRIES,
		C.PAM_PERM_DENIED, C.PAM_ACCT_EXPIRED, C.PAM_NEW_AUTHTOK_REQD, C.PAM_AUTHTOK_EXPIRED:
		// The user's answer, or the account's state.
		r.UnknownUser = rc == C.PAM_USER_UNKNOWN
		if rc == C.PAM_AUTH_ERR && stage == 1 {
			// Dovecot's words, which fail2ban's dovecot filter matches.
			r.Message = "Authentication failure (password mismatch?)"
		}
	default:
		// PAM_AUTHINFO_UNAVAIL, PAM_SYSTEM_ERR, PAM_BUF_ERR, PAM_ABORT,
		// PAM_CONV_ERR, missing modules...
		r.Temp = true
	}
	return r, nil
}
