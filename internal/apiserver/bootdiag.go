package apiserver

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/vmssd/vmssd/internal/errs"
)

// retrieveBootDiagnosticsData answers like Azure: URIs of the console
// screenshot (none here) and of the serial console log, which this server
// serves itself (with the caller's bearer token instead of a SAS).
func (s *Server) retrieveBootDiagnostics(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	ref := s.ref(rc)
	_, inst, err := s.loadSetInstance(r.Context(), ref, rc.v("id"))
	if err != nil {
		return err
	}
	u := "https://" + r.Host + "/subscriptions/" + ref.Sub + "/resourceGroups/" + ref.RG +
		"/providers/Microsoft.Compute/virtualMachineScaleSets/" + ref.Name + "/virtualMachines/" +
		strconv.FormatInt(inst.ID, 10) + "/bootDiagnostics/serialConsole?api-version=" + url.QueryEscape(rc.api)
	writeJSON(w, http.StatusOK, map[string]string{"consoleScreenshotBlobUri": "", "serialConsoleLogBlobUri": u})
	return nil
}

// serialConsole serves an instance's captured console as text.
func (s *Server) serialConsole(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	ctx := r.Context()
	_, inst, err := s.loadSetInstance(ctx, s.ref(rc), rc.v("id"))
	if err != nil {
		return err
	}
	b, err := s.opts.Observer.Console(ctx, inst)
	if err != nil {
		return errs.New(errs.Conflict, "OperationNotAllowed", "The console of instance %d is not available: the instance is not on its host.", inst.ID).Wrap(err)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	return nil
}
