package dashboard

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

const (
	mpPath     = "/providers/vmssd.Admin/marketplace"
	galleryAPI = "2024-01-01"
)

// MarketplaceView is the operator's marketplace page: the upstream
// registration, its products (download), downloads started here with their
// progress, and the local gallery items (remove).
type MarketplaceView struct {
	Registered   string
	RegError     string
	Products     []mpProduct
	ProductsErr  string
	Downloads    []mpDownload
	Items        [][]string // identity, publisher, version, display name
	ItemsErr     string
	Subscription string
}

type mpProduct struct {
	Kind, Name, DisplayName, Version, OSType string
	SizeBytes                                int64
}

type mpDownload struct {
	ID      string
	Status  string
	Percent float64
	Error   string
}

func (d *Dashboard) marketplacePage(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	c := d.client(s)
	v := MarketplaceView{}
	var reg map[string]any
	if _, err := c.call(ctx, http.MethodGet, withAPI(mpPath+"/registration", adminAPI), nil, nil, &reg); err != nil {
		v.RegError = err.Error()
	} else {
		props, _ := reg["properties"].(map[string]any)
		v.Registered = cmp.Or(str(props, "url"), str(reg, "url"))
	}
	var prods struct{ Value []mpProduct }
	if _, err := c.call(ctx, http.MethodGet, withAPI(mpPath+"/products", adminAPI), nil, nil, &prods); err != nil {
		v.ProductsErr = err.Error()
	} else {
		v.Products = prods.Value
	}
	d.mu.RLock()
	ids := append([]string(nil), d.downloads...)
	d.mu.RUnlock()
	for _, id := range ids {
		var st map[string]any
		dl := mpDownload{ID: id}
		if _, err := c.call(ctx, http.MethodGet, withAPI(mpPath+"/downloads/"+url.PathEscape(id), adminAPI), nil, nil, &st); err != nil {
			dl.Error = err.Error()
		} else {
			props, _ := st["properties"].(map[string]any)
			if props == nil {
				props = st
			}
			dl.Status = str(props, "status")
			if p, ok := props["percentComplete"].(float64); ok {
				dl.Percent = p
			}
			if e, ok := props["error"].(map[string]any); ok {
				dl.Error = str(e, "code") + ": " + str(e, "message")
			}
		}
		v.Downloads = append(v.Downloads, dl)
	}
	sub, err := firstSubscription(ctx, c)
	v.Subscription = sub
	if err == nil {
		var items struct{ Value []map[string]any }
		if _, err := c.call(ctx, http.MethodGet, withAPI(galleryPath(sub), galleryAPI), nil, nil, &items); err != nil {
			v.ItemsErr = err.Error()
		} else {
			for _, it := range items.Value {
				p, _ := it["properties"].(map[string]any)
				v.Items = append(v.Items, []string{str(p, "identity"), str(p, "publisher"), str(p, "version"), str(p, "displayName")})
			}
		}
	} else {
		v.ItemsErr = err.Error()
	}
	d.page(w, r, http.StatusOK, "marketplace", s, pageData{Title: "Marketplace", Operator: true, Body: v})
}

func galleryPath(sub string) string {
	return "/subscriptions/" + url.PathEscape(sub) + "/providers/Microsoft.Gallery.Admin/galleryItems"
}

func firstSubscription(ctx context.Context, c client) (string, error) {
	var subs struct {
		Value []struct {
			SubscriptionID string `json:"subscriptionId"`
		} `json:"value"`
	}
	if _, err := c.call(ctx, http.MethodGet, withAPI("/subscriptions", resAPI), nil, nil, &subs); err != nil {
		return "", err
	}
	if len(subs.Value) == 0 {
		return "", fmt.Errorf("no subscription")
	}
	return subs.Value[0].SubscriptionID, nil
}

// marketplaceAction downloads a product or removes a local item.
func (d *Dashboard) marketplaceAction(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	c := d.client(s)
	op := r.PostFormValue("op")
	e := Entry{Time: d.opts.Now(), Who: s.identity.ClientID, Target: "marketplace"}
	var err error
	switch op {
	case "download":
		name := r.PostFormValue("product")
		e.Action = "marketplace download " + name
		var out map[string]any
		_, err = c.call(ctx, http.MethodPost, withAPI(mpPath+"/downloads", adminAPI), nil, map[string]any{"products": []string{name}}, &out)
		if err == nil {
			id := str(out, "id")
			if p, ok := out["properties"].(map[string]any); ok && id == "" {
				id = str(p, "id")
			}
			if i := strings.LastIndex(id, "/"); i >= 0 {
				id = id[i+1:]
			}
			if id != "" {
				d.mu.Lock()
				d.downloads = append(d.downloads, id)
				if len(d.downloads) > 20 {
					d.downloads = d.downloads[len(d.downloads)-20:]
				}
				d.mu.Unlock()
			}
		}
	case "remove":
		item := r.PostFormValue("item")
		e.Action = "marketplace remove " + item
		var sub string
		if sub, err = firstSubscription(ctx, c); err == nil {
			_, err = c.call(ctx, http.MethodDelete, withAPI(galleryPath(sub)+"/"+url.PathEscape(item), galleryAPI), nil, nil, nil)
		}
	default:
		e.Action = "marketplace " + op
		err = &armError{Status: 400, Code: "InvalidParameter", Message: "unknown marketplace action"}
	}
	msg := e.Action + ": accepted"
	if err != nil {
		e.Code, e.Message = "Error", err.Error()
		if ae, ok := err.(*armError); ok {
			e.Code, e.Message = ae.Code, ae.Message
		}
		msg = e.Action + " failed: " + e.Code + ": " + e.Message
	}
	e.OK, e.Status = err == nil, msg
	id := d.activity.add(e)
	http.Redirect(w, r, "/ui/admin/marketplace?status="+strconv.FormatInt(id, 10), http.StatusSeeOther)
}
