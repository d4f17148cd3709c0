package apiserver

import (
	"errors"
	"net/http"

	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
)

// Helpers for the simple record resources of the admin APIs.

// getRecord answers with the record under key, rendered, or notFound.
func getRecord[T, B any](s *Server, w http.ResponseWriter, r *http.Request, key string, notFound *errs.Error, render func(*T) B) error {
	v, _, err := state.Get[T](r.Context(), s.opts.Store, key)
	if errors.Is(err, store.ErrNotFound) {
		return notFound
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, render(v))
	return nil
}

// listRecords answers {"value":[...]} with every record under prefix.
func listRecords[T, B any](s *Server, w http.ResponseWriter, r *http.Request, prefix string, render func(*T) B) error {
	vs, _, err := state.List[T](r.Context(), s.opts.Store, prefix)
	if err != nil {
		return err
	}
	out := struct {
		Value []B `json:"value"`
	}{Value: make([]B, 0, len(vs))}
	for _, v := range vs {
		out.Value = append(out.Value, render(v))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// deleteRecord deletes key: 200 when it existed, 204 when it did not.
func (s *Server) deleteRecord(w http.ResponseWriter, r *http.Request, key string) error {
	if _, err := s.opts.Store.Get(r.Context(), key); errors.Is(err, store.ErrNotFound) {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	if _, err := s.opts.Store.Txn(r.Context(), nil, store.Delete(key)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}
