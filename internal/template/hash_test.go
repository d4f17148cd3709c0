package template

import (
	"crypto/sha1"
	"regexp"
	"strings"
	"testing"
	"unicode/utf16"

	"pgregory.net/rapid"
)

// Values computed by Azure. Each pair names where it was published.
var knownUniqueStrings = []struct {
	in   []string
	want string
	src  string
}{
	// Kingsland.ArmLinter (KingslandConsulting/Kingsland.ArmLinter,
	// src/Kingsland.ArmLinter/Functions/ArmFunctions_UniqueString.cs): outputs of
	// a template deployed with New-AzResourceGroupDeployment.
	{[]string{"aaa"}, "zavj67f3en4hc", "Kingsland.ArmLinter ArmFunctions_UniqueString.cs"},
	{[]string{"bbb"}, "w5eragfxe33cy", "Kingsland.ArmLinter ArmFunctions_UniqueString.cs"},
	{[]string{"zzz"}, "cryksdzzzawae", "Kingsland.ArmLinter ArmFunctions_UniqueString.cs"},
	{[]string{"xxx", "yyy", "zzz"}, "lghi7k5js7itq", "Kingsland.ArmLinter ArmFunctions_UniqueString.cs"},
	// Stack Overflow question 43295720 "Azure ARM uniqueString function mimic":
	// the answer calling Azure.Deployments.Expression's ExpressionBuiltInFunctions.
	{[]string{"tyeth"}, "zcztcwvu6iyg6", "stackoverflow.com/questions/43295720"},
	// JasonWhall/go-azure-uniquestring README: "hello" "world" → a7wkljktk6wne.
	{[]string{"hello", "world"}, "a7wkljktk6wne", "JasonWhall/go-azure-uniquestring README"},
	// SimonWahlin/AzExpression docs/en-US/New-AzUniqueString.md: the module
	// wraps Microsoft's Azure.Deployments.Expression.dll.
	{[]string{"test", "value"}, "bhxq2thzm5dym", "SimonWahlin/AzExpression New-AzUniqueString.md"},
}

var knownGUIDs = []struct {
	in   []string
	want string
	src  string
}{
	// SimonWahlin/AzExpression docs/en-US/New-AzGuid.md: New-AzGuid 'test','value'
	// evaluated by Microsoft's Azure.Deployments.Expression.dll.
	{[]string{"test", "value"}, "95b33d6a-06a0-5961-9b94-a0f6c648352b", "SimonWahlin/AzExpression New-AzGuid.md"},
	// arm2tf Terraform provider acceptance test (resource_guid_test.go,
	// TestAccResourceGuid_Single_Value_Is_Correct): guid("test").
	{[]string{"test"}, "d6a5baf1-8b9b-542a-8525-2982f1f98a0c", "arm2tf provider resource_guid_test.go"},
	// A Pester test "matches the documented ARM guid UUID-v5 algorithm" and a
	// TypeScript suite's "official UUID-v5 guid vectors" (public code corpus):
	// guid('hello','world'), guid('hello'), guid('world','hello').
	{[]string{"hello", "world"}, "a5b868f8-11fe-567a-ace0-e77cc87f104e", "Pester/TypeScript ARM guid vectors"},
	{[]string{"hello"}, "520f8434-fe3a-5d99-888d-450a827486a1", "TypeScript ARM guid vectors"},
	{[]string{"world", "hello"}, "b1db13b3-4ca6-5782-bf9e-8495c3532f9d", "TypeScript ARM guid vectors"},
}

func TestUniqueStringKnownAzureValues(t *testing.T) {
	for _, tc := range knownUniqueStrings {
		if got := UniqueString(tc.in...); got != tc.want {
			t.Errorf("uniqueString(%q) = %q, Azure gives %q (source: %s)", tc.in, got, tc.want, tc.src)
		}
	}
}

func TestGUIDKnownAzureValues(t *testing.T) {
	for _, tc := range knownGUIDs {
		if got := GUID(tc.in...); got != tc.want {
			t.Errorf("guid(%q) = %q, Azure gives %q (source: %s)", tc.in, got, tc.want, tc.src)
		}
	}
}

