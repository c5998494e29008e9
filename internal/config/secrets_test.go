package config

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestEnsureSecretsGeneratesAndReuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	c := Defaults()
	c.DataDir = dir

	gen, err := c.EnsureSecrets()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gen, []string{SecretJWT, SecretAPIKey, SecretAdmin}) {
		t.Errorf("generated = %q", gen)
	}
	if len(c.JWTSecret) < 43 || len(c.APIKeys) != 1 || len(c.APIKeys[0]) < 43 || len(c.AdminKey) < 43 {
		t.Errorf("weak or missing secrets: %q %q %q", c.JWTSecret, c.APIKeys, c.AdminKey)
	}
	if c.JWTSecret == c.AdminKey || c.APIKeys[0] == c.AdminKey {
		t.Error("secrets are not distinct")
	}
	file := filepath.Join(dir, SecretsFileName)
	if c.SecretsFile != file {
		t.Errorf("SecretsFile = %q, want %q", c.SecretsFile, file)
	}
	if runtime.GOOS != "windows" {
		checkMode(t, file, 0o600)
		checkMode(t, dir, 0o700)
	}

	// A second start reads the same values back and generates nothing.
	d := Defaults()
	d.DataDir = dir
	gen, err = d.EnsureSecrets()
	if err != nil {
		t.Fatal(err)
	}
	if len(gen) != 0 {
		t.Errorf("second call generated %q", gen)
	}
	if d.JWTSecret != c.JWTSecret || !slices.Equal(d.APIKeys, c.APIKeys) || d.AdminKey != c.AdminKey {
		t.Error("second call did not reuse the stored secrets")
	}
	if d.SecretsFile != file {
		t.Errorf("second call: SecretsFile = %q", d.SecretsFile)
	}
}

func TestEnsureSecretsConfiguredValuesWin(t *testing.T) {
	dir := t.TempDir()
	first := Defaults()
	first.DataDir = dir
	if _, err := first.EnsureSecrets(); err != nil {
		t.Fatal(err)
	}

	c := Defaults()
	c.DataDir = dir
	c.APIKeys = []string{"mine"}
	c.JWKSURL = "https://idp.example/jwks.json" // auth configured: no JWT secret needed
	gen, err := c.EnsureSecrets()
	if err != nil {
		t.Fatal(err)
	}
	if len(gen) != 0 {
		t.Errorf("generated %q although the file has an admin key", gen)
	}
	if !slices.Equal(c.APIKeys, []string{"mine"}) {
		t.Errorf("api_keys = %q, want the configured one", c.APIKeys)
	}
	if c.JWTSecret != "" {
		t.Error("a JWT secret was supplied although a JWKS URL is configured")
	}
	if c.AdminKey != first.AdminKey {
		t.Error("admin key not taken from the file")
	}
	data, _ := os.ReadFile(filepath.Join(dir, SecretsFileName))
	if strings.Contains(string(data), "mine") {
		t.Error("a configured value was written to the secrets file")
	}
}

func TestEnsureSecretsFillsOnlyWhatIsMissing(t *testing.T) {
	dir := t.TempDir()
	c := Defaults()
	c.DataDir = dir
	c.JWTSecret = "configured"
	c.AdminKey = "configured-admin"
	gen, err := c.EnsureSecrets()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gen, []string{SecretAPIKey}) {
		t.Errorf("generated = %q, want only api_keys", gen)
	}
	if c.JWTSecret != "configured" || c.AdminKey != "configured-admin" {
		t.Error("configured values were replaced")
	}
	data, err := os.ReadFile(filepath.Join(dir, SecretsFileName))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "configured") || strings.Contains(string(data), "jwt_secret") {
		t.Errorf("secrets file holds more than the generated key:\n%s", data)
	}
}

func TestEnsureSecretsNothingNeeded(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	c := Defaults()
	c.DataDir = dir
	c.AuthWebhookURL = "https://app.example/auth"
	c.APIKeys = []string{"k"}
	c.AdminKey = "a"
	gen, err := c.EnsureSecrets()
	if err != nil || len(gen) != 0 || c.SecretsFile != "" {
		t.Errorf("EnsureSecrets() = %q, %v; SecretsFile %q", gen, err, c.SecretsFile)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("data dir created although nothing was generated: %v", err)
	}
}

func TestEnsureSecretsRefusesABrokenFile(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, SecretsFileName)
	if err := os.WriteFile(name, []byte("jwt_secret: [unterminated\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Defaults()
	c.DataDir = dir
	if _, err := c.EnsureSecrets(); err == nil {
		t.Fatal("a broken secrets file was accepted")
	}
	data, _ := os.ReadFile(name)
	if string(data) != "jwt_secret: [unterminated\n" {
		t.Error("the broken file was overwritten")
	}
}

func checkMode(t testing.TB, name string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s has mode %v, want %v", name, got, want)
	}
}
