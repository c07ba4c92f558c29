"""Production server settings (gunicorn), all from the environment via app/config.py.

Run: gunicorn --config gunicorn.conf.py "app.main:create_app()"
"""

from app.config import load_server_settings

_server = load_server_settings()

# All interfaces: inside a container; the reverse proxy is the public edge.
bind = f"0.0.0.0:{_server.port}"
workers = _server.workers
threads = _server.threads
timeout = _server.timeout
# Must stay below the container's stop grace period, so SIGTERM drains in-flight requests.
graceful_timeout = _server.graceful_timeout
keepalive = _server.keepalive
forwarded_allow_ips = _server.forwarded_allow_ips
# Build the app once in the master: a config error stops start-up with one clear message,
# and workers fork with the code already imported.
preload_app = True
worker_tmp_dir = "/dev/shm"  # noqa: S108 (heartbeat files; /dev/shm avoids disk stalls)
accesslog = None
errorlog = "-"
# No runtime control socket: it would be written under $HOME, which a read-only,
# non-root container does not have; operators manage the server with signals.
control_socket_disable = True
