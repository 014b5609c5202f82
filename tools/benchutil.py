"""Small helpers shared by the benchmark scripts in tools/."""
import os
import socket
import time


def wait_port(port, timeout=5.0, host="127.0.0.1"):
    """True once something accepts connections on host:port, False after `timeout` seconds."""
    end = time.time() + timeout
    while time.time() < end:
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.05)
    return False


def process_cpu(pid):
    """CPU seconds a process and all its threads have used so far, or None when it is gone:
    the run time in /proc/PID/task/*/schedstat (nanoseconds), or utime + stime from
    /proc/PID/stat (clock ticks) where there is no schedstat."""
    try:
        ns = 0
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                ns += int(f.read().split()[0])
        return ns / 1e9
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
