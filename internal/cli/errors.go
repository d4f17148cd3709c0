package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// armError is the "error" object of an ARM error body or of a failed
// operation's status.
type armError struct {
	Code    string     `json:"code"`
	Message string     `json:"message"`
	Target  string     `json:"target"`
	Details []armError `json:"details"`
}

// describeError renders err as az does ("<code>: <message>") and picks
// the exit code.
func describeError(err error) (string, int) {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		code := ExitError
		if re.StatusCode == http.StatusNotFound {
			code = ExitNotFound
		}
		return describeResponseError(re), code
	}
	var ae *azidentity.AuthenticationFailedError
	if errors.As(err, &ae) {
		return describeAuthError(ae), ExitError
	}
	return err.Error(), ExitError
}

func describeResponseError(re *azcore.ResponseError) string {
	var body struct {
		Error   *armError `json:"error"`
		Code    string    `json:"code"`
		Message string    `json:"message"`
	}
	if re.RawResponse != nil {
		if b, err := runtime.Payload(re.RawResponse); err == nil {
			_ = json.Unmarshal(b, &body)
		}
	}
	e := body.Error
	if e == nil {
		e = &armError{Code: body.Code, Message: body.Message}
	}
	if e.Code == "" {
		e.Code = re.ErrorCode
	}
	if e.Code == "" {
		e.Code = http.StatusText(re.StatusCode)
		if e.Code == "" {
			e.Code = fmt.Sprintf("HTTP%d", re.StatusCode)
		}
	}
	if e.Message == "" {
		e.Message = fmt.Sprintf("the server answered %d", re.StatusCode)
	}
	var sb strings.Builder
	writeARMError(&sb, *e, "")
	return strings.TrimRight(sb.String(), "\n")
}

func writeARMError(sb *strings.Builder, e armError, indent string) {
	fmt.Fprintf(sb, "%s%s: %s", indent, e.Code, e.Message)
	if e.Target != "" {
		fmt.Fprintf(sb, " (target: %s)", e.Target)
	}
	sb.WriteString("\n")
	for _, d := range e.Details {
		writeARMError(sb, d, indent+"  ")
	}
}

func describeAuthError(ae *azidentity.AuthenticationFailedError) string {
	if ae.RawResponse != nil {
		if b, err := runtime.Payload(ae.RawResponse); err == nil {
			var body struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			if json.Unmarshal(b, &body) == nil && body.Error != "" {
				return fmt.Sprintf("AuthenticationFailed: %s: %s", body.Error, body.Description)
			}
		}
	}
	msg, _, _ := strings.Cut(ae.Error(), "\n")
	return "AuthenticationFailed: " + msg
}

// debugPolicy logs every HTTP try to w.
type debugPolicy struct{ w io.Writer }

func (p debugPolicy) Do(req *policy.Request) (*http.Response, error) {
	start := time.Now()
	raw := req.Raw()
	fmt.Fprintf(p.w, "DEBUG: %s %s\n", raw.Method, raw.URL.Redacted())
	resp, err := req.Next()
	if err != nil {
		fmt.Fprintf(p.w, "DEBUG:   error after %s: %v\n", time.Since(start).Round(time.Millisecond), err)
		return resp, err
	}
	fmt.Fprintf(p.w, "DEBUG:   %d %s in %s (x-ms-request-id: %s)\n", resp.StatusCode, http.StatusText(resp.StatusCode),
		time.Since(start).Round(time.Millisecond), resp.Header.Get("x-ms-request-id"))
	return resp, err
}

// isPreconditionFailed reports an ETag mismatch (412).
func isPreconditionFailed(err error) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusPreconditionFailed
}
