package apiserver

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/vmssd/vmssd/api/arm"
	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
)

// Storage accounts (Microsoft.Storage/storageAccounts), as Azure Stack
// scale-set templates use them: the account is a record with its
// primaryEndpoints, so that a template's storage account deploys and a
// scale set's osDisk.vhdContainers, built from its blob endpoint, are
// accepted. vmssd has no blob service: OS disks stay with the host that
// runs the instance (docs/architecture.md), and the endpoints do not
// resolve. listKeys answers keys generated at creation.

// StorageAPIVersions are the Microsoft.Storage api-versions served (the
// hybrid profiles' 2016-01-01 and 2017-10-01, and later public ones).
var StorageAPIVersions = set(
	"2015-06-15", "2016-01-01", "2016-12-01", "2017-06-01", "2017-10-01", "2018-02-01", "2018-07-01",
	"2019-04-01", "2019-06-01", "2021-01-01", "2021-04-01", "2021-09-01", "2022-09-01", "2023-01-01",
	"2023-05-01", "2024-01-01", "2025-01-01",
)

const storageTypeName = "Microsoft.Storage/storageAccounts"

// storagePrefix is where storage account records live.
const storagePrefix = "/storage/"

func storageKey(sub, rg, name string) string {
	return storagePrefix + strings.ToLower(sub+"/"+rg+"/"+name)
}

func storageListPrefix(sub, rg string) string {
	if rg == "" {
		return storagePrefix + strings.ToLower(sub) + "/"
	}
	return storagePrefix + strings.ToLower(sub+"/"+rg) + "/"
}

// storageAccount is the stored record.
type storageAccount struct {
	Sub      string            `json:"sub"`
	RG       string            `json:"rg"`
	Name     string            `json:"name"`
	Location string            `json:"location"`
	Kind     string            `json:"kind"`
	SKU      string            `json:"sku"`
	Tags     map[string]string `json:"tags,omitempty"`
	Keys     []string          `json:"keys"`
	Created  time.Time         `json:"created"`
}

var storageNameRE = regexp.MustCompile(`^[a-z0-9]{3,24}$`)

func (s *Server) registerStorage() {
	sa := rgP + "/providers/Microsoft.Storage/storageAccounts"
	s.handle(http.MethodGet, subP+"/providers/Microsoft.Storage/storageAccounts", StorageAPIVersions, s.listStorageAccounts)
	s.handle(http.MethodGet, sa, StorageAPIVersions, s.listStorageAccounts)
	s.handle(http.MethodPut, sa+"/{sa}", StorageAPIVersions, s.putStorageAccount)
	s.handle(http.MethodGet, sa+"/{sa}", StorageAPIVersions, s.getStorageAccount)
	s.handle(http.MethodDelete, sa+"/{sa}", StorageAPIVersions, s.deleteStorageAccount)
	s.handle(http.MethodPost, sa+"/{sa}/listKeys", StorageAPIVersions, s.listStorageKeys)
}

func (s *Server) renderStorage(a *storageAccount) map[string]any {
	ep := func(svc string) string { return "https://" + a.Name + "." + svc + ".vmssd.local/" }
	return map[string]any{
		"id":       "/subscriptions/" + a.Sub + "/resourceGroups/" + a.RG + "/providers/" + storageTypeName + "/" + a.Name,
		"name":     a.Name,
		"type":     storageTypeName,
		"location": a.Location,
		"kind":     a.Kind,
		"sku":      map[string]any{"name": a.SKU, "tier": skuTier(a.SKU)},
		"tags":     a.Tags,
		"properties": map[string]any{
			"provisioningState": "Succeeded",
			"creationTime":      a.Created.UTC().Format(time.RFC3339Nano),
			"primaryLocation":   a.Location,
			"statusOfPrimary":   "available",
			// The account type as the 2015/2016 api-versions name it.
			"accountType": a.SKU,
			"primaryEndpoints": map[string]any{
				"blob": ep("blob"), "queue": ep("queue"), "table": ep("table"), "file": ep("file"),
			},
		},
	}
}

func skuTier(sku string) string {
	if strings.HasPrefix(strings.ToLower(sku), "premium") {
		return "Premium"
	}
	return "Standard"
}

