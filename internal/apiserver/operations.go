package apiserver

import (
	"errors"
	"net/http"
	"strings"

	"github.com/vmssd/vmssd/api/arm"
	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
)

// retryAfter is the poll interval (seconds) sent with every answer that
// leaves an operation running: the initial 201/202, an InProgress status and
// a 202 Location poll. Without it clients wait their default (30 s for az).
// It is whole seconds because az's poller (azure-core) reads Retry-After
// with int() and falls back to 30 s on "0"; Go's azcore would take less.
const retryAfter = "1"

// getOperation serves both the Azure-AsyncOperation status resource and,
// with monitor=true, the Location URL (202 while running, then the result).
func (s *Server) getOperation(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	op, _, err := state.Get[model.Operation](r.Context(), s.opts.Store, model.OperationKey(rc.v("op")))
	if errors.Is(err, store.ErrNotFound) || err == nil && !strings.EqualFold(op.Sub, rc.v("sub")) {
		return errs.New(errs.NotFound, "NotFound", "The operation '%s' was not found.", rc.v("op"))
	}
	if err != nil {
		return err
	}
	if strings.EqualFold(rc.query.Get("monitor"), "true") {
		switch op.Status {
		case arm.StatusInProgress:
			w.Header().Set("Location", "https://"+r.Host+r.URL.RequestURI())
			w.Header().Set("Retry-After", retryAfter)
			w.WriteHeader(http.StatusAccepted)
		case arm.StatusSucceeded:
			writeJSON(w, http.StatusOK, struct{}{})
		default:
			code := http.StatusBadRequest
			if op.Error != nil && strings.Contains(op.Error.Code, "NotFound") {
				code = http.StatusNotFound
			}
			d := arm.ErrorDetail{Code: "OperationFailed", Message: "The operation failed."}
			if op.Error != nil {
				d = *op.Error
			}
			w.Header().Set("x-ms-error-code", d.Code)
			writeJSON(w, code, arm.ErrorResponse{Error: d})
		}
		return nil
	}
	if op.Status == arm.StatusInProgress {
		w.Header().Set("Retry-After", retryAfter)
	}
	writeJSON(w, http.StatusOK, arm.OperationStatus{
		ID: arm.OperationID(op.Sub, op.Location, op.ID), Name: op.ID, Status: op.Status,
		StartTime: op.Start, EndTime: op.End, Error: op.Error,
	})
	return nil
}
