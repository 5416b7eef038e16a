package coexist

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
)

// dockerLab is a dockerd started by the test in the victim's namespace, with
// its own data root, exec root, pidfile, socket and client configuration,
// in a sandbox over a copy of /etc/docker (dockerd writes key.json there)
// and a private /run (containerd's shim sockets).
type dockerLab struct {
	*lab
	sb                 *sandbox
	dir, sock, confDir string
	d                  *daemon
}

func newDockerLab(t *testing.T, hooks string) *dockerLab {
	t.Helper()
	for _, c := range []string{"dockerd", "containerd", "runc"} {
		netnstest.RequireCommand(t, c)
	}
	netnstest.RequireCommand(t, "docker")
	l := newLab(t, hooks)
	// Short paths: unix socket paths are limited to 107 bytes.
	dir, err := os.MkdirTemp("", "sbdk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	dl := &dockerLab{lab: l, sb: newSandbox(t, l.victim, "/etc/docker"), dir: dir,
		sock: filepath.Join(dir, "d.sock"), confDir: filepath.Join(dir, "client")}
	for _, sub := range []string{"root", "exec", "client"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dl
}

// start starts dockerd and waits until it answers.
func (dl *dockerLab) start() {
	dl.t.Helper()
	dl.d = dl.sb.start(filepath.Join(dl.dir, "dockerd.log"), "dockerd",
		"--data-root", filepath.Join(dl.dir, "root"), "--exec-root", filepath.Join(dl.dir, "exec"),
		"--pidfile", filepath.Join(dl.dir, "d.pid"), "-H", "unix://"+dl.sock,
		"--config-file", filepath.Join(dl.dir, "daemon.json"))
	netnstest.Eventually(dl.t, 60*time.Second, func() bool {
		if dl.d.exited() {
			dl.t.Fatalf("dockerd exited (it needs cgroups mounted under /sys/fs/cgroup, containerd and runc):\n%s", dl.d.logTail())
		}
		_, err := dl.docker(10*time.Second, "version")
		return err == nil
	}, "dockerd did not answer on %s:\n%s", dl.sock, "see dockerd.log")
}

// docker runs the docker client against the test's dockerd, with a client
// configuration directory of its own (nothing is written to ~/.docker).
func (dl *dockerLab) docker(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", append([]string{"-H", "unix://" + dl.sock}, args...)...)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+dl.confDir)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return buf.String(), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, buf.String())
	}
	return buf.String(), nil
}

func (dl *dockerLab) mustDocker(args ...string) string {
	dl.t.Helper()
	out, err := dl.docker(2*time.Minute, args...)
	if err != nil {
		dl.t.Fatal(err)
	}
	return out
}

// importImage builds the image sbweb:1 from busybox-static (no registry is
// reachable): a rootfs tarball with /bin/busybox and /www/index.html.
func (dl *dockerLab) importImage() {
	dl.t.Helper()
	root := filepath.Join(dl.dir, "img")
	for _, sub := range []string{"bin", "www"} {
		if err := os.MkdirAll(filepath.Join(root, sub), 0o755); err != nil {
			dl.t.Fatal(err)
		}
	}
	if out, err := exec.Command("cp", netnstest.RequireCommand(dl.t, "busybox"), filepath.Join(root, "bin", "busybox")).CombinedOutput(); err != nil {
		dl.t.Fatalf("cp busybox: %v: %s", err, out)
	}
	if err := os.WriteFile(filepath.Join(root, "www", "index.html"), []byte("container\n"), 0o644); err != nil {
		dl.t.Fatal(err)
	}
	tarball := filepath.Join(dl.dir, "img.tar")
	if out, err := exec.Command("tar", "-C", root, "-cf", tarball, ".").CombinedOutput(); err != nil {
		dl.t.Fatalf("tar: %v: %s", err, out)
	}
	dl.mustDocker("import", tarball, "sbweb:1")
}

// runWeb starts the container published on the victim's port 8080 and
// waits until the legitimate client reaches it.
func (dl *dockerLab) runWeb() {
	dl.t.Helper()
	dl.mustDocker("run", "-d", "--name", "web", "-p", "8080:80", "sbweb:1", "/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www")
	netnstest.Eventually(dl.t, 15*time.Second, func() bool { return dial(dl.client, victimC+":8080", time.Second) == nil },
		"the legitimate client cannot reach the container published on port 8080")
}

// TestDockerPublishedPort: dockerd started, a container published with
// -p 8080:80 started and stopped, dockerd restarted beside synban, with the
// two hook settings that cover forwarded traffic; and the input hook alone,
// which does not: DNAT'ed traffic to a published port is forwarded.
func TestDockerPublishedPort(t *testing.T) {
	t.Parallel()
	for _, h := range []string{hooksInputForward, hooksPrerouting} {
		t.Run(h, func(t *testing.T) {
			dl := newDockerLab(t, h)
			dl.ban()
			dl.step("dockerd start", dl.start)
			dl.importImage()
			dl.step("docker run -p 8080:80", dl.runWeb)
			if err := dl.droppedAt(victimA, 8080); err != nil {
				t.Fatalf("hooks = %s, Docker-published port: %v", h, err)
			}
			report(t, "hooks = %s: the banned attacker is dropped on the Docker-published port 8080; the client reaches it", h)
			dl.untouched("run")
			dl.step("docker stop + rm", func() { dl.mustDocker("rm", "-f", "web") })
			dl.step("dockerd restart", func() { dl.d.stop(); dl.start() })
			dl.step("docker run -p 8080:80 again", dl.runWeb)
			if err := dl.droppedAt(victimA, 8080); err != nil {
				t.Fatalf("hooks = %s, after dockerd's restart, Docker-published port: %v", h, err)
			}
			dl.finish()
			dl.mustDocker("rm", "-f", "web")
		})
	}
	t.Run(`["input"]`, func(t *testing.T) {
		dl := newDockerLab(t, `["input"]`)
		dl.ban()
		dl.start()
		dl.importImage()
		dl.runWeb()
		if err := dl.attackerDropped(80); err != nil {
			t.Fatalf("port 80 (the host's own listener): %v", err)
		}
		err := dl.droppedAt(victimA, 8080)
		if err == nil || !strings.Contains(err.Error(), "connected") {
			t.Fatalf(`hooks = ["input"] was expected to let the banned attacker reach the Docker-published port (forwarded traffic), got: %v`, err)
		}
		report(t, `hooks = ["input"]: the banned attacker reaches the Docker-published port 8080 (DNAT'ed traffic is forwarded, the input chain never sees it); add "forward" or use "prerouting"`)
		dl.mustDocker("rm", "-f", "web")
	})
}