func (s *Server) putStorageAccount(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	ctx := r.Context()
	sub, name := rc.v("sub"), rc.v("sa")
	rg, _, err := s.loadRG(r, sub, rc.v("rg"))
	if err != nil {
		return err
	}
	if !storageNameRE.MatchString(name) {
		return errs.New(errs.Invalid, "AccountNameInvalid", "'%s' is not a valid storage account name. Storage account name must be between 3 and 24 characters in length and use numbers and lower-case letters only.", name).WithTarget("accountName")
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var req struct {
		Location string            `json:"location"`
		Kind     string            `json:"kind"`
		Tags     map[string]string `json:"tags"`
		SKU      *struct {
			Name string `json:"name"`
		} `json:"sku"`
		Properties *struct {
			AccountType string `json:"accountType"`
		} `json:"properties"`
	}
	if body != nil {
		if err := decode(body, &req); err != nil {
			return err
		}
	}
	sku := ""
	if req.SKU != nil {
		sku = req.SKU.Name
	}
	if sku == "" && req.Properties != nil {
		sku = req.Properties.AccountType // 2015-06-15 / 2016-01-01 hybrid shape
	}
	if sku == "" {
		sku = "Standard_LRS"
	}
	switch strings.ToLower(sku) {
	case "standard_lrs", "standard_grs", "standard_ragrs", "standard_zrs", "premium_lrs":
	default:
		return errs.New(errs.Invalid, "InvalidSkuName", "The storage account SKU '%s' is not supported: Standard_LRS, Standard_GRS, Standard_RAGRS, Standard_ZRS or Premium_LRS.", sku).WithTarget("sku.name")
	}
	if req.Location != "" && !strings.EqualFold(req.Location, s.opts.Location) {
		return errs.New(errs.Invalid, "LocationNotAvailableForResourceType", "The provided location '%s' is not available for resource type '%s'. List of available regions for the resource type is '%s'.", req.Location, storageTypeName, s.opts.Location)
	}
	key := storageKey(sub, rg.Name, name)
	status := http.StatusOK
	acct, err := state.Update[storageAccount](ctx, s.opts.Store, key, func(a *storageAccount) error {
		a.SKU, a.Tags = sku, req.Tags
		if req.Kind != "" {
			a.Kind = req.Kind
		}
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		status = http.StatusCreated
		acct = &storageAccount{Sub: sub, RG: rg.Name, Name: name, Location: s.opts.Location, Kind: req.Kind, SKU: sku, Tags: req.Tags,
			Keys: []string{newStorageKey(), newStorageKey()}, Created: s.opts.Now()}
		if acct.Kind == "" {
			acct.Kind = "Storage"
		}
		_, err = s.opts.Store.Txn(ctx, []store.Cond{store.ModRevisionIs(key, 0)}, state.PutOp(key, acct))
		if errors.Is(err, store.ErrConflict) {
			return errs.New(errs.Conflict, "Conflict", "The storage account changed concurrently; retry the request.")
		}
	}
	if err != nil {
		return err
	}
	writeJSON(w, status, s.renderStorage(acct))
	return nil
}

func newStorageKey() string {
	b := make([]byte, 64)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

func (s *Server) loadStorage(r *http.Request, rc *reqCtx) (*storageAccount, error) {
	if _, _, err := s.loadRG(r, rc.v("sub"), rc.v("rg")); err != nil {
		return nil, err
	}
	a, _, err := state.Get[storageAccount](r.Context(), s.opts.Store, storageKey(rc.v("sub"), rc.v("rg"), rc.v("sa")))
	if errors.Is(err, store.ErrNotFound) {
		return nil, errs.New(errs.NotFound, "ResourceNotFound", "The Resource '%s/%s' under resource group '%s' was not found.", storageTypeName, rc.v("sa"), rc.v("rg"))
	}
	return a, err
}

func (s *Server) getStorageAccount(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	a, err := s.loadStorage(r, rc)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.renderStorage(a))
	return nil
}

func (s *Server) deleteStorageAccount(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	if _, _, err := s.loadRG(r, rc.v("sub"), rc.v("rg")); err != nil {
		return err
	}
	key := storageKey(rc.v("sub"), rc.v("rg"), rc.v("sa"))
	if _, err := s.opts.Store.Get(r.Context(), key); errors.Is(err, store.ErrNotFound) {
		w.WriteHeader(http.StatusNoContent)
		return nil
	} else if err != nil {
		return err
	}
	if _, err := s.opts.Store.Txn(r.Context(), nil, store.Delete(key)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) listStorageAccounts(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	if rg := rc.v("rg"); rg != "" {
		if _, _, err := s.loadRG(r, rc.v("sub"), rg); err != nil {
			return err
		}
	}
	accts, _, err := state.List[storageAccount](r.Context(), s.opts.Store, storageListPrefix(rc.v("sub"), rc.v("rg")))
	if err != nil {
		return err
	}
	page := arm.Page[map[string]any]{Value: []map[string]any{}}
	for _, a := range accts {
		page.Value = append(page.Value, s.renderStorage(a))
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

func (s *Server) listStorageKeys(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	a, err := s.loadStorage(r, rc)
	if err != nil {
		return err
	}
	keys := []map[string]any{}
	for i, k := range a.Keys {
		keys = append(keys, map[string]any{"keyName": "key" + string(rune('1'+i)), "value": k, "permissions": "FULL"})
	}
	b, _ := json.Marshal(map[string]any{"keys": keys})
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, _ = w.Write(b)
	return nil
}