// TestGUIDIsNotUTF16 documents why the name is hashed as UTF-8: the UTF-16LE
// construction misses Azure's value for guid('test','value').
func TestGUIDIsNotUTF16(t *testing.T) {
	h := sha1.New()
	h.Write(guidNamespace[:])
	for _, u := range utf16.Encode([]rune("test-value")) {
		h.Write([]byte{byte(u), byte(u >> 8)})
	}
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	if formatUUID(u) == knownGUIDs[0].want {
		t.Fatal("the UTF-16LE construction unexpectedly matches Azure")
	}
}

// The same known values through the expression evaluator.
func TestHashFunctionsInExpressions(t *testing.T) {
	ctx := t.Context()
	for _, tc := range []struct{ expr, want string }{
		{"[uniqueString('aaa')]", "zavj67f3en4hc"},
		{"[uniqueString('xxx', 'yyy', 'zzz')]", "lghi7k5js7itq"},
		{"[guid('test', 'value')]", "95b33d6a-06a0-5961-9b94-a0f6c648352b"},
		{"[guid('hello', 'world')]", "a5b868f8-11fe-567a-ace0-e77cc87f104e"},
	} {
		got, err := EvaluateString(ctx, testEnv(), tc.expr)
		if err != nil || got != tc.want {
			t.Errorf("%s = %v, %v; want %s", tc.expr, got, err, tc.want)
		}
	}
}

var (
	uniqueRE = regexp.MustCompile(`^[a-z2-7]{12}[a-z2-7]$`)
	guidRE   = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
)

func TestUniqueStringProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		parts := rapid.SliceOfN(rapid.String(), 1, 5).Draw(t, "parts")
		got := UniqueString(parts...)
		if !uniqueRE.MatchString(got) {
			t.Fatalf("uniqueString(%q) = %q: not 13 base32 characters", parts, got)
		}
		// 13 characters carry 65 bits: the last one holds the hash's low 4
		// bits shifted left once, so it is an even position of the alphabet.
		if !strings.ContainsRune("acegikmoqsuwy246", rune(got[12])) {
			t.Fatalf("uniqueString(%q) = %q: last character out of range", parts, got)
		}
		if again := UniqueString(parts...); again != got {
			t.Fatalf("not deterministic: %q then %q", got, again)
		}
		// Arguments are joined with '-': the split does not matter.
		if joined := UniqueString(strings.Join(parts, "-")); joined != got {
			t.Fatalf("uniqueString(%q) = %q but of the joined string %q", parts, got, joined)
		}
	})
}

func TestUniqueStringDistinguishesInputs(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a := rapid.String().Draw(t, "a")
		b := rapid.String().Filter(func(s string) bool { return s != a }).Draw(t, "b")
		if UniqueString(a) == UniqueString(b) {
			t.Fatalf("collision between %q and %q", a, b)
		}
	})
}

func TestGUIDProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		parts := rapid.SliceOfN(rapid.String(), 1, 5).Draw(t, "parts")
		got := GUID(parts...)
		if !guidRE.MatchString(got) {
			t.Fatalf("guid(%q) = %q: not a version 5, RFC 4122 variant UUID", parts, got)
		}
		if again := GUID(parts...); again != got {
			t.Fatalf("not deterministic")
		}
		if joined := GUID(strings.Join(parts, "-")); joined != got {
			t.Fatalf("guid(%q) = %q but of the joined string %q", parts, got, joined)
		}
		if len(parts) > 1 && parts[0] != parts[1] {
			swapped := append([]string{parts[1], parts[0]}, parts[2:]...)
			if GUID(swapped...) == got && strings.Join(swapped, "-") != strings.Join(parts, "-") {
				t.Fatalf("argument order must matter")
			}
		}
	})
}

// The hash must handle every tail length (0 to 7 trailing bytes).
func TestUniqueStringTailLengths(t *testing.T) {
	seen := map[string]string{}
	for n := 0; n <= 17; n++ {
		in := strings.Repeat("x", n)
		got := UniqueString(in)
		if !uniqueRE.MatchString(got) {
			t.Fatalf("length %d: %q", n, got)
		}
		if prev, dup := seen[got]; dup {
			t.Fatalf("lengths collide: %q and %q", prev, in)
		}
		seen[got] = in
	}
	// The empty string hashes to zero: thirteen 'a'.
	if got := UniqueString(""); got != "aaaaaaaaaaaaa" {
		t.Fatalf("uniqueString('') = %q", got)
	}
}
