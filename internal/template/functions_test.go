package template

import (
	"regexp"
	"strings"
	"testing"
)

// js parses expected values written as JSON.
func js(s string) any {
	v, err := decodeJSON([]byte(s))
	if err != nil {
		panic(err)
	}
	return v
}

type fnCase struct {
	expr string
	want any    // compared with deepEqual
	err  string // substring of the error, when the call must fail
}

// functionCases covers every built-in function; TestEveryFunctionHasCases
// fails when one is missing. Expected values follow the examples of
// Microsoft's "ARM template functions" reference where it gives them.
var functionCases = []fnCase{
	// ---- array ----
	{expr: "[array('efgh')]", want: js(`["efgh"]`)},
	{expr: "[array(createArray(1, 2))]", want: js(`[1,2]`)},
	{expr: "[array(createObject('a', 1))]", want: js(`[{"a":1}]`)},
	{expr: "[concat(createArray('1-1','1-2'), createArray('2-1'))]", want: js(`["1-1","1-2","2-1"]`)},
	{expr: "[concat('prefix', '-', 5, true())]", want: "prefix-5True"},
	{expr: "[concat(createArray(1), 'x')]", err: "all arguments must be arrays"},
	{expr: "[contains('OneTwoThree', 'e')]", want: true},
	{expr: "[contains('OneTwoThree', 'z')]", want: false},
	{expr: "[contains(createObject('one','a'), 'ONE')]", want: true},
	{expr: "[contains(createArray('one','two'), 'three')]", want: false},
	{expr: "[createArray()]", want: js(`[]`)},
	{expr: "[createArray('a', 1, createObject('b', 2))]", want: js(`["a",1,{"b":2}]`)},
	{expr: "[empty('')]", want: true},
	{expr: "[empty(createArray())]", want: true},
	{expr: "[empty(createObject('a', 1))]", want: false},
	{expr: "[empty(null())]", want: true},
	{expr: "[first(createArray('one','two'))]", want: "one"},
	{expr: "[first('One Two')]", want: "O"},
	{expr: "[first(createArray())]", want: nil},
	{expr: "[last(createArray('one','two'))]", want: "two"},
	{expr: "[last('One Two Three')]", want: "e"},
	{expr: "[flatten(createArray(createArray('one','two'), createArray('three'), createArray('four','five')))]", want: js(`["one","two","three","four","five"]`)},
	{expr: "[flatten(createArray(1))]", err: "every element must be an Array"},
	{expr: "[indexOf(createArray('a','b','c'), 'b')]", want: int64(1)},
	{expr: "[indexOf(createArray(1,2,3), 4)]", want: int64(-1)},
	{expr: "[indexOf('abcdef', 'CD')]", want: int64(2)},
	{expr: "[indexOf('abcdef', '')]", want: int64(0)},
	{expr: "[lastIndexOf(createArray('a','b','a'), 'a')]", want: int64(2)},
	{expr: "[lastIndexOf('test', 't')]", want: int64(3)},
	{expr: "[lastIndexOf('abcdef', '')]", want: int64(5)},
	{expr: "[intersection(createArray('one','two','three'), createArray('two','three'))]", want: js(`["two","three"]`)},
	{expr: "[intersection(createObject('one','a','two','b'), createObject('one','a','two','z'))]", want: js(`{"one":"a"}`)},
	{expr: "[union(createArray('one','two'), createArray('two','three'))]", want: js(`["one","two","three"]`)},
	{expr: "[union(createObject('a', 1, 'n', createObject('x', 1)), createObject('b', 2, 'n', createObject('y', 2)))]", want: js(`{"a":1,"b":2,"n":{"x":1,"y":2}}`)},
	{expr: "[length(createArray('a','b','c'))]", want: int64(3)},
	{expr: "[length('One Two Three')]", want: int64(13)},
	{expr: "[length(createObject('a',1,'b',2))]", want: int64(2)},
	{expr: "[length(1)]", err: "must be a String, Array or Object"},
	{expr: "[max(createArray(0,3,2,5,4))]", want: int64(5)},
	{expr: "[max(0,3,2,5,4)]", want: int64(5)},
	{expr: "[min(createArray(0,3,2,5,4))]", want: int64(0)},
	{expr: "[min(3, -2)]", want: int64(-2)},
	{expr: "[max(createArray())]", err: "must not be empty"},
	{expr: "[range(1, 3)]", want: js(`[1,2,3]`)},
	{expr: "[range(0, 10001)]", err: "between 0 and 10000"},
	{expr: "[skip(createArray('one','two','three'), 2)]", want: js(`["three"]`)},
	{expr: "[skip('one two three', 4)]", want: "two three"},
	{expr: "[skip(createArray(1), 5)]", want: js(`[]`)},
	{expr: "[take(createArray('one','two','three'), 2)]", want: js(`["one","two"]`)},
	{expr: "[take('one two three', 2)]", want: "on"},
	{expr: "[take('abc', -1)]", want: ""},
	{expr: "[indexFromEnd(createArray('a', 'b', 'c'), 1)]", want: "c"},
	{expr: "[indexFromEnd(createArray('a', 'b', 'c'), 4)]", err: "between 1 and the length"},
	{expr: "[tryIndexFromEnd(createArray('a', 'b', 'c'), 3)]", want: "a"},
	{expr: "[tryIndexFromEnd(createArray('a'), 0)]", want: nil},
	{expr: "[tryGet(createObject('a', createObject('b', 1)), 'a', 'b')]", want: int64(1)},
	{expr: "[tryGet(createObject('a', 1), 'missing')]", want: nil},
	{expr: "[tryGet(createArray(1, 2), 5)]", want: nil},

	// ---- comparison ----
	{expr: "[coalesce(null(), null(), 'default')]", want: "default"},
	{expr: "[coalesce(null())]", want: nil},
	{expr: "[equals(1, 1)]", want: true},
	{expr: "[equals('a', 'A')]", want: false},
	{expr: "[equals(createArray('a','b'), createArray('a','b'))]", want: true},
	{expr: "[equals(createObject('a', 1), createObject('a', 2))]", want: false},
	{expr: "[greater(10, 5)]", want: true},
	{expr: "[greater('A', 'a')]", want: false},
	{expr: "[greaterOrEquals(5, 5)]", want: true},
	{expr: "[less(10, 5)]", want: false},
	{expr: "[less('A', 'a')]", want: true},
	{expr: "[lessOrEquals(5, 6)]", want: true},
	{expr: "[less(1, 'a')]", err: "both be numbers or both be strings"},

	// ---- date ----
	{expr: "[dateTimeAdd('2020-04-07 14:53:14Z', 'P3Y')]", want: "4/7/2023 2:53:14 PM"},
	{expr: "[dateTimeAdd('2020-04-07 14:53:14Z', '-PT9M')]", want: "4/7/2020 2:44:14 PM"},
	{expr: "[dateTimeAdd('2020-04-07 14:53:14Z', 'PT1H', 'u')]", want: "2020-04-07 15:53:14Z"},
	{expr: "[dateTimeAdd('2020-04-07T14:53:14Z', 'P1W', 'yyyy-MM-ddTHH:mm:ssZ')]", want: "2020-04-14T14:53:14Z"},
	{expr: "[dateTimeAdd('2020-04-07', 'nonsense')]", err: "not a valid ISO 8601 duration"},
	{expr: "[dateTimeFromEpoch(1683040573)]", want: "2023-05-02T15:16:13Z"},
	{expr: "[dateTimeToEpoch('2023-05-02T15:16:13Z')]", want: int64(1683040573)},
	{expr: "[dateTimeToEpoch(dateTimeAdd(dateTimeFromEpoch(1683040573), 'P1D', 'o'))]", want: int64(1683126973)},
	{expr: "[utcNow()]", err: "only be used in the default value of a parameter"},

	// ---- deployment ----
	{expr: "[deployment().name]", want: "dep1"},
	{expr: "[deployment().properties.mode]", want: "Incremental"},
	{expr: "[environment().name]", want: "vmssd"},
	{expr: "[environment().suffixes.storage]", want: "local.vmssd"},
	{expr: "[deployer().objectId]", want: "obj-1"},
	{expr: "[parameters('nope')]", err: "the template parameter 'nope' is not found"},
	{expr: "[variables('nope')]", err: "the template variable 'nope' is not found"},

	// ---- lambda ----
	{expr: "[filter(createArray(1, 2, 3, 4), lambda('x', greater(lambdaVariables('x'), 2)))]", want: js(`[3,4]`)},
	{expr: "[map(createArray('a', 'b'), lambda('x', toUpper(lambdaVariables('x'))))]", want: js(`["A","B"]`)},
	{expr: "[reduce(createArray(1, 2, 3), 10, lambda('cur', 'next', add(lambdaVariables('cur'), lambdaVariables('next'))))]", want: int64(16)},
	{expr: "[sort(createArray(3, 1, 2), lambda('a', 'b', less(lambdaVariables('a'), lambdaVariables('b'))))]", want: js(`[1,2,3]`)},
	{expr: "[toObject(createArray('a', 'b'), lambda('x', lambdaVariables('x')), lambda('x', length(lambdaVariables('x'))))]", want: js(`{"a":1,"b":1}`)},
	{expr: "[mapValues(createObject('a', 1, 'b', 2), lambda('v', mul(lambdaVariables('v'), 10)))]", want: js(`{"a":10,"b":20}`)},
	{expr: "[groupBy(createArray('foo', 'bar', 'baz'), lambda('x', substring(lambdaVariables('x'), 0, 1)))]", want: js(`{"f":["foo"],"b":["bar","baz"]}`)},
	{expr: "[lambdaVariables('x')]", err: "the lambda variable 'x' is not defined"},
	{expr: "[map(createArray(1), lambda('a', 'b', 1))]", err: "must take 1 parameter"},

	// ---- logical ----
	{expr: "[and(true(), false(), true())]", want: false},
	{expr: "[and(true(), true())]", want: true},
	{expr: "[or(false(), true())]", want: true},
	{expr: "[not(true())]", want: false},
	{expr: "[bool('true')]", want: true},
	{expr: "[bool('FALSE')]", want: false},
	{expr: "[bool(1)]", want: true},
	{expr: "[bool(0)]", want: false},
	{expr: "[bool('maybe')]", err: "can't be converted to a Boolean"},
	{expr: "[true()]", want: true},
	{expr: "[false()]", want: false},
	{expr: "[if(equals(1, 1), 'yes', 'no')]", want: "yes"},
	{expr: "[if(false(), parameters('never-evaluated'), 'lazy')]", want: "lazy"},
	{expr: "[if('x', 1, 2)]", err: "the condition must be a Boolean"},
	{expr: "[and(1, true())]", err: "must be a Boolean"},

	// ---- numeric ----
	{expr: "[add(5, 3)]", want: int64(8)},
	{expr: "[sub(7, 3)]", want: int64(4)},
	{expr: "[mul(5, -3)]", want: int64(-15)},
	{expr: "[div(8, 3)]", want: int64(2)},
	{expr: "[div(-8, 3)]", want: int64(-2)},
	{expr: "[div(1, 0)]", err: "divide by zero"},
	{expr: "[mod(7, 3)]", want: int64(1)},
	{expr: "[mod(1, 0)]", err: "divide by zero"},
	{expr: "[float('3.5')]", want: 3.5},
	{expr: "[float(3)]", want: float64(3)},
	{expr: "[int('4')]", want: int64(4)},
	{expr: "[int(json('2.5'))]", want: int64(2)},
	{expr: "[int('four')]", err: "can't be converted to an Integer"},
	{expr: "[copyIndex()]", err: "can only be used within a copy loop"},
	{expr: "[add('1', 2)]", err: "must be an Integer"},

	// ---- object ----
	{expr: "[createObject('intProp', 1, 'stringProp', 'abc', 'arrayProp', createArray('a'))]", want: js(`{"intProp":1,"stringProp":"abc","arrayProp":["a"]}`)},
	{expr: "[createObject('odd')]", err: "odd number"},
	{expr: "[items(createObject('b', 2, 'a', 1))]", want: js(`[{"key":"a","value":1},{"key":"b","value":2}]`)},
	{expr: "[json('{\"a\": [1, true, null]}')]", want: js(`{"a":[1,true,null]}`)},
	{expr: "[json('null')]", want: nil},
	{expr: "[json('{bad')]", err: "not valid JSON"},
	{expr: "[null()]", want: nil},
	{expr: "[objectKeys(createObject('b', 1, 'a', 2))]", want: js(`["a","b"]`)},
	{expr: "[shallowMerge(createArray(createObject('a', 1, 'n', createObject('x', 1)), createObject('n', createObject('y', 2))))]", want: js(`{"a":1,"n":{"y":2}}`)},

	// ---- resource ----
	{expr: "[resourceGroup().name]", want: "rg1"},
	{expr: "[resourceGroup().id]", want: "/subscriptions/" + testSub + "/resourceGroups/rg1"},
	{expr: "[resourceGroup().location]", want: "local"},
	{expr: "[resourceGroup().tags.env]", want: "test"},
	{expr: "[subscription().subscriptionId]", want: testSub},
	{expr: "[subscription().id]", want: "/subscriptions/" + testSub},
	{expr: "[tenant().tenantId]", want: "tenant-1"},
	{expr: "[managementGroup()]", err: "not at management group scope"},
	{expr: "[resourceId('Microsoft.Network/virtualNetworks', 'vnet')]", want: "/subscriptions/" + testSub + "/resourceGroups/rg1/providers/Microsoft.Network/virtualNetworks/vnet"},
	{expr: "[resourceId('Microsoft.Network/virtualNetworks/subnets', 'vnet', 'sub1')]", want: "/subscriptions/" + testSub + "/resourceGroups/rg1/providers/Microsoft.Network/virtualNetworks/vnet/subnets/sub1"},
	{expr: "[resourceId('otherRg', 'Microsoft.Storage/storageAccounts', 'sa')]", want: "/subscriptions/" + testSub + "/resourceGroups/otherRg/providers/Microsoft.Storage/storageAccounts/sa"},
	{expr: "[resourceId('sub2', 'otherRg', 'Microsoft.Storage/storageAccounts', 'sa')]", want: "/subscriptions/sub2/resourceGroups/otherRg/providers/Microsoft.Storage/storageAccounts/sa"},
	{expr: "[resourceId('Microsoft.Network/virtualNetworks/subnets', 'vnet')]", err: "name segment"},
	{expr: "[subscriptionResourceId('Microsoft.Resources/resourceGroups', 'rg2')]", want: "/subscriptions/" + testSub + "/providers/Microsoft.Resources/resourceGroups/rg2"},
	{expr: "[subscriptionResourceId('sub9', 'Microsoft.Authorization/roleDefinitions', 'r1')]", want: "/subscriptions/sub9/providers/Microsoft.Authorization/roleDefinitions/r1"},
	{expr: "[tenantResourceId('Microsoft.Authorization/policyDefinitions', 'p1')]", want: "/providers/Microsoft.Authorization/policyDefinitions/p1"},
	{expr: "[extensionResourceId(resourceGroup().id, 'Microsoft.Authorization/locks', 'lock1')]", want: "/subscriptions/" + testSub + "/resourceGroups/rg1/providers/Microsoft.Authorization/locks/lock1"},
	{expr: "[managementGroupResourceId('mg1', 'Microsoft.Authorization/policyDefinitions', 'p1')]", want: "/providers/Microsoft.Management/managementGroups/mg1/providers/Microsoft.Authorization/policyDefinitions/p1"},
	{expr: "[reference(resourceId('Microsoft.Network/publicIPAddresses', 'pip'), '2017-10-01').dnsSettings.fqdn]", want: "web.local.cloudapp.vmssd"},
	{expr: "[reference(resourceId('Microsoft.Storage/storageAccounts', 'sa'), '2016-01-01', 'Full').properties.primaryEndpoints.blob]", want: "https://sa.blob.local.vmssd/"},
	{expr: "[reference(resourceId('Microsoft.Storage/storageAccounts', 'sa'))]", err: "api-version is required"},
	{expr: "[reference(resourceId('Microsoft.Storage/storageAccounts', 'missing'), '2016-01-01')]", err: "not found"},
	{expr: "[reference('notInTemplate')]", err: "is not defined in the template"},
	{expr: "[references('x')]", err: "symbolic resource names"},
	{expr: "[listKeys(resourceId('Microsoft.Storage/storageAccounts', 'sa'), '2016-01-01').keys[0].value]", want: "key1"},
	{expr: "[listSecrets(resourceId('Microsoft.Web/sites', 'app'), '2020-01-01', createObject('a', 1)).body.a]", want: int64(1)},
	{expr: "[providers('Microsoft.Compute', 'virtualMachineScaleSets').resourceTypes[0].apiVersions[0]]", want: "2020-06-01"},
	{expr: "[pickZones('Microsoft.Compute', 'virtualMachines', 'local')]", want: js(`["1"]`)},
	{expr: "[pickZones('Microsoft.Compute', 'virtualMachines', 'local', 2, 1)]", want: js(`["2","3"]`)},

	// ---- string ----
	{expr: "[base64('one, two, three')]", want: "b25lLCB0d28sIHRocmVl"},
	{expr: "[base64ToString('b25lLCB0d28sIHRocmVl')]", want: "one, two, three"},
	{expr: "[base64ToJson('eyJvbmUiOiAiYSIsICJ0d28iOiAiYiJ9')]", want: js(`{"one":"a","two":"b"}`)},
	{expr: "[base64ToString('!!')]", err: "not valid base64"},
	{expr: "[dataUri('Hello')]", want: "data:text/plain;charset=utf8;base64,SGVsbG8="},
	{expr: "[dataUriToString('data:;base64,SGVsbG8sIFdvcmxkIQ==')]", want: "Hello, World!"},
	{expr: "[dataUriToString('data:text/plain;charset=UTF-8;page=21,the%20data:1234,5678')]", want: "the data:1234,5678"},
	{expr: "[endsWith('abcdef', 'F')]", want: true},
	{expr: "[endsWith('abcdef', 'e')]", want: false},
	{expr: "[startsWith('abcdef', 'AB')]", want: true},
	{expr: "[format('{0}, {1}. Formatted number: {2:N0}', 'Hello', 'User', 8175133)]", want: "Hello, User. Formatted number: 8,175,133"},
	{expr: "[format('{0:D3}-{1:X}-{2:N2}-{3}', 7, 255, 1234.5, true())]", want: "007-FF-1,234.50-True"},
	{expr: "[format('{{literal}} {0}', 'x')]", want: "{literal} x"},
	{expr: "[format('{1}', 'x')]", err: "refers to argument 1"},
	{expr: "[guid('a', 'b')]", want: GUID("a", "b")},
	{expr: "[guid(1)]", err: "all arguments must be strings"},
	{expr: "[join(createArray('a', 'b', 'c'), ',')]", want: "a,b,c"},
	{expr: "[newGuid()]", err: "only be used in the default value of a parameter"},
	{expr: "[padLeft('123', 10, '0')]", want: "0000000123"},
	{expr: "[padLeft(7, 3)]", want: "  7"},
	{expr: "[padLeft('abc', 2, '0')]", want: "abc"},
	{expr: "[replace('123-123-1234', '-', '')]", want: "1231231234"},
	{expr: "[split('one,two,three', ',')]", want: js(`["one","two","three"]`)},
	{expr: "[split('one;two,three', createArray(',', ';'))]", want: js(`["one","two","three"]`)},
	{expr: "[string(createObject('valueA', 10, 'valueB', 'Example Text'))]", want: `{"valueA":10,"valueB":"Example Text"}`},
	{expr: "[string(createArray('a', 'b'))]", want: `["a","b"]`},
	{expr: "[string(5)]", want: "5"},
	{expr: "[string(true())]", want: "True"},
	{expr: "[substring('hello world', 6, 5)]", want: "world"},
	{expr: "[substring('hello', 2)]", want: "llo"},
	{expr: "[substring('hello', 3, 5)]", err: "must refer to a location within the string"},
	{expr: "[toLower('One Two')]", want: "one two"},
	{expr: "[toUpper('One Two')]", want: "ONE TWO"},
	{expr: "[trim('    one two three   ')]", want: "one two three"},
	{expr: "[uniqueString('test', 'value')]", want: "bhxq2thzm5dym"},
	{expr: "[uri('http://contoso.org/firstpath', 'myscript.sh')]", want: "http://contoso.org/myscript.sh"},
	{expr: "[uri('http://contoso.org/firstpath/', 'myscript.sh')]", want: "http://contoso.org/firstpath/myscript.sh"},
	{expr: "[uri('relative', 'x')]", err: "not an absolute URI"},
	{expr: "[uriComponent('http://contoso.com/resources/nested/azuredeploy.json')]", want: "http%3A%2F%2Fcontoso.com%2Fresources%2Fnested%2Fazuredeploy.json"},
	{expr: "[uriComponentToString('http%3A%2F%2Fcontoso.com%2Fresources%2Fnested%2Fazuredeploy.json')]", want: "http://contoso.com/resources/nested/azuredeploy.json"},

	// ---- the language itself ----
	{expr: "[[not an expression]", want: "[not an expression]"},
	{expr: "plain", want: "plain"},
	{expr: "['it''s']", want: "it's"},
	{expr: "[createObject('a', createArray(10, 20)).a[1]]", want: int64(20)},
	{expr: "[createObject('Key', 1)['key']]", want: int64(1)},
	{expr: "[createObject('a', 1).B]", err: "doesn't exist"},
	{expr: "[createArray(1)[3]]", err: "out of bounds"},
	{expr: "[noSuchFunction()]", err: "is not valid"},
	{expr: "[concat('a']", err: "not valid"},
	{expr: "[concat('a]", err: "not terminated"},
	{expr: "[]", err: "empty"},
	{expr: "[TOUPPER('mixed Case')]", want: "MIXED CASE"},
	{expr: "[ concat( 'a' , 'b' ) ]", want: "ab"},
	{expr: "[sub(0, -5)]", want: int64(5)},
}

