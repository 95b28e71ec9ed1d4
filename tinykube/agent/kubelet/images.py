"""How an image name is run: nothing can be pulled, so the name selects a runner."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

KUBELET_DIR = Path(__file__).resolve().parent
AGNHOST = str(KUBELET_DIR / "agnhost.py")

OS_IMAGES = {
    "busybox": ["sh"], "centos": ["/bin/bash"], "debian": ["bash"], "ubuntu": ["/bin/bash"],
    "alpine": ["/bin/sh"], "fedora": ["/bin/bash"], "python": ["python3"],
    "amsy810/tools": ["sleep", "infinity"],
    "e2e-test-images/busybox": ["sh"], "e2e-test-images/jessie-dnsutils": ["sh"],
    "e2e-test-images/dnsutils": ["sh"],
}

SUPPORTED_TEXT = ("nginx (any tag), amsy810/echo-nginx, registry.k8s.io/e2e-test-images/"
                  "agnhost, hashicorp/http-echo, and busybox, centos, debian, ubuntu, alpine, "
                  "fedora, python, amsy810/tools (run with the host's programs)")


def split_image(image: str) -> tuple[str, str, str]:
    """(registry, repository path, tag-or-digest) of an image reference."""
    ref = image
    digest = ""
    if "@" in ref:
        ref, digest = ref.split("@", 1)
    tag = ""
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        ref, tag = ref.rsplit(":", 1)
    parts = ref.split("/")
    registry = ""
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        registry, parts = parts[0], parts[1:]
    path = "/".join(parts)
    return registry, path, digest or tag


def normalize(image: str) -> str:
    """The image as containerd reports it (docker.io/library/nginx:latest)."""
    registry, path, tag = split_image(image)
    registry = registry or "docker.io"
    if registry == "docker.io" and "/" not in path:
        path = "library/" + path
    if tag.startswith("sha256:"):
        return f"{registry}/{path}@{tag}"
    return f"{registry}/{path}:{tag or 'latest'}"


def image_id(image: str) -> str:
    registry, path, _ = split_image(normalize(image))
    digest = hashlib.sha256(f"tinykube:{normalize(image)}".encode()).hexdigest()
    return f"{registry}/{path}@sha256:{digest}"


def kind_of(image: str) -> str | None:
    """'nginx', 'echo-nginx', 'agnhost', 'http-echo', 'os', or None (cannot run)."""
    registry, path, _ = split_image(image)
    if path.startswith("library/"):
        path = path[len("library/"):]
    last = path.rsplit("/", 1)[-1]
    if path == "nginx" or path in ("nginxinc/nginx-unprivileged",):
        return "nginx"
    if path == "amsy810/echo-nginx":
        return "echo-nginx"
    if last == "agnhost":
        return "agnhost"
    if path == "hashicorp/http-echo":
        return "http-echo"
    if path in OS_IMAGES or (registry in ("registry.k8s.io", "k8s.gcr.io", "gcr.io") and
                             path.split("/", 1)[-1] in OS_IMAGES):
        return "os"
    if path in ("pause",) or last == "pause":
        return "pause"
    return None


def pull_error_message(image: str) -> str:
    return (f'Failed to pull image "{image}": tinykube cannot pull images; it runs only '
            f"{SUPPORTED_TEXT}")


def _os_default(image: str) -> list[str]:
    _, path, _ = split_image(image)
    path = path.removeprefix("library/")
    if path in OS_IMAGES:
        return OS_IMAGES[path]
    return OS_IMAGES.get(path.split("/", 1)[-1], ["sh"])


def command_for(image: str, command: list[str], args: list[str]) -> list[str]:
    """The argv the sandbox executes for a container of ``image``.

    Follows Docker's rules: ``command`` replaces the image ENTRYPOINT, ``args``
    replace its CMD."""
    kind = kind_of(image)
    # agnhost.py needs only the standard library; the base interpreter stays visible in the
    # sandbox even when the virtualenv lives under /tmp (which the sandbox replaces)
    py = os.path.realpath(sys.executable)
    if kind in ("nginx", "echo-nginx"):
        if command:
            return command + args
        if args:
            return args
        return ["nginx", "-g", "daemon off;"]
    if kind == "agnhost":
        if command:
            if command[0] in ("/agnhost", "agnhost"):
                return [py, AGNHOST] + command[1:] + args
            return command + args
        return [py, AGNHOST] + (args or ["pause"])
    if kind == "http-echo":
        if command:
            return command + args
        return [py, AGNHOST, "http-echo"] + args
    if kind == "pause":
        return command + args if command else [py, AGNHOST, "pause"]
    # general OS images
    if command:
        return command + args
    if args:
        return args
    return _os_default(image)


NGINX_CONF = """user www-data;
worker_processes 1;
error_log /dev/stderr notice;
pid /run/nginx.pid;

events {
    worker_connections 1024;
}

http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    log_format main '$remote_addr - $remote_user [$time_local] "$request" '
                    '$status $body_bytes_sent "$http_referer" '
                    '"$http_user_agent" "$http_x_forwarded_for"';
    access_log /dev/stdout main;
    sendfile on;
    keepalive_timeout 65;
    include /etc/nginx/conf.d/*.conf;
}
"""

NGINX_DEFAULT_SITE = """server {
    listen 80;
    server_name localhost;

    location / {
        root /usr/share/nginx/html;
        index index.html index.htm;
    }

    error_page 500 502 503 504 /50x.html;
    location = /50x.html {
        root /usr/share/nginx/html;
    }
}
"""

ECHO_NGINX_SITE = """server {
    listen %(port)s;
    server_name _;

    location / {
        add_header Content-Type text/plain;
        return 200 "Host=$host  Path=$request_uri  From=$hostname  ClientIP=$remote_addr  XFF=$http_x_forwarded_for\\n";
    }
}
"""

NGINX_50X = """<!DOCTYPE html>
<html>
<head>
<title>Error</title>
</head>
<body>
<h1>An error occurred.</h1>
<p>Sorry, the page you are looking for is currently unavailable.<br/>
Please try again later.</p>
</body>
</html>
"""


def nginx_html_source() -> dict[str, bytes]:
    """The stock welcome page files, taken from the host's nginx package."""
    files: dict[str, bytes] = {}
    d = Path("/usr/share/nginx/html")
    if d.is_dir():
        for f in d.iterdir():
            if f.is_file():
                files[f.name] = f.read_bytes()
    if "index.html" not in files:
        deb = Path("/var/www/html/index.nginx-debian.html")
        if deb.is_file():
            files["index.html"] = deb.read_bytes()
    files.setdefault("50x.html", NGINX_50X.encode())
    return files
