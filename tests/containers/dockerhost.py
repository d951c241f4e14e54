"""Docker on this machine, for tests/containers: the engine, started if none runs; a base
image made here (debootstrap and `docker import`) where no image registry answers, kept
as a Docker image so that later runs skip it; the image built from this checkout; and
containers on the host's network, which reach only what listens on loopback here.

Each step's time is kept in TIMINGS, which the tier's conftest prints at the end."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from imgrec.lab.harness import wait_until

ROOT = Path(__file__).resolve().parents[2]
DOCKERD_LOG = Path("/var/log/imgrec-test-dockerd.log")
# The base: Debian's own Python in a venv that puts `python` and `pip` first on the PATH,
# as the official python images do; ca-certificates and passwd (useradd) for the Dockerfile.
SUITE = "bookworm"
MIRROR = os.environ.get("IMGREC_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PACKAGES = ("python3", "python3-venv", "ca-certificates", "passwd")
VENV = "/opt/python"
BASE_CHANGES = (
    f"ENV PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python"]',
)
IMAGE = "imgrec:containers-test"
LABEL = "imgrec.test=containers"  # on what these tests build and run
TIMINGS: list[tuple[str, float, str]] = []  # (step, seconds, what happened)


class timed:
    """Adds a step's time to TIMINGS; `note` says what happened (built, cached, ...)."""

    def __init__(self, step: str) -> None:
        self.step, self.note = step, ""

    def __enter__(self) -> timed:
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        TIMINGS.append((self.step, time.monotonic() - self.started, self.note if exc[0] is None else "failed"))


def docker(*args: str, check: bool = True, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, **kw)
    if check and out.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])} ...: exit {out.returncode}\n{out.stdout[-3000:]}{out.stderr[-3000:]}")
    return out


def engine_answers() -> bool:
    try:
        return docker("info", check=False, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def start_engine(timeout: float = 90) -> str:
    """dockerd, unless one answers already. No bridge and no iptables rules: every
    container of these tests runs on the host's network (loopback addresses only)."""
    if engine_answers():
        return "one was running"
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        raise RuntimeError("no Docker engine answers, and none can be started here (dockerd as root: apt-get install docker.io)")
    with DOCKERD_LOG.open("a") as log:
        subprocess.Popen(
            [dockerd, "--bridge=none", "--iptables=false"], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # it outlives this run: the next one finds it
        )
    wait_until(engine_answers, timeout, interval=0.5, what=f"dockerd to answer (its log: {DOCKERD_LOG})")
    return f"started, logging to {DOCKERD_LOG}"


def base_name() -> str:
    recipe = repr((SUITE, PACKAGES, VENV, BASE_CHANGES)).encode()
    return f"imgrec-base:{SUITE}-python3-{hashlib.sha256(recipe).hexdigest()[:10]}"


def base_image() -> tuple[str, bool]:
    """(the local base image's name, whether it was made now). Made once with debootstrap
    from Debian's mirror (a package registry, which answers where image registries do not)."""
    name = base_name()
    if docker("image", "inspect", name, check=False).returncode == 0:
        return name, False
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is missing (apt-get install debootstrap): the base image is made with it")
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="imgrec-base-") as tmp:
        root = Path(tmp) / "root"
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(root), MIRROR],
            check=True, capture_output=True, timeout=1800,
        )
        subprocess.run(["chroot", str(root), "/usr/bin/python3", "-m", "venv", VENV], check=True, timeout=300)
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for f in (root / cache).glob("*"):
                if f.is_file():
                    f.unlink()
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        changes = [a for c in BASE_CHANGES for a in ("--change", c)]
        imported = subprocess.run(["docker", "import", *changes, "-", name], stdin=tar.stdout, capture_output=True, timeout=600)
        tar.stdout.close()  # type: ignore[union-attr]
        if tar.wait() != 0 or imported.returncode != 0:
            raise RuntimeError(f"docker import of the base failed: {imported.stderr.decode()[-2000:]}")
    return name, True


