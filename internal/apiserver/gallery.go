package apiserver

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/vmssd/vmssd/internal/deploy"
	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/marketplace"
)

// Gallery items (Azure Stack's Microsoft.Gallery.Admin, api-version
// 2015-04-01): the operator adds (POST {"galleryItemUri"} or the azpkg as
// the body), lists, gets and removes items; tenants list what is offered
// (Microsoft.Gallery/galleryitems) and deploy an item, which runs its
// default template through the deployments API as the caller, with the
// parameters checked against the item's definitions first. A removal is a
// single store delete: every later read and deploy sees it gone.

// GalleryAPIVersions are the gallery api-versions served.
var GalleryAPIVersions = set("2015-04-01", "2024-01-01")

const (
	galAdminP = subP + "/providers/Microsoft.Gallery.Admin/galleryItems"
	galP      = subP + "/providers/Microsoft.Gallery/galleryitems"
	galRGP    = rgP + "/providers/Microsoft.Gallery/galleryitems"
)

func (s *Server) registerGallery() {
	gv := GalleryAPIVersions
	op := func(r *route) { r.operator = true }
	get, post, del := http.MethodGet, http.MethodPost, http.MethodDelete
	op(s.handle(get, galAdminP, gv, s.galAdminList))
	op(s.handle(post, galAdminP, gv, s.galAdminAdd))
	op(s.handle(get, galAdminP+"/{item}", gv, s.galAdminGet))
	op(s.handle(del, galAdminP+"/{item}", gv, s.galAdminDelete))
	s.handle(get, galP, gv, s.galList)
	s.handle(get, galP+"/{item}", gv, s.galGet)
	s.handle(post, galRGP+"/{item}/deploy", gv, s.galDeploy)
}

