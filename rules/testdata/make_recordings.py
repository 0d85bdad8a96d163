#!/usr/bin/env python3
"""Writes the recordings the shipped rules are tested against.

Three hosts report Telegraf's cpu, disk, mem, system, swap, processes, diskio and net measurements
every 10 s for 20 minutes from 2026-01-01T00:00:00Z (node02 one second after the others). Each
metric has one scripted incident and, where it makes sense, a recovery:

  disk       node02 "/" fills from 70% to 96% by minute 14, cleaned up to 60% at minute 16
  cpu        node02 cpu-total 97% busy from minute 5 to 9
  cpu_core   node01 cpu1 pegged (0.5% idle) from minute 4 to 15
  memory     node03 climbs from 60% to 97% between minutes 8 and 12
  load       node01 (4 CPUs) load5 9.0 from minute 6 to 10
  swap       node02 60% swap used from minute 10 to 13
  processes  node03 80 zombies from minute 3 to 6
  diskio     node02 sda at 150 ms per operation from minute 7 to 11
  net        node01 eth0 drops 50 packets/s from minute 12 to 14
  deadman    node03 stops reporting entirely at minute 15

Usage: python3 rules/testdata/make_recordings.py   (writes rules/testdata/<rule>.lp)
"""
import os

START = 1767225600  # 2026-01-01T00:00:00Z
STEPS = 120  # 20 minutes of 10 s samples
HOSTS = {"node01": 4, "node02": 8, "node03": 16}


def minute(step):
    return step * 10 / 60


def lines_for(host, step):
    m = minute(step)
    off = 1 if host == "node02" else 0
    t = (START + step * 10 + off) * 10**9
    k = step * 10  # seconds since start, drives the counters
    out = {}

    # cpu: cpu-total plus two cores.
    cpu = []
    for c in ("cpu-total", "cpu0", "cpu1"):
        idle = 70.0 + (step % 7)
        if host == "node02" and c == "cpu-total" and 5 <= m < 9:
            idle = 3.0
        if host == "node01" and c == "cpu1" and 4 <= m < 15:
            idle = 0.5
        user = (100 - idle) * 0.7
        system = (100 - idle) * 0.3
        cpu.append(
            f"cpu,cpu={c},host={host} usage_user={user:.3f},usage_system={system:.3f},"
            f"usage_idle={idle:.3f},usage_iowait=0.1,usage_steal=0 {t}"
        )
    out["cpu"] = cpu

    # disk: "/" and "/var/lib/docker".
    disk = []
    for path, dev in (("/", "sda1"), ("/var/lib/docker", "sdb1")):
        pct = 45.0 if path == "/" else 30.0
        if host == "node02" and path == "/":
            pct = 70.0 + min(m, 14) / 14 * 26 if m < 16 else 60.0
        if host == "node03":
            pct = 50.0
        total = 100 * 2**30
        used = int(total * pct / 100)
        disk.append(
            f"disk,device={dev},fstype=ext4,host={host},mode=rw,path={path} total={total}i,"
            f"free={total - used}i,used={used}i,used_percent={pct:.4f} {t}"
        )
    out["disk"] = disk

    mem_pct = 55.0
    if host == "node03" and m >= 8:
        mem_pct = 60.0 + min(m - 8, 4) / 4 * 37
    out["mem"] = [f"mem,host={host} total=17179869184i,used_percent={mem_pct:.3f},available_percent={100 - mem_pct:.3f} {t}"]

    ncpu = HOSTS[host]
    load5 = 0.5 * ncpu
    if host == "node01" and 6 <= m < 10:
        load5 = 9.0
    out["system"] = [f"system,host={host} load1={load5:.2f},load5={load5:.2f},load15={load5:.2f},n_cpus={ncpu}i,n_users=1i {t}"]

    swap_pct = 60.0 if host == "node02" and 10 <= m < 13 else 5.0
    out["swap"] = [f"swap,host={host} total=4294967296i,used_percent={swap_pct},in=0i,out=0i {t}"]

    zombies = 80 if host == "node03" and 3 <= m < 6 else 0
    out["processes"] = [f"processes,host={host} blocked=0i,running=2i,sleeping=300i,zombies={zombies}i,total=302i {t}"]

    # diskio: 10 reads and 10 writes per second; normally 2 ms each, node02 150 ms in the incident.
    def io_ms(s):
        total = 0
        for i in range(s):
            slow = host == "node02" and 7 <= minute(i) < 11
            total += 10 * (150 if slow else 2)
        return total

    ops = k * 10
    out["diskio"] = [
        f"diskio,host={host},name=sda reads={ops}i,writes={ops}i,read_time={io_ms(step) * 10}i,"
        f"write_time={io_ms(step) * 10}i,io_time={k * 100}i {t}"
    ]

    def drops(s):
        return sum(500 for i in range(s) if host == "node01" and 12 <= minute(i) < 14)

    out["net"] = [f"net,host={host},interface=eth0 bytes_recv={k * 1000}i,drop_in={drops(step)}i,drop_out=0i,err_in=0i {t}"]
    return out


RULES = {
    "disk": ["disk"],
    "cpu": ["cpu"],
    "cpu_core": ["cpu"],
    "memory": ["mem"],
    "load": ["system"],
    "deadman": ["system"],
    "swap": ["swap"],
    "processes": ["processes"],
    "diskio": ["diskio"],
    "net": ["net"],
}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    per_measurement = {}
    for step in range(STEPS):
        for host in HOSTS:
            if host == "node03" and minute(step) >= 15:
                continue
            for meas, lines in lines_for(host, step).items():
                per_measurement.setdefault(meas, []).extend(lines)
    for rule, measurements in RULES.items():
        with open(os.path.join(here, f"{rule}.lp"), "w") as f:
            for meas in measurements:
                f.write("\n".join(per_measurement[meas]) + "\n")


if __name__ == "__main__":
    main()
