"""Small helpers shared by the benchmark scripts in tools/."""
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
