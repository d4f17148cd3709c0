package apiserver

import (
	"net/http"
	"time"

	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/marketplace"
	"github.com/vmssd/vmssd/internal/marketplace/syndication"
)

// Marketplace syndication (docs/marketplace.md), operator only:
//
//	PUT|GET|DELETE /providers/vmssd.Admin/marketplace/registration
//	GET            /providers/vmssd.Admin/marketplace/products
//	POST           /providers/vmssd.Admin/marketplace/downloads   {"products":[names]}
//	POST           /providers/vmssd.Admin/marketplace/imports     {"directory":"/abs","products":[names]}
//	GET|DELETE     /providers/vmssd.Admin/marketplace/downloads/{id}  (status with percentComplete / cancel)

const mpP = "providers/vmssd.Admin/marketplace"

func (s *Server) registerMarketplace(av map[string]bool) {
	op := func(r *route) { r.operator = true }
	get, put, post, del := http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete
	op(s.handle(put, mpP+"/registration", av, s.mpPutRegistration))
	op(s.handle(get, mpP+"/registration", av, s.mpGetRegistration))
	op(s.handle(del, mpP+"/registration", av, s.mpDeleteRegistration))
	op(s.handle(get, mpP+"/products", av, s.mpProducts))
	op(s.handle(post, mpP+"/downloads", av, s.mpDownload))
	op(s.handle(post, mpP+"/imports", av, s.mpImport))
	op(s.handle(get, mpP+"/downloads/{id}", av, s.mpGetDownload))
	op(s.handle(del, mpP+"/downloads/{id}", av, s.mpCancelDownload))
	s.registerGallery()
}

func (s *Server) marketplace() (*syndication.Service, error) {
	if s.opts.Marketplace == nil {
		return nil, errs.New(errs.Conflict, "MarketplaceUnavailable", "This server runs no marketplace.")
	}
	return s.opts.Marketplace, nil
}

type registrationBody struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	Properties struct {
		Endpoint      string     `json:"endpoint"`
		Credential    string     `json:"credential,omitempty"`
		CAPEM         string     `json:"caPem,omitempty"`
		HasCredential bool       `json:"hasCredential"`
		Registered    *time.Time `json:"registeredTime,omitempty"`
	} `json:"properties"`
}

func renderRegistration(r *syndication.Registration) registrationBody {
	var b registrationBody
	b.ID, b.Name, b.Type = "/"+mpP+"/registration", "registration", "vmssd.Admin/marketplace/registration"
	b.Properties.Endpoint, b.Properties.CAPEM = r.Endpoint, r.CAPEM
	b.Properties.HasCredential = r.Credential != ""
	t := r.Registered
	b.Properties.Registered = &t
	return b
}

func (s *Server) mpPutRegistration(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	mp, err := s.marketplace()
	if err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var in registrationBody
	if body == nil {
		return errs.New(errs.Invalid, "InvalidRequestContent", "The request content is missing.")
	}
	if err := decode(body, &in); err != nil {
		return err
	}
	if in.Properties.Endpoint == "" {
		return errs.InvalidParameter("properties.endpoint", "Required parameter 'endpoint' is missing.")
	}
	reg, err := mp.Register(r.Context(), syndication.Registration{Endpoint: in.Properties.Endpoint, Credential: in.Properties.Credential, CAPEM: in.Properties.CAPEM})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, renderRegistration(reg))
	return nil
}

func (s *Server) mpGetRegistration(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	mp, err := s.marketplace()
	if err != nil {
		return err
	}
	reg, err := mp.Registration(r.Context())
	if err != nil {
		if errs.From(err).Code == "MarketplaceNotRegistered" {
			return errs.New(errs.NotFound, "MarketplaceNotRegistered", "%s", errs.From(err).Message)
		}
		return err
	}
	writeJSON(w, http.StatusOK, renderRegistration(reg))
	return nil
}

func (s *Server) mpDeleteRegistration(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	mp, err := s.marketplace()
	if err != nil {
		return err
	}
	if err := mp.Unregister(r.Context()); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) mpProducts(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	mp, err := s.marketplace()
	if err != nil {
		return err
	}
	ix, err := mp.Products(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"format": ix.Format, "value": ix.Products})
	return nil
}

type downloadBody struct {
	Products  []string `json:"products"`
	Directory string   `json:"directory,omitempty"`
}

func (s *Server) mpDownload(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	return s.mpStart(w, r, rc, false)
}

func (s *Server) mpImport(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	return s.mpStart(w, r, rc, true)
}

func (s *Server) mpStart(w http.ResponseWriter, r *http.Request, rc *reqCtx, imp bool) error {
	mp, err := s.marketplace()
	if err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var in downloadBody
	if body != nil {
		if err := decode(body, &in); err != nil {
			return err
		}
	}
	var j *syndication.Job
	if imp {
		if in.Directory == "" {
			return errs.InvalidParameter("directory", "Required parameter 'directory' (an exported catalog on the server) is missing.")
		}
		j, err = mp.Import(r.Context(), in.Directory, in.Products)
	} else {
		if len(in.Products) == 0 {
			return errs.InvalidParameter("products", "Name at least one product (vmssctl marketplace products lists them).")
		}
		j, err = mp.Download(r.Context(), in.Products)
	}
	if err != nil {
		return err
	}
	st := j.Status(s.opts.Now())
	u := "https://" + r.Host + "/" + mpP + "/downloads/" + st.ID + "?api-version=" + rc.api
	w.Header().Set("Azure-AsyncOperation", u)
	w.Header().Set("Location", u)
	w.Header().Set("Retry-After", "1")
	writeJSON(w, http.StatusAccepted, renderJob(st))
	return nil
}

func renderJob(st syndication.JobStatus) map[string]any {
	out := map[string]any{
		"id": "/" + mpP + "/downloads/" + st.ID, "name": st.ID, "status": st.Status,
		"startTime": st.StartTime, "percentComplete": st.PercentComplete,
		"properties": map[string]any{
			"bytesDone": st.BytesDone, "bytesTotal": st.BytesTotal,
			"bytesPerSecond": st.BytesPerSecond, "etaSeconds": st.ETASeconds, "products": st.Products,
		},
	}
	if st.EndTime != nil {
		out["endTime"] = *st.EndTime
	}
	if st.Error != nil {
		e := errs.From(st.Error)
		out["error"] = map[string]any{"code": e.ARMCode(), "message": e.Message}
	}
	return out
}

func (s *Server) mpGetDownload(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	mp, err := s.marketplace()
	if err != nil {
		return err
	}
	j, ok := mp.Job(rc.v("id"))
	if !ok {
		return errs.New(errs.NotFound, "NotFound", "The marketplace download '%s' does not exist (downloads are forgotten when the server restarts; start it again to resume).", rc.v("id"))
	}
	st := j.Status(s.opts.Now())
	if st.Status == marketplace.JobRunning {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, http.StatusOK, renderJob(st))
	return nil
}

func (s *Server) mpCancelDownload(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	mp, err := s.marketplace()
	if err != nil {
		return err
	}
	if !mp.Cancel(rc.v("id")) {
		return errs.New(errs.NotFound, "NotFound", "The marketplace download '%s' does not exist.", rc.v("id"))
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}
