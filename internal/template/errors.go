package template

import (
	"errors"
	"fmt"

	"github.com/vmssd/vmssd/internal/errs"
)

// ARM error codes the package produces.
const (
	// CodeInvalidTemplate: the template or an expression in it is wrong.
	CodeInvalidTemplate = "InvalidTemplate"
	// CodeInvalidTemplateDeployment: the parameters given do not fit the template.
	CodeInvalidTemplateDeployment = "InvalidTemplateDeployment"
)

// Error is a template error as ARM reports it: a code, the JSON path of the
// value at fault and, when the template came from bytes, its line and column.
type Error struct {
	Code    string
	Path    string // e.g. "resources[2].properties.name"; empty for the document
	Line    int    // 1-based; 0 when unknown
	Column  int
	Message string
	Err     error // the underlying cause (an *EvalError, a callback's error)
}

func (e *Error) Error() string {
	loc := ""
	if e.Path != "" {
		loc = fmt.Sprintf(" The template value at '%s'", e.Path)
		if e.Line > 0 {
			loc += fmt.Sprintf(" (line '%d' and column '%d')", e.Line, e.Column)
		}
		loc += " is not valid:"
	} else if e.Line > 0 {
		loc = fmt.Sprintf(" At line '%d' and column '%d':", e.Line, e.Column)
	}
	return fmt.Sprintf("Deployment template validation failed:%s %s.", loc, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// ARM converts the error into the service's error vocabulary: a 400 with the
// ARM code, the message, and the JSON path as the target.
func (e *Error) ARM() *errs.Error {
	code := e.Code
	if code == "" {
		code = CodeInvalidTemplate
	}
	return errs.New(errs.Invalid, code, "%s", e.Error()).WithTarget(e.Path)
}

// ToARM converts any error from this package into an *errs.Error; errors a
// callback returned that already are *errs.Error (a missing resource, a
// forbidden reference) pass through unchanged.
func ToARM(err error) *errs.Error {
	if err == nil {
		return nil
	}
	var ae *errs.Error
	if errors.As(err, &ae) {
		return ae
	}
	var te *Error
	if errors.As(err, &te) {
		return te.ARM()
	}
	return errs.New(errs.Invalid, CodeInvalidTemplate, "%s", err.Error())
}
