// Package coexist holds the coexistence suite: synban beside the firewalls
// operators already run (Debian's ufw, firewalld, docker.io, fail2ban and
// crowdsec-firewall-bouncer), each started by the test in a network
// namespace of its own and, where it writes /etc, /run or /var, in a private
// mount namespace over temporary copies, so the host's files and firewall are
// never changed. The tests are in the _test.go files; README.md's "Living
// with an existing firewall" reports what they measure.
package coexist
