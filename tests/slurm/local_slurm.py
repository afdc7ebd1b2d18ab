"""A real Slurm (slurmctld + one slurmd per emulated node + munge) on this machine, for tests.

The setup: Debian's Slurm 22.05 as root, no systemd, no cgroups, several
nodes emulated on localhost (one `slurmd -N nX` each on its own port). `ensure_installed()` installs the
packages with apt-get when missing; `LocalSlurm.unavailable_reason()` says why it cannot run here.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
BINARIES = ["slurmctld", "slurmd", "sbatch", "munged", "scontrol", "squeue", "sinfo"]

SLURM_CONF = """\
ClusterName=ci
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d}/munge/munge.socket.2,cred_expire={cred_expire}
StateSaveLocation={d}/state/ctld
SlurmdSpoolDir={d}/state/d/%n
SlurmctldPidFile={d}/state/slurmctld.pid
SlurmdPidFile={d}/state/slurmd-%n.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd-%n.log
SlurmdParameters=config_overrides
MailProg=/bin/true
SchedulerParameters=batch_sched_delay=0
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc={d}/log/jobcomp.txt
MpiDefault=none
ReturnToService=2
MinJobAge=3600
KillWait=5
{node_lines}
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def _missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None and not Path(f"/usr/sbin/{b}").exists()]


def ensure_installed() -> str | None:
    """Install Slurm and munge if missing; returns None when ready, else the reason it cannot run."""
    if os.geteuid() != 0:
        return "the local Slurm must run as root (slurmd as SlurmdUser=root)"
    if not _missing_binaries():
        return None
    if shutil.which("apt-get") is None:
        return f"no apt-get to install {PACKAGES} (missing: {_missing_binaries()})"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        if proc.returncode != 0:
            return f"{' '.join(cmd)} failed: {proc.stderr.strip()[-300:]}"
    missing = _missing_binaries()
    return f"still missing after install: {missing}" if missing else None


def _which(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def free_ports(n: int) -> list[int]:
    """`n` distinct TCP ports free right now, so two clusters (or jobs) on one machine never share one."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


class LocalSlurm:
    """Start with `start()`, stop with `stop()` (scancel, then TERM each daemon by PID)."""

    def __init__(self, root: Path, nodes: int = 2, cpus: int = 2, cred_expire_s: int = 10):
        self.root = Path(root)
        self.nodes = [f"n{i + 1}" for i in range(nodes)]
        self.cpus = cpus
        # Slurm holds a requeued job back for about cred_expire (default 120 s) so that the old incarnation's
        # credentials have expired before the new one starts; a short lifetime keeps that wait short in tests.
        self.cred_expire_s = cred_expire_s
        self.conf = self.root / "slurm.conf"
        self.procs: list[subprocess.Popen] = []

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self, timeout_s: float = 60.0) -> None:
        d = self.root
        for sub in ["state/ctld", "log", "munge", *[f"state/d/{n}" for n in self.nodes]]:
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "munge").chmod(0o755)
        ctld_port, *node_ports = free_ports(1 + len(self.nodes))
        node_lines = "\n".join(f"NodeName={node} NodeHostname=localhost NodeAddr=127.0.0.1 Port={port} "
                               f"CPUs={self.cpus} RealMemory=10000 State=UNKNOWN"
                               for node, port in zip(self.nodes, node_ports, strict=True))
        self.conf.write_text(SLURM_CONF.format(d=d, node_lines=node_lines, ctld_port=ctld_port,
                                               cred_expire=self.cred_expire_s))
        key = d / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self._spawn([_which("munged"), "-F", f"--key-file={key}", f"--socket={d}/munge/munge.socket.2",
                     f"--pid-file={d}/munge/munged.pid", f"--log-file={d}/log/munged.log",
                     f"--seed-file={d}/munge/munged.seed"], "munged")
        time.sleep(0.3)
        self._spawn([_which("slurmctld"), "-D", "-f", str(self.conf)], "slurmctld")
        for node in self.nodes:
            self._spawn([_which("slurmd"), "-D", "-f", str(self.conf), "-N", node], f"slurmd-{node}")
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            ping = subprocess.run(["scontrol", "ping"], env=self.env, capture_output=True, text=True)
            idle = subprocess.run(["sinfo", "-h", "-N", "-t", "idle", "-o", "%N"], env=self.env,
                                  capture_output=True, text=True)
            if "UP" in ping.stdout and len(set(idle.stdout.split())) == len(self.nodes):
                return
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"Slurm did not come up in {timeout_s} s; logs in {d / 'log'}")

    def _spawn(self, cmd: list[str], name: str) -> None:
        log = open(self.root / "log" / f"{name}.stdout", "wb")
        self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env))

    def sbatch(self, *args: str, cwd: str | Path | None = None, env: dict[str, str] | None = None) -> str:
        """Submit; the job sees this process's environment plus `env` (sbatch exports it by default)."""
        proc = subprocess.run(["sbatch", "--parsable", *args], env={**self.env, **(env or {})},
                              capture_output=True, text=True, cwd=cwd)
        if proc.returncode != 0:
            raise RuntimeError(f"sbatch {' '.join(args)} failed: {proc.stderr}")
        return proc.stdout.strip().split(";")[0]

    def state(self, job_id: str) -> dict[str, str]:
        """JobState and ExitCode of a job (an array job's tasks: the worst one)."""
        proc = subprocess.run(["scontrol", "-o", "show", "job", job_id], env=self.env, capture_output=True,
                              text=True)
        states = {}
        for line in proc.stdout.splitlines():
            fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
            states[fields.get("JobId", job_id) + fields.get("ArrayTaskId", "")] = fields
        return {key: f"{v.get('JobState')} {v.get('ExitCode')}" for key, v in states.items()}

    def wait(self, job_ids: list[str], timeout_s: float = 600.0) -> dict[str, str]:
        """Poll until no listed job is pending or running; returns every task's 'STATE EXIT'."""
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            queue = subprocess.run(["squeue", "-h", "-o", "%i %T", "-j", ",".join(job_ids)], env=self.env,
                                   capture_output=True, text=True)
            if not queue.stdout.strip():
                break
            time.sleep(1.0)
        else:
            raise TimeoutError(f"jobs {job_ids} still queued after {timeout_s} s")
        out: dict[str, str] = {}
        for job in job_ids:
            out.update(self.state(job))
        return out

    def daemon_log(self, job_id: str) -> str:
        """The daemons' log lines about one job, for a failing test's message."""
        lines = []
        for log in sorted((self.root / "log").glob("slurm*.log")):
            lines += [f"{log.stem}: {line}" for line in log.read_text(errors="replace").splitlines()
                      if re.search(rf"(JobId=|[Jj]ob |\[){job_id}\b", line)]
        return "\n".join(lines)

    def stop(self) -> None:
        subprocess.run(["scancel", "--user=root"], env=self.env, capture_output=True)
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()
