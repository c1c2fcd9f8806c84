"""Which addresses a tree of processes listens on, read from /proc (Linux; no psutil needed).

    process_tree(pid)          pid and every descendant, by walking /proc/*/stat parent links
    listening_sockets(pids)    [(pid, name, address, port)] of their TCP listening sockets and bound UDP ones
    is_loopback(address)       127.0.0.0/8, ::1 and IPv4-mapped loopback (::ffff:127.0.0.1)

A socket is matched to its process through the inode in ``/proc/net/{tcp,tcp6,udp,udp6}`` and the
``socket:[inode]`` links in ``/proc/PID/fd``.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

PROC = Path("/proc")
#: /proc/net table → (IPv6?, the state column's value for a socket that accepts traffic)
TABLES = {"tcp": (False, "0A"), "tcp6": (True, "0A"), "udp": (False, "07"), "udp6": (True, "07")}


def available() -> bool:
    """True where /proc has the socket tables this module reads."""
    return (PROC / "net" / "tcp").is_file() and (PROC / "self" / "fd").is_dir()


def _address(hex_address: str, v6: bool) -> tuple[str, int]:
    """``0100007F:1F90`` → ("127.0.0.1", 8080); the kernel prints each 32-bit word in host order."""
    ip, port = hex_address.split(":")
    raw = bytes.fromhex(ip)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET6 if v6 else socket.AF_INET, words), int(port, 16)


def _bound_by_inode() -> dict[int, tuple[str, int]]:
    bound = {}
    for table, (v6, state) in TABLES.items():
        path = PROC / "net" / table
        if not path.is_file():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == state:
                bound[int(fields[9])] = _address(fields[1], v6)
    return bound


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants alive now."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])  # after "pid (comm) state"
            children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def process_name(pid: int) -> str:
    try:
        return (PROC / str(pid) / "comm").read_text().strip()
    except OSError:
        return "?"


def listening_sockets(pids: list[int]) -> list[tuple[int, str, str, int]]:
    """(pid, process name, address, port) of every listening TCP or bound UDP socket the processes hold."""
    bound = _bound_by_inode()
    found = []
    for pid in pids:
        try:
            fds = list((PROC / str(pid) / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = int(target[len("socket:[") : -1])
                if inode in bound:
                    found.append((pid, process_name(pid), *bound[inode]))
    return found


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback
