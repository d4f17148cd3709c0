package apiserver

import (
	"context"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/state"
)

// ARM's metadata limits (Azure Resource Manager, "Tag resources":
// limitations): they bound what one resource record can hold.
const (
	maxTags        = 50
	maxTagName     = 512
	maxTagValue    = 256
	tagNameInvalid = `<>%&\?/`
)

// clip shortens s for an error message.
func clip(s string) string {
	if utf8.RuneCountInString(s) <= 40 {
		return s
	}
	return string([]rune(s)[:40]) + "..."
}

// validateTags applies ARM's tag rules: at most 50 tags, names of 1 to 512
// characters without < > % & \ ? / or control characters, unique regardless
// of case, values of at most 256 characters.
func validateTags(tags map[string]string) error {
	if len(tags) > maxTags {
		return errs.New(errs.Invalid, "InvalidTag", "The number of tags %d exceeds the maximum of %d tags allowed on a resource.", len(tags), maxTags).WithTarget("tags")
	}
	names := make([]string, 0, len(tags))
	for k := range tags {
		names = append(names, k)
	}
	sort.Strings(names)
	seen := make(map[string]bool, len(tags))
	for _, k := range names {
		v := tags[k]
		switch {
		case strings.TrimSpace(k) == "":
			return errs.New(errs.Invalid, "InvalidTag", "A tag name must not be empty.").WithTarget("tags")
		case utf8.RuneCountInString(k) > maxTagName:
			return errs.New(errs.Invalid, "InvalidTag", "The tag name '%s' exceeds the maximum length of %d characters.", clip(k), maxTagName).WithTarget("tags")
		case strings.ContainsAny(k, tagNameInvalid) || strings.IndexFunc(k, unicode.IsControl) >= 0 || !utf8.ValidString(k):
			return errs.New(errs.Invalid, "InvalidTagNameCharacters", "The tag names '%s' have reserved characters '<,>,%%,&,\\,?,/' or control characters.", clip(k)).WithTarget("tags")
		case utf8.RuneCountInString(v) > maxTagValue:
			return errs.New(errs.Invalid, "InvalidTag", "The value of tag '%s' exceeds the maximum length of %d characters.", clip(k), maxTagValue).WithTarget("tags")
		case seen[strings.ToLower(k)]:
			return errs.New(errs.Invalid, "InvalidTag", "The tag name '%s' appears more than once; tag names are case-insensitive.", clip(k)).WithTarget("tags")
		}
		seen[strings.ToLower(k)] = true
	}
	return nil
}

// countKeys counts the keys under prefix, reading at most limit of them.
func (s *Server) countKeys(ctx context.Context, prefix string, limit int) (int, error) {
	kvs, _, err := state.ListPage(ctx, s.opts.Store, prefix, "", limit)
	return len(kvs), err
}
