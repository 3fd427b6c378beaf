package proc

import (
	"crypto/rand"
	"encoding/hex"

	"dapr-pub-sub/internal/appenv"
)

// SecretPrefix is the prefix under which daprd's env secret store
// (components/secretstore.yaml) looks up secrets: the component refers to
// "REDIS_PASSWORD", daprd reads PUBSUB_SECRET_REDIS_PASSWORD, and no
// other environment variable is reachable through the secrets API.
const SecretPrefix = "PUBSUB_SECRET_"

// Secrets are the credentials of one run. None is ever printed or written
// to a file in the repository.
type Secrets struct {
	APIToken      string // DAPR_API_TOKEN: apps → their sidecar
	AppToken      string // APP_API_TOKEN: subscriber sidecar → subscriber
	RedisPassword string // requirepass of the managed Redis; from the secret store for the components
}

// NewSecrets generates random credentials, taking any that getenv already
// provides (DAPR_API_TOKEN, APP_API_TOKEN, REDIS_PASSWORD) instead.
func NewSecrets(getenv func(string) string) Secrets {
	pick := func(name string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return randomHex(24)
	}
	return Secrets{APIToken: pick(appenv.DaprAPIToken), AppToken: pick(appenv.AppAPIToken), RedisPassword: pick("REDIS_PASSWORD")}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails on Linux
	return hex.EncodeToString(b)
}

// sidecarEnv is the environment daprd gets: its API token, the token it
// sends to its app, and the Redis password for the secret store.
func (s Secrets) sidecarEnv(withApp bool) []string {
	env := []string{appenv.Set(appenv.DaprAPIToken, s.APIToken), appenv.Set(SecretPrefix+"REDIS_PASSWORD", s.RedisPassword)}
	if withApp {
		env = append(env, appenv.Set(appenv.AppAPIToken, s.AppToken))
	}
	return env
}
