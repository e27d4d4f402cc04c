// Runs every Argo CD health check under deploy/argocd against its fixtures,
// in gopher-lua, the interpreter Argo CD embeds, with the libraries Argo CD
// opens for health checks configured in argocd-cm (package, base, table):
// a script that needs anything else fails here as it would there.
//
// Layout, as in Argo CD's resource_customizations: <group>/<Kind>/health.lua,
// health_test.yaml (tests: [{inputPath, healthStatus: {status, message}}])
// and testdata/.
package argocd

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
	"sigs.k8s.io/yaml"
)

const root = "../../deploy/argocd"

type healthStatus struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

type testCases struct {
	Tests []struct {
		InputPath    string       `json:"inputPath"`
		HealthStatus healthStatus `json:"healthStatus"`
	} `json:"tests"`
}

func TestHealthChecks(t *testing.T) {
	specs, err := filepath.Glob(filepath.Join(root, "*", "*", "health_test.yaml"))
	if err != nil || len(specs) == 0 {
		t.Fatalf("no health_test.yaml under %s (%v)", root, err)
	}
	for _, spec := range specs {
		dir := filepath.Dir(spec)
		script := readFile(t, filepath.Join(dir, "health.lua"))
		var cases testCases
		if err := yaml.Unmarshal([]byte(readFile(t, spec)), &cases); err != nil {
			t.Fatalf("%s: %v", spec, err)
		}
		if len(cases.Tests) == 0 {
			t.Fatalf("%s has no tests", spec)
		}
		for _, tc := range cases.Tests {
			t.Run(filepath.Join(filepath.Base(filepath.Dir(dir)), filepath.Base(dir), tc.InputPath), func(t *testing.T) {
				var obj map[string]any
				if err := yaml.Unmarshal([]byte(readFile(t, filepath.Join(dir, tc.InputPath))), &obj); err != nil {
					t.Fatalf("%s: %v", tc.InputPath, err)
				}
				got, err := evaluate(script, obj)
				if err != nil {
					t.Fatal(err)
				}
				if got != tc.HealthStatus {
					t.Errorf("got %+v, want %+v", got, tc.HealthStatus)
				}
			})
		}
	}
}

// evaluate runs a health script with `obj` set, as Argo CD does for a
// script from argocd-cm (useOpenLibs false).
func evaluate(script string, obj map[string]any) (healthStatus, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for name, open := range map[string]lua.LGFunction{
		lua.LoadLibName: lua.OpenPackage,
		lua.BaseLibName: lua.OpenBase,
		lua.TabLibName:  lua.OpenTable,
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(open), Protect: true}, lua.LString(name)); err != nil {
			return healthStatus{}, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return healthStatus{}, err
	}
	result, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return healthStatus{}, &resultError{l.Get(-1).Type().String()}
	}
	return healthStatus{
		Status:  lua.LVAsString(result.RawGetString("status")),
		Message: lua.LVAsString(result.RawGetString("message")),
	}, nil
}

type resultError struct{ got string }

func (e *resultError) Error() string { return "the script returned a " + e.got + ", not a table" }

// toLua converts decoded JSON to Lua values: objects and arrays to tables,
// numbers to numbers, null to nil.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []any:
		table := l.CreateTable(len(v), 0)
		for _, item := range v {
			table.Append(toLua(l, item))
		}
		return table
	case map[string]any:
		table := l.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetString(key, toLua(l, item))
		}
		return table
	default:
		return lua.LNil
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
