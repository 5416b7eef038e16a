package lapitest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ConfigOptions are what differs between the private LAPI configurations
// WriteConfig writes.
type ConfigOptions struct {
	// ListenURI is api.server.listen_uri, the LAPI's host:port.
	ListenURI string
	// LogLevel is the log level of crowdsec and of its API server; empty
	// means info.
	LogLevel string
	// TrustedIPs are api.server.trusted_ips; empty means 127.0.0.1 only.
	TrustedIPs []string
}

// WriteConfig writes a private configuration for a LAPI-only crowdsec
// (`crowdsec -c CONFIG -no-cs -no-capi`) into dir: config.yaml, with every
// path (database, data, hub, credentials) under dir, Debian's default
// profiles.yaml, simulation off, and the data, hub and notifications
// directories. Nothing outside dir is read or written by a crowdsec or
// cscli using it. It returns config.yaml's path.
func WriteConfig(dir string, c ConfigOptions) (string, error) {
	if c.ListenURI == "" {
		return "", fmt.Errorf("lapitest: WriteConfig %s: no listen URI", dir)
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if len(c.TrustedIPs) == 0 {
		c.TrustedIPs = []string{"127.0.0.1"}
	}
	for _, sub := range []string{"data", "hub", "notifications"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return "", fmt.Errorf("lapitest: WriteConfig: %w", err)
		}
	}
	config := fmt.Sprintf(`common:
  daemonize: false
  log_media: stdout
  log_level: %[2]s
  working_dir: .
config_paths:
  config_dir: %[1]s/
  data_dir: %[1]s/data/
  simulation_path: %[1]s/simulation.yaml
  hub_dir: %[1]s/hub/
  index_path: %[1]s/hub/.index.json
  notification_dir: %[1]s/notifications/
  plugin_dir: /usr/lib/crowdsec/plugins/
db_config:
  type: sqlite
  db_path: %[1]s/data/crowdsec.db
  use_wal: true
  log_level: warning
  flush:
    max_items: 1000000
    max_age: 7d
api:
  client:
    credentials_path: %[1]s/local_api_credentials.yaml
  server:
    log_level: %[2]s
    listen_uri: "%[3]s"
    profiles_path: %[1]s/profiles.yaml
    trusted_ips:
      - %[4]s
prometheus:
  enabled: false
`, dir, c.LogLevel, c.ListenURI, strings.Join(c.TrustedIPs, "\n      - "))
	// The profile only matters for alerts without decisions; the default
	// one, as Debian ships it.
	profiles := `name: default_ip_remediation
filters:
 - Alert.Remediation == true && Alert.GetScope() == "Ip"
decisions:
 - type: ban
   duration: 4h
on_success: break
`
	for name, text := range map[string]string{
		"config.yaml":     config,
		"profiles.yaml":   profiles,
		"simulation.yaml": "simulation: off\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			return "", fmt.Errorf("lapitest: WriteConfig: %w", err)
		}
	}
	return filepath.Join(dir, "config.yaml"), nil
}

// FirewallBouncerConfig is a minimal crowdsec-firewall-bouncer configuration
// in nftables mode with its default tables (ip crowdsec, ip6 crowdsec6) and
// hooks (input and forward), polling the LAPI at apiURL every second with
// apiKey; its log and pid file go in dir.
func FirewallBouncerConfig(dir, apiURL, apiKey string) string {
	return fmt.Sprintf(`mode: nftables
pid_dir: %[1]s
update_frequency: 1s
daemonize: false
log_mode: file
log_dir: %[1]s
log_level: info
api_url: %[2]s
api_key: %[3]s
disable_ipv6: false
deny_action: DROP
deny_log: false
supported_decisions_types:
  - ban
nftables:
  ipv4:
    enabled: true
    set-only: false
    table: crowdsec
    chain: crowdsec-chain
  ipv6:
    enabled: true
    set-only: false
    table: crowdsec6
    chain: crowdsec6-chain
prometheus:
  enabled: false
`, dir, apiURL, apiKey)
}
