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
			w.Header().Set("Retry-After", "1")
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
	writeJSON(w, http.StatusOK, arm.OperationStatus{
		ID: arm.OperationID(op.Sub, op.Location, op.ID), Name: op.ID, Status: op.Status,
		StartTime: op.Start, EndTime: op.End, Error: op.Error,
	})
	return nil
}