def local_ca_certs() -> str:
    """The CA certificates this machine trusts beyond Debian's (what update-ca-certificates
    adds from /usr/local/share/ca-certificates): an intercepting proxy's, for instance."""
    return "\n".join(p.read_text().strip() for p in sorted(Path("/usr/local/share/ca-certificates").rglob("*.crt")))


def build(base: str, log: Path) -> None:
    """The image, from this checkout, on the local base; the build's output in `log`.
    The wheel and model stages are tagged too, so that what an earlier build left of each
    (after a change to src/) can be removed: the layers of the dependencies stay, as the cache."""
    args = ["build", "--network", "host", "--label", LABEL, "--build-arg", f"PYTHON_IMAGE={base}"]
    if index := os.environ.get("IMGREC_TEST_PIP_INDEX_URL"):
        args += ["--build-arg", f"PIP_INDEX_URL={index}"]
    if cas := local_ca_certs():
        args += ["--build-arg", f"CA_CERTS={cas}"]
    with log.open("w") as out:
        for tagged in (*(["--target", stage, "-t", f"{IMAGE}-{stage}"] for stage in ("wheel", "model")), ["-t", IMAGE]):
            # The classic builder: it needs neither buildx nor a registry for a frontend.
            done = subprocess.run(["docker", *args, *tagged, str(ROOT)], stdout=out, stderr=subprocess.STDOUT,
                                  timeout=1800, env={**os.environ, "DOCKER_BUILDKIT": "0"})
            if done.returncode != 0:
                raise RuntimeError(f"docker build failed:\n{log.read_text()[-4000:]}")
    docker("image", "prune", "--force", "--filter", f"label={LABEL}")  # the images these tags named before


class Container:
    """One container of the image, on the host's network, its main process an `imgrec`
    command; restarted by Docker when it dies (as an orchestrator would) if `restart`."""

    def __init__(self, name: str, env: dict[str, str], *args: str, restart: bool = True) -> None:
        self.name = name
        # The image's health check, looked at more often than its 10 s, and given longer
        # than its timeout: the machines this runs on are shared, and at times overloaded.
        options = ["--network", "host", "--label", LABEL, "--health-interval", "5s", "--health-timeout", "30s"]
        if restart:
            options += ["--restart", "on-failure"]
        for k, v in env.items():
            options += ["-e", f"{k}={v}"]
        docker("run", "-d", "--name", name, *options, IMAGE, *args)

    def inspect(self, template: str) -> str:
        return docker("inspect", "-f", template, self.name).stdout.strip()

    @property
    def pid(self) -> int:
        """Its main process, as this host sees it."""
        return int(self.inspect("{{.State.Pid}}"))

    @property
    def health(self) -> str:
        return self.inspect("{{if .State.Health}}{{.State.Health.Status}}{{end}}")

    @property
    def restarts(self) -> int:
        return int(self.inspect("{{.RestartCount}}"))

    def signal(self, sig: signal.Signals) -> int:
        """Its main process gets `sig` from outside Docker (SIGKILL: a crash, the OOM
        killer; Docker then restarts it as it would any process that died)."""
        pid = self.pid
        os.kill(pid, sig)
        return pid

    def exec(self, *cmd: str) -> subprocess.CompletedProcess:
        return docker("exec", self.name, *cmd, check=False, timeout=60)

    def logs(self) -> str:
        out = docker("logs", self.name, check=False)
        return f"{out.stdout}{out.stderr}\n--- health: {self.health_log()}\n"

    def remove(self) -> None:
        docker("rm", "-f", self.name, check=False)

    def health_log(self) -> str:
        """Its last health checks: when, their exit codes and what they said."""
        return self.inspect("{{if .State.Health}}{{json .State.Health}}{{end}}")

    def wait_healthy(self, timeout: float, also: Callable[[], bool] = lambda: True) -> None:
        try:
            wait_until(lambda: self.health == "healthy" and also(), timeout, interval=0.5, what=f"{self.name} healthy")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; its health checks: {self.health_log()}") from None


def run_once(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`docker run --rm` of the image: a command that ends (init, status, ...)."""
    options = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
    return docker("run", "--rm", "--network", "host", *options, IMAGE, *args, check=False, timeout=timeout)
