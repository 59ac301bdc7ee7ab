//! The Python `docker` SDK (docker-py 7.1, installed on the machine) against berthd: the
//! calls scripts and testcontainers make.

mod support;

use std::time::Duration;

use support::Daemon;

const SCRIPT: &str = r#"
import sys, docker
c = docker.DockerClient(base_url=sys.argv[1])
assert c.ping()
v = c.version()
assert v["ApiVersion"] == "1.50", v
# run() waits and returns the output (needs LogConfig.Type json-file in inspect).
out = c.containers.run("busybox", ["sh", "-c", "echo py-hello"], remove=True)
assert out == b"py-hello\n", out
# A missing image is ImageNotFound (docker-py matches the 404 message text).
try:
    c.images.get("no-such-image:1")
    raise SystemExit("expected ImageNotFound")
except docker.errors.ImageNotFound:
    pass
ctr = c.containers.run("busybox", ["sleep", "30"], detach=True, name="pyctr", labels={"l": "v"})
ctr.reload()
assert ctr.status == "running", ctr.status
code, output = ctr.exec_run(["sh", "-c", "echo exec-out; exit 3"])
assert code == 3 and output == b"exec-out\n", (code, output)
assert [x.name for x in c.containers.list(filters={"label": ["l=v"]})] == ["pyctr"]
ctr.stop(timeout=1)
ctr.reload()
assert ctr.status == "exited", ctr.status
assert ctr.wait()["StatusCode"] in (137, 143, 0)
ctr.remove(v=True, force=True)
vol = c.volumes.create("pyvol", labels={"a": "b"})
assert [x.name for x in c.volumes.list(filters={"label": ["a=b"]})] == ["pyvol"]
vol.remove()
imgs = c.images.list()
assert any("busybox:latest" in i.tags for i in imgs), imgs
print("python-ok")
"#;

#[test]
fn docker_py_works_unchanged() {
    let d = Daemon::start();
    let mut c = std::process::Command::new("python3");
    c.args(["-c", SCRIPT, &d.host()]);
    let o = support::output_within(c, Duration::from_secs(120));
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("python-ok"),
        "stdout: {}\nstderr: {}\nberthd: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        support::tail(&d.log(), 40)
    );
}
