package marketplace

import (
	"archive/zip"
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"path"
	"slices"
	"strings"
	"time"
)

// ErrInvalidPackage marks a gallery item package (azpkg) that cannot be
// read: not a zip, no Manifest.json, no default template, ...
var ErrInvalidPackage = errors.New("marketplace: invalid gallery item package")

// MaxPackageBytes bounds an azpkg (compressed) and what one of its files
// unpacks to.
const MaxPackageBytes = 16 << 20

// Item is a gallery item: the parsed package as the store keeps it.
type Item struct {
	Name                 string   `json:"name"` // Publisher.Offer.Version
	Publisher            string   `json:"publisher"`
	Offer                string   `json:"offer"` // the manifest's name
	Version              string   `json:"version"`
	DisplayName          string   `json:"displayName"`
	PublisherDisplayName string   `json:"publisherDisplayName"`
	Summary              string   `json:"summary"`
	Description          string   `json:"description"`
	CategoryIDs          []string `json:"categoryIds,omitempty"`
	// Template is the default deployment template.
	Template   json.RawMessage     `json:"template"`
	Parameters map[string]ParamDef `json:"parameters"`
	UIDef      json.RawMessage     `json:"uiDefinition,omitempty"`
	Icons      map[string]string   `json:"icons,omitempty"` // size -> path in the package
	SHA256     string              `json:"sha256"`
	SizeBytes  int64               `json:"sizeBytes"`
	Created    time.Time           `json:"created"`
}

// ParamDef is a template parameter's definition.
type ParamDef struct {
	Type          string          `json:"type"`
	DefaultValue  json.RawMessage `json:"defaultValue,omitempty"`
	AllowedValues []any           `json:"allowedValues,omitempty"`
	MinValue      *float64        `json:"minValue,omitempty"`
	MaxValue      *float64        `json:"maxValue,omitempty"`
	MinLength     *int            `json:"minLength,omitempty"`
	MaxLength     *int            `json:"maxLength,omitempty"`
}

type manifest struct {
	Name                 string   `json:"name"`
	Publisher            string   `json:"publisher"`
	Version              string   `json:"version"`
	DisplayName          string   `json:"displayName"`
	PublisherDisplayName string   `json:"publisherDisplayName"`
	Summary              string   `json:"summary"`
	Description          string   `json:"description"`
	CategoryIDs          []string `json:"categoryIds"`
	UIDefinition         struct {
		Path string `json:"path"`
	} `json:"uiDefinition"`
	Artifacts []struct {
		Name      string `json:"name"`
		Type      string `json:"type"`
		Path      string `json:"path"`
		IsDefault bool   `json:"isDefault"`
	} `json:"artifacts"`
	Icons map[string]string `json:"icons"`
}

