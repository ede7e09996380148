"""Run inside a fresh network namespace (``unshare --net``) by test_offline_netns.

The namespace has its loopback, and one way out: a veth pair whose far end (v1) this script
watches with a raw socket, the default routes (IPv4 and IPv6) leading to it. Anything that
would leave the machine (a TCP SYN, a DNS query to the resolver of /etc/resolv.conf, a STUN
binding request, an ARP or neighbour solicitation, a multicast announcement) shows there.

It serves a hostile vendor page on loopback, runs the harness's browser scenario with
``--offline`` against it, then proves the watch works (a UDP datagram of its own, which must
be seen), and prints what it saw as JSON.
"""
from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PAGE = b"""<!doctype html><html><head><title>Cabinet Hostile</title>
<link rel="dns-prefetch" href="//prefetch.hostile.example"><link rel="preconnect" href="http://198.51.100.11">
<link rel="stylesheet" href="https://fonts.hostile.example/css"></head>
<body><main><h1>Cabinet Hostile</h1></main><footer id="about">Cabinet Hostile - Version 4.1.0</footer>
<img src="http://images.hostile.example/logo.png" alt=""><iframe src="http://198.51.100.12/"></iframe>
<script>
try { new WebSocket("ws://198.51.100.7/"); } catch (e) {}
try { new WebSocket("wss://ws.hostile.example/"); } catch (e) {}
fetch("http://198.51.100.8/x").catch(() => {});
fetch("https://api.hostile.example/y").catch(() => {});
try { new EventSource("http://198.51.100.13/events"); } catch (e) {}
navigator.sendBeacon && navigator.sendBeacon("http://198.51.100.9/b", "x");
try {
  const pc = new RTCPeerConnection({iceServers: [{urls: "stun:198.51.100.10:3478"}, {urls: "stun:stun.hostile.example:19302"}]});
  pc.createDataChannel("x");
  pc.createOffer().then(o => pc.setLocalDescription(o));
} catch (e) {}
</script></body></html>"""


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def watch(seen: list, stop: threading.Event) -> None:
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
    raw.bind(("v1", 0))
    raw.settimeout(0.2)
    while not stop.is_set():
        try:
            frame = raw.recv(65535)
        except TimeoutError:
            continue
        kind = struct.unpack("!H", frame[12:14])[0]
        if kind == 0x0800:  # IPv4
            proto, dst = frame[23], socket.inet_ntop(socket.AF_INET, frame[30:34])
            ihl = (frame[14] & 0x0F) * 4
            port = struct.unpack("!H", frame[14 + ihl + 2:14 + ihl + 4])[0] if proto in (6, 17) else None
            seen.append({"ip": 4, "dst": dst, "proto": {6: "tcp", 17: "udp"}.get(proto, str(proto)), "port": port})
        elif kind == 0x86DD:  # IPv6
            proto, dst = frame[20], socket.inet_ntop(socket.AF_INET6, frame[38:54])
            if dst.startswith("ff02:") and proto in (0, 58):
                continue  # the kernel's own link management (MLD reports, router solicitations): no program sends these
            port = struct.unpack("!H", frame[56:58])[0] if proto in (6, 17) else None
            seen.append({"ip": 6, "dst": dst, "proto": {6: "tcp", 17: "udp", 58: "icmpv6"}.get(proto, str(proto)), "port": port})
        elif kind == 0x0806:
            seen.append({"arp": socket.inet_ntop(socket.AF_INET, frame[38:42])})
        else:
            seen.append({"ethertype": hex(kind)})


def main() -> None:
    work = Path(sys.argv[1])
    sh("ip", "link", "set", "lo", "up")
    sh("ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
    sh("ip", "addr", "add", "10.201.0.1/24", "dev", "v0")
    sh("ip", "link", "set", "v0", "up")
    sh("ip", "link", "set", "v1", "up")
    sh("ip", "route", "add", "default", "via", "10.201.0.2", "dev", "v0")
    # the gateway's address is known: packets go out as they are (no ARP first)
    far = json.loads(subprocess.run(["ip", "-j", "link", "show", "v1"], check=True, capture_output=True, text=True).stdout)[0]["address"]
    sh("ip", "neigh", "add", "10.201.0.2", "lladdr", far, "dev", "v0", "nud", "permanent")
    try:
        sh("ip", "-6", "addr", "add", "fd00:201::1/64", "dev", "v0", "nodad")
        sh("ip", "-6", "route", "add", "default", "via", "fd00:201::2", "dev", "v0")
        sh("ip", "-6", "neigh", "add", "fd00:201::2", "lladdr", far, "dev", "v0", "nud", "permanent")
    except subprocess.CalledProcessError:
        pass  # no IPv6 in this kernel: nothing can leave that way either
    time.sleep(0.5)  # the links settle (IPv6 router solicitations of their own come now, not later)
    seen: list = []
    stop = threading.Event()
    watcher = threading.Thread(target=watch, args=(seen, stop), daemon=True)
    watcher.start()
    time.sleep(0.3)
    seen.clear()  # what the interfaces said of themselves when coming up

    class Page(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(PAGE)))
            self.end_headers()
            self.wfile.write(PAGE)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    target = work / "hostile.toml"
    target.write_text(f'[product]\nid = "hostile"\nname = "Cabinet Hostile"\nversion = "4.1.0"\n\n'
                      f'[endpoints]\nui = "http://127.0.0.1:{server.server_address[1]}/"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "HARNESS_"))}
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:allure_pytest", "--scenario", "version-visible-in-ui",
                          "--offline", "--lang", "en", "--target", str(target)], cwd=work, env=env, capture_output=True, text=True, timeout=240)
    time.sleep(2.0)  # what the browser would send late (a retry, a background service)
    leaked = list(seen)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:  # the watch sees what leaves
        probe.sendto(b"probe", ("198.51.100.1", 9))
    time.sleep(0.5)
    stop.set()
    watcher.join(2)
    bundles = sorted((work / "reports").glob("*.zip"))
    print(json.dumps({"leaked": leaked, "probe_seen": any(p.get("dst") == "198.51.100.1" for p in seen), "after": seen[len(leaked):],
                      "returncode": run.returncode, "stdout": run.stdout[-3000:], "stderr": run.stderr[-2000:],
                      "bundle": str(bundles[-1]) if bundles else None}))


if __name__ == "__main__":
    main()