func renderItem(sub, typ string, it *marketplace.Item, withTemplate bool) map[string]any {
	prov := "Microsoft.Gallery"
	if typ == "admin" {
		prov = "Microsoft.Gallery.Admin"
	}
	icons := map[string]string{}
	for k, p := range it.Icons {
		icons[k] = strings.ReplaceAll(p, `\`, "/")
	}
	params := map[string]any{}
	for n, d := range it.Parameters {
		params[n] = d
	}
	props := map[string]any{
		"identity": it.Name, "publisher": it.Publisher, "publisherDisplayName": it.PublisherDisplayName,
		"itemName": it.Offer, "itemDisplayName": it.DisplayName, "version": it.Version,
		"summary": it.Summary, "longSummary": it.Summary, "description": it.Description,
		"itemType": "GalleryItem", "categoryIds": it.CategoryIDs, "iconFileUris": icons,
		"createdTime": it.Created, "changedTime": it.Created,
		"artifacts":  []map[string]any{{"name": "DefaultTemplate", "type": "template"}},
		"parameters": params, "sha256": it.SHA256, "sizeBytes": it.SizeBytes,
	}
	if withTemplate {
		props["definitionTemplates"] = map[string]any{"defaultDeploymentTemplateId": "DefaultTemplate"}
		props["template"] = it.Template
	}
	return map[string]any{
		"id":   "/subscriptions/" + sub + "/providers/" + prov + "/galleryItems/" + it.Name,
		"name": it.Name, "type": prov + "/galleryItems", "properties": props,
	}
}

func (s *Server) listItems(w http.ResponseWriter, r *http.Request, rc *reqCtx, typ string) error {
	mp, err := s.marketplace()
	if err != nil {
		return err
	}
	its, err := mp.Items(r.Context())
	if err != nil {
		return err
	}
	sort.Slice(its, func(i, j int) bool { return its[i].Name < its[j].Name })
	out := make([]map[string]any, 0, len(its))
	for _, it := range its {
		out = append(out, renderItem(rc.v("sub"), typ, it, false))
	}
	writeJSON(w, http.StatusOK, map[string]any{"value": out})
	return nil
}

func (s *Server) getItem(w http.ResponseWriter, r *http.Request, rc *reqCtx, typ string) error {
	mp, err := s.marketplace()
	if err != nil {
		return err
	}
	it, err := mp.Item(r.Context(), rc.v("item"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, renderItem(rc.v("sub"), typ, it, true))
	return nil
}

func (s *Server) galAdminList(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	return s.listItems(w, r, rc, "admin")
}
func (s *Server) galAdminGet(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	return s.getItem(w, r, rc, "admin")
}
func (s *Server) galList(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	return s.listItems(w, r, rc, "tenant")
}
func (s *Server) galGet(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	return s.getItem(w, r, rc, "tenant")
}

func (s *Server) galAdminDelete(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	mp, err := s.marketplace()
	if err != nil {
		return err
	}
	ok, err := mp.DeleteItem(r.Context(), rc.v("item"))
	if err != nil {
		return err
	}
	if !ok {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// galAdminAdd adds an item from {"galleryItemUri": "https://...|/abs/path"}
// or from the azpkg sent as the body (Content-Type application/zip or
// application/octet-stream).
func (s *Server) galAdminAdd(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	mp, err := s.marketplace()
	if err != nil {
		return err
	}
	var pkg []byte
	ct := strings.ToLower(r.Header.Get("Content-Type"))
	if strings.HasPrefix(ct, "application/zip") || strings.HasPrefix(ct, "application/octet-stream") {
		pkg, err = io.ReadAll(http.MaxBytesReader(w, r.Body, marketplace.MaxPackageBytes))
		if err != nil {
			return errs.New(errs.TooLarge, "RequestEntityTooLarge", "The gallery item package is larger than %d bytes.", marketplace.MaxPackageBytes)
		}
	} else {
		body, err := readBody(r)
		if err != nil {
			return err
		}
		var in struct {
			GalleryItemURI string `json:"galleryItemUri"`
		}
		if body == nil {
			return errs.New(errs.Invalid, "InvalidRequestContent", "The request content is missing: send {\"galleryItemUri\": ...} or the .azpkg as application/zip.")
		}
		if err := decode(body, &in); err != nil {
			return err
		}
		if pkg, err = s.fetchPackage(r, in.GalleryItemURI); err != nil {
			return err
		}
	}
	it, err := mp.AddItem(r.Context(), pkg)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, renderItem(rc.v("sub"), "admin", it, false))
	return nil
}

func (s *Server) fetchPackage(r *http.Request, uri string) ([]byte, error) {
	bad := func(f string, a ...any) error { return errs.InvalidParameter("galleryItemUri", f, a...) }
	switch {
	case uri == "":
		return nil, bad("Required parameter 'galleryItemUri' is missing.")
	case strings.HasPrefix(uri, "https://") || strings.HasPrefix(uri, "http://"):
		ca := ""
		if reg, err := s.opts.Marketplace.Registration(r.Context()); err == nil {
			ca = reg.CAPEM
		}
		req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, uri, nil)
		if err != nil {
			return nil, bad("The galleryItemUri '%s' is not a URL.", uri)
		}
		resp, err := marketplace.HTTPClient(ca).Do(req)
		if err != nil {
			return nil, bad("The gallery item cannot be downloaded from '%s': %v.", uri, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, bad("The gallery item cannot be downloaded from '%s': %s.", uri, resp.Status)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, marketplace.MaxPackageBytes+1))
		if err != nil {
			return nil, bad("The gallery item cannot be downloaded from '%s': %v.", uri, err)
		}
		return b, nil
	default:
		p := strings.TrimPrefix(uri, "file://")
		if !filepath.IsAbs(p) {
			return nil, bad("The galleryItemUri '%s' is neither an http(s) URL nor an absolute path on the server.", uri)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, bad("The gallery item package '%s' cannot be read: %v.", uri, err)
		}
		return b, nil
	}
}

var depNameRE = regexp.MustCompile(`^[-\w._()]{1,64}$`)

// galDeploy runs the item's default template as a deployment named
// deploymentName in the resource group, as the caller.
func (s *Server) galDeploy(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	mp, err := s.marketplace()
	if err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var in struct {
		DeploymentName string         `json:"deploymentName"`
		Parameters     map[string]any `json:"parameters"`
	}
	if body != nil {
		if err := decode(body, &in); err != nil {
			return err
		}
	}
	it, err := mp.Item(r.Context(), rc.v("item"))
	if err != nil {
		return err
	}
	if in.DeploymentName == "" {
		in.DeploymentName = it.Offer
	}
	if !depNameRE.MatchString(in.DeploymentName) {
		return errs.InvalidParameter("deploymentName", "The deployment name '%s' is not valid.", in.DeploymentName)
	}
	params, err := marketplace.ValidateParameters(it.Parameters, in.Parameters)
	if err != nil {
		pe, _ := err.(*marketplace.ParamError)
		target := "parameters"
		if pe != nil {
			target = "parameters." + pe.Param
		}
		return errs.New(errs.Invalid, "InvalidGalleryItemParameters", "The parameters do not fit gallery item '%s': %v.", it.Name, err).WithTarget(target)
	}
	dep, err := json.Marshal(map[string]any{"properties": map[string]any{
		"mode": "Incremental", "template": it.Template, "parameters": params,
	}})
	if err != nil {
		return err
	}
	path := "/subscriptions/" + rc.v("sub") + "/resourceGroups/" + rc.v("rg") + "/providers/Microsoft.Resources/deployments/" + in.DeploymentName + "?api-version=2019-10-01"
	resp, err := s.Do(r.Context(), deploy.Identity{ClientID: rc.caller.ClientID}, http.MethodPut, path, dep)
	if err != nil {
		return err
	}
	for _, h := range []string{"Azure-AsyncOperation", "Location", "Retry-After"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, strings.Replace(v, "https://"+internalHost, "https://"+r.Host, 1))
		}
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(resp.Status)
	_, _ = w.Write(resp.Body)
	return nil
}