func pkgPath(p string) string { return path.Clean(strings.ReplaceAll(p, `\`, "/")) }

// ParsePackage reads an azpkg: a zip with Manifest.json, the UI definition,
// DeploymentTemplates/, strings/resources.resjson and Icons/.
func ParsePackage(b []byte) (*Item, error) {
	if len(b) > MaxPackageBytes {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrInvalidPackage, MaxPackageBytes)
	}
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidPackage, err)
	}
	files := map[string]*zip.File{}
	for _, f := range zr.File {
		files[strings.ToLower(pkgPath(f.Name))] = f
	}
	read := func(name string) ([]byte, error) {
		f, ok := files[strings.ToLower(pkgPath(name))]
		if !ok {
			return nil, fmt.Errorf("%w: %s is missing", ErrInvalidPackage, name)
		}
		if f.UncompressedSize64 > MaxPackageBytes {
			return nil, fmt.Errorf("%w: %s is too large", ErrInvalidPackage, name)
		}
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalidPackage, name, err)
		}
		defer rc.Close()
		data, err := io.ReadAll(io.LimitReader(rc, MaxPackageBytes+1))
		if err != nil || len(data) > MaxPackageBytes {
			return nil, fmt.Errorf("%w: %s: cannot be read", ErrInvalidPackage, name)
		}
		return data, nil
	}
	mb, err := read("Manifest.json")
	if err != nil {
		return nil, err
	}
	var m manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return nil, fmt.Errorf("%w: Manifest.json: %v", ErrInvalidPackage, err)
	}
	if !nameRE.MatchString(m.Name) || !nameRE.MatchString(m.Publisher) || !verRE.MatchString(m.Version) {
		return nil, fmt.Errorf("%w: Manifest.json needs a name, a publisher and a version Major.Minor.Build", ErrInvalidPackage)
	}
	strs := map[string]string{}
	if sb, err := read("strings/resources.resjson"); err == nil {
		if err := json.Unmarshal(sb, &strs); err != nil {
			return nil, fmt.Errorf("%w: strings/resources.resjson: %v", ErrInvalidPackage, err)
		}
	}
	res := func(s string) string {
		if k, ok := strings.CutPrefix(s, "ms-resource:"); ok {
			return strs[k]
		}
		return s
	}
	it := &Item{
		Name: ItemName(m.Publisher, m.Name, m.Version), Publisher: m.Publisher, Offer: m.Name, Version: m.Version,
		DisplayName: res(m.DisplayName), PublisherDisplayName: res(m.PublisherDisplayName),
		Summary: res(m.Summary), Description: res(m.Description), CategoryIDs: m.CategoryIDs, Icons: m.Icons,
	}
	var tmplPath string
	for _, a := range m.Artifacts {
		if strings.EqualFold(a.Type, "Template") && (a.IsDefault || tmplPath == "") {
			tmplPath = a.Path
		}
	}
	if tmplPath == "" {
		return nil, fmt.Errorf("%w: Manifest.json names no deployment template", ErrInvalidPackage)
	}
	tb, err := read(tmplPath)
	if err != nil {
		return nil, err
	}
	var tmpl struct {
		Parameters map[string]ParamDef `json:"parameters"`
		Resources  json.RawMessage     `json:"resources"`
	}
	if err := json.Unmarshal(tb, &tmpl); err != nil || tmpl.Resources == nil {
		return nil, fmt.Errorf("%w: %s is not a deployment template", ErrInvalidPackage, tmplPath)
	}
	it.Template, it.Parameters = tb, tmpl.Parameters
	if m.UIDefinition.Path != "" {
		if ub, err := read(m.UIDefinition.Path); err == nil && json.Valid(ub) {
			it.UIDef = ub
		}
	}
	for k, p := range m.Icons {
		if _, ok := files[strings.ToLower(pkgPath(p))]; !ok {
			return nil, fmt.Errorf("%w: icon %s (%s) is missing", ErrInvalidPackage, k, p)
		}
	}
	return it, nil
}

// BuildPackage zips the files of fsys into an azpkg, deterministically
// (sorted names, a fixed time).
func BuildPackage(fsys fs.FS) ([]byte, error) {
	var names []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, p)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, err
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: n, Method: zip.Deflate, Modified: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(b); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

//go:embed all:defaultitem
var defaultItemFS embed.FS

// DefaultItemPackage is the scale-set gallery item vmssd offers by default
// (vmssd.VMScaleSet.1.0.0): its template takes osImagePublisher,
// osImageOffer and osImageSku and deploys version latest.
func DefaultItemPackage() []byte {
	sub, err := fs.Sub(defaultItemFS, "defaultitem")
	if err != nil {
		panic(err)
	}
	b, err := BuildPackage(sub)
	if err != nil {
		panic(err)
	}
	return b
}

// ParamError is a parameter that does not fit its definition.
type ParamError struct {
	Param, Msg string
}

func (e *ParamError) Error() string { return fmt.Sprintf("parameter '%s': %s", e.Param, e.Msg) }

// ValidateParameters checks deployment parameters (ARM's {"name":{"value":v}}
// form, or bare values) against the item's definitions: no unknown names,
// every parameter without a default given, types, allowed values and
// bounds. It returns the parameters in ARM form.
func ValidateParameters(defs map[string]ParamDef, given map[string]any) (map[string]any, error) {
	out := map[string]any{}
	byLower := map[string]string{}
	for k := range defs {
		byLower[strings.ToLower(k)] = k
	}
	for k, raw := range given {
		name, ok := byLower[strings.ToLower(k)]
		if !ok {
			known := make([]string, 0, len(defs))
			for n := range defs {
				known = append(known, n)
			}
			slices.Sort(known)
			return nil, &ParamError{k, "the item's template has no such parameter; it takes " + strings.Join(known, ", ")}
		}
		v := raw
		if m, ok := raw.(map[string]any); ok {
			if inner, ok := m["value"]; ok && len(m) == 1 {
				v = inner
			}
		}
		if err := checkParam(name, defs[name], v); err != nil {
			return nil, err
		}
		out[name] = map[string]any{"value": v}
	}
	for name, d := range defs {
		if _, ok := out[name]; !ok && d.DefaultValue == nil {
			return nil, &ParamError{name, "is required (it has no default value)"}
		}
	}
	return out, nil
}

func checkParam(name string, d ParamDef, v any) error {
	bad := func(f string, a ...any) error { return &ParamError{name, fmt.Sprintf(f, a...)} }
	t := strings.ToLower(d.Type)
	switch t {
	case "string", "securestring":
		s, ok := v.(string)
		if !ok {
			return bad("must be a string")
		}
		if d.MinLength != nil && len(s) < *d.MinLength {
			return bad("must be at least %d characters long", *d.MinLength)
		}
		if d.MaxLength != nil && len(s) > *d.MaxLength {
			return bad("must be at most %d characters long", *d.MaxLength)
		}
	case "int":
		f, ok := v.(float64)
		if !ok {
			if i, isInt := v.(int); isInt {
				f, ok = float64(i), true
			}
		}
		if !ok || f != math.Trunc(f) {
			return bad("must be an integer")
		}
		if d.MinValue != nil && f < *d.MinValue {
			return bad("must be at least %v", *d.MinValue)
		}
		if d.MaxValue != nil && f > *d.MaxValue {
			return bad("must be at most %v", *d.MaxValue)
		}
	case "bool":
		if _, ok := v.(bool); !ok {
			return bad("must be true or false")
		}
	case "object", "secureobject":
		if _, ok := v.(map[string]any); !ok {
			return bad("must be an object")
		}
	case "array":
		if _, ok := v.([]any); !ok {
			return bad("must be an array")
		}
	}
	if len(d.AllowedValues) > 0 {
		for _, a := range d.AllowedValues {
			if fmt.Sprint(a) == fmt.Sprint(v) {
				return nil
			}
		}
		return bad("'%v' is not one of the allowed values %v", v, d.AllowedValues)
	}
	return nil
}