func TestFunctions(t *testing.T) {
	ctx := t.Context()
	for _, tc := range functionCases {
		got, err := EvaluateString(ctx, testEnv(), tc.expr)
		if tc.err != "" {
			if err == nil {
				t.Errorf("%s = %v, want an error containing %q", tc.expr, got, tc.err)
			} else if !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %q does not contain %q", tc.expr, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		if !deepEqual(got, tc.want) || typeName(got) != typeName(tc.want) {
			t.Errorf("%s = %#v (%s), want %#v (%s)", tc.expr, got, typeName(got), tc.want, typeName(tc.want))
		}
	}
}

var callRE = regexp.MustCompile(`([A-Za-z][A-Za-z0-9]*)\(`)

// TestEveryFunctionHasCases fails when a built-in function has no table case.
func TestEveryFunctionHasCases(t *testing.T) {
	used := map[string]bool{}
	for _, tc := range functionCases {
		for _, m := range callRE.FindAllStringSubmatch(tc.expr, -1) {
			used[strings.ToLower(m[1])] = true
		}
	}
	for _, tc := range defaultValueCases {
		for _, m := range callRE.FindAllStringSubmatch(tc.expr, -1) {
			used[strings.ToLower(m[1])] = true
		}
	}
	for _, name := range FunctionNames() {
		if !used[name] {
			t.Errorf("function %s has no test case", name)
		}
	}
	// The ARM reference's groups: every function they list is implemented.
	for _, name := range []string{
		"array", "concat", "contains", "createArray", "empty", "first", "flatten", "indexFromEnd", "indexOf", "tryIndexFromEnd", "intersection", "last", "lastIndexOf", "length", "max", "min", "range", "skip", "take", "tryGet", "union",
		"coalesce", "equals", "greater", "greaterOrEquals", "less", "lessOrEquals",
		"dateTimeAdd", "dateTimeFromEpoch", "dateTimeToEpoch", "utcNow",
		"deployer", "deployment", "environment", "parameters", "variables",
		"and", "bool", "false", "if", "not", "or", "true",
		"add", "copyIndex", "div", "float", "int", "mod", "mul", "sub",
		"createObject", "items", "json", "null", "objectKeys", "shallowMerge",
		"extensionResourceId", "managementGroupResourceId", "pickZones", "providers", "reference", "references", "resourceGroup", "resourceId", "subscription", "subscriptionResourceId", "tenant", "tenantResourceId", "managementGroup",
		"base64", "base64ToJson", "base64ToString", "dataUri", "dataUriToString", "endsWith", "format", "guid", "join", "newGuid", "padLeft", "replace", "split", "startsWith", "string", "substring", "toLower", "toUpper", "trim", "uniqueString", "uri", "uriComponent", "uriComponentToString",
		"filter", "groupBy", "lambda", "lambdaVariables", "map", "mapValues", "reduce", "sort", "toObject",
	} {
		if _, ok := builtins[strings.ToLower(name)]; !ok {
			t.Errorf("ARM function %s is not implemented", name)
		}
	}
}

// utcNow and newGuid only work in parameter default values.
var defaultValueCases = []fnCase{
	{expr: "[utcNow()]", want: "20261207T040506Z"},
	{expr: "[utcNow('u')]", want: "2026-12-07 04:05:06Z"},
	{expr: "[utcNow('d')]", want: "12/7/2026"},
	{expr: "[utcNow('yyyy-MM-dd')]", want: "2026-12-07"},
	{expr: "[newGuid()]", want: "11111111-2222-4333-8444-555555555555"},
	{expr: "[dateTimeAdd(utcNow(), 'PT1H', 'o')]", want: "2026-12-07T05:05:06.0000000Z"},
}

func TestDefaultValueOnlyFunctions(t *testing.T) {
	for _, tc := range defaultValueCases {
		tmpl, err := FromValue(map[string]any{
			"parameters": map[string]any{"p": map[string]any{"type": "string", "defaultValue": tc.expr}},
			"resources":  []any{},
		})
		if err != nil {
			t.Fatal(err)
		}
		d, err := Prepare(t.Context(), tmpl, nil, testEnv())
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		if got := d.Parameters["p"]; got != tc.want {
			t.Errorf("%s = %v, want %v", tc.expr, got, tc.want)
		}
	}
}
