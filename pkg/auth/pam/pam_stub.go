//go:build !linux || !cgo

package pam

// Available reports whether this build checks passwords through PAM.
const Available = false

// Check always fails with ErrUnavailable: PAM needs cgo.
func Check(user, password, rhost, tty string) (Result, error) {
	return Result{Temp: true, Stage: Start, Message: ErrUnavailable.Error()}, ErrUnavailable
}
