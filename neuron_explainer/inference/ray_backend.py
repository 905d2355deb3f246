"""``RayBackend``: the ``InferenceBackend`` whose model runs in the replicas of a Ray Serve deployment.

Start-up (``RayBackend.start``): connect to the cluster (``--ray_address``: ``auto``, ``host:port`` or
``ray://host:10001``; none starts a local cluster in this process), deploy ``ray_replica.ModelReplica``
as a Serve application (no HTTP proxy: the server is the only entry), wait until its replicas have
loaded the model, then ask one of them for the model's facts and build the server's *view* of the model
from them (``models.facts``): tokenizer, shape, hook names and weight-derived norms, no weights.

An application's name is a hash of everything that shapes a replica (model, autoencoders, batching,
resources, replica count), so several servers started with the same flags on one cluster share one set
of replicas, and a restarted server finds its replicas still warm. A server that started its own local
cluster stops it on close; on an existing cluster the application keeps running (``serve delete``).

Requests: ``run`` validates on the server's view (a bad request never leaves the process), then sends
the ``ForwardRequest`` as it is; Serve routes it to a replica, whose engine batches it with whatever
else reached that replica. ``call(fn)`` pickles ``fn`` (cloudpickle) to one replica, runs it between
batches on its engine's thread, and sends its return value back: ``fn`` must be a pure function of the
model (the dataset builder sends one forward's worth of work per call, ``in_process`` tells it to).
A replica that dies (or becomes unreachable) during a request: the request is sent once more, to the
replicas Serve still routes to; a second failure, or no answer within ``--ray_request_timeout_s``, is
``UpstreamUnavailable``. Typed errors raised on a replica come back as the same typed error.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from neuron_explainer.errors import BadInput, UpstreamUnavailable
from neuron_explainer.inference.ray_replica import ReplicaConfig, Reply
from neuron_explainer.inference.requests import ForwardRequest, ForwardResult
from neuron_explainer.inference.validation import validate_request
from neuron_explainer.models.facts import model_view
from neuron_explainer.models.loaded_model import LoadedModel

log = logging.getLogger(__name__)
T = TypeVar("T")

FORWARDED_ENV = (
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_HOME",
    "HF_HUB_CACHE",
    "NEURON_EXPLAINER_HOME",
    "NEURON_EXPLAINER_AUTOENCODER_ROOT",
)
"""Environment variables a replica gets from the server when the server has them (offline mode, caches)."""


@dataclass(frozen=True)
class RayOptions:
    replica: ReplicaConfig
    address: str | None = None
    replicas: int = 1
    cpus_per_replica: float = 1.0
    gpus_per_replica: float = 0.0
    resources: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources each replica needs (e.g. ``{"gpu_node": 1}`` to pin replicas to some nodes)."""
    request_timeout_s: float = 60.0
    connect_timeout_s: float = 5.0
    existing_app: str | None = None
    """The name of a running application to use (deployed by a Serve config, e.g. KubeRay's RayService)."""

    def check(self) -> None:
        if self.replicas < 1:
            raise BadInput(f"--ray_replicas must be at least 1, got {self.replicas}", argument="ray_replicas")
        if self.cpus_per_replica < 0 or self.gpus_per_replica < 0:
            raise BadInput("--ray_cpus_per_replica and --ray_gpus_per_replica must be >= 0", argument="ray")
        if self.request_timeout_s <= 0:
            raise BadInput("--ray_request_timeout_s must be positive", argument="ray_request_timeout_s")

    def app_name(self) -> str:
        if self.existing_app is not None:
            return self.existing_app
        resources = sorted(self.resources.items())
        shape = [self.replica, self.replicas, self.cpus_per_replica, self.gpus_per_replica, resources]
        return "neuron-explainer-" + hashlib.sha256(repr(shape).encode()).hexdigest()[:12]


def parse_resources(text: str | None) -> dict[str, float]:
    """``--ray_replica_resources`` JSON (``{"name": amount}``) or nothing."""
    if not text:
        return {}
    try:
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError("not an object")
        return {str(k): float(v) for k, v in value.items()}
    except (ValueError, TypeError) as exc:
        raise BadInput(f"--ray_replica_resources must be a JSON object of numbers: {exc}", argument="ray") from None


# ---- the process's one connection to a cluster (Ray's driver state is per process) ---------------
_lock = threading.Lock()
_users = 0
_started_local = False
_address: str | None = None


def _probe(address: str, timeout_s: float) -> None:
    """A TCP connect to the cluster's address, so an unreachable one fails in seconds, naming it."""
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise BadInput(f"--ray_address {address!r} is not auto, host:port or ray://host:port", argument="ray_address")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise UpstreamUnavailable(
            f"cannot reach the Ray cluster at --ray_address {address} ({type(exc).__name__}: {exc})",
            address=address,
        ) from None


def connect(address: str | None, timeout_s: float) -> None:
    """Join the cluster at ``address`` (or start a local one); counted, so ``disconnect`` pairs with it."""
    global _users, _started_local, _address
    import ray

    with _lock:
        if ray.is_initialized():
            if _users and address != _address:
                raise BadInput(
                    f"this process is already joined to the Ray cluster at {_address or 'a local cluster'}; "
                    f"it cannot also join {address or 'a local one'}",
                    argument="ray_address",
                )
            _users += 1
            return
        if address not in (None, "", "auto"):
            _probe(address, timeout_s)
        env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        kwargs: dict[str, Any] = {"log_to_driver": False, "runtime_env": {"env_vars": env} if env else None}
        if not address:
            # Here, not in a helper thread: a local cluster's processes die with the *thread* that started
            # them (Ray sets PR_SET_PDEATHSIG), so the caller's thread must outlive the connection.
            ray.init(include_dashboard=False, **kwargs)
        else:
            # Something that accepts TCP but is no Ray cluster keeps ray.init retrying for 20-30 s: bound it.
            _init_within(address, kwargs, 3 * timeout_s)
        _started_local, _address, _users = not address, address, 1


def _init_within(address: str, kwargs: dict[str, Any], deadline_s: float) -> None:
    """``ray.init`` joining ``address``, given up after ``deadline_s`` (the attempt is left behind).

    Through Ray Client (``ray://``) the head starts a server process for each client, and on a loaded head
    that start can fail: the process dies before it serves ("Starting Ray client server failed"), or the
    head's proxy races the process's start-up shim and trips over it as a zombie (``psutil.ZombieProcess``).
    Ray reports both as an "Initialization failure from server"; the next client server usually starts,
    so such a failure is tried again while the deadline allows (at most three tries)."""
    give_up = time.monotonic() + deadline_s
    for attempt in range(1, 4):
        try:
            _init_once(address, kwargs, give_up - time.monotonic())
            return
        except UpstreamUnavailable as exc:
            retry = address.startswith("ray://") and CLIENT_SERVER_START_FAILED in str(exc)
            if not retry or attempt == 3 or time.monotonic() > give_up - 1:
                raise
            log.warning("Ray Client: the head's server for this client failed to start (try %d of 3); again", attempt)
            import ray

            ray.shutdown()  # whatever the failed try left of a client connection


CLIENT_SERVER_START_FAILED = "Initialization failure from server"
"""How Ray Client reports that the head could not start this client's server (its proxy's data path)."""


def _init_once(address: str, kwargs: dict[str, Any], deadline_s: float) -> None:
    import ray

    outcome: list[BaseException | None] = []
    done = threading.Event()

    def init() -> None:
        try:
            ray.init(address=address, **kwargs)
            outcome.append(None)
        except BaseException as exc:  # handed to the caller
            outcome.append(exc)
        finally:
            done.set()

    threading.Thread(target=init, name="ray-init", daemon=True).start()
    where = f"--ray_address {address}"
    if not done.wait(deadline_s):
        raise UpstreamUnavailable(f"no Ray cluster answered at {where} within {deadline_s:.0f} s", address=address)
    error = outcome[0]
    if isinstance(error, ConnectionError):
        raise UpstreamUnavailable(f"cannot join the Ray cluster at {where}: {error}", address=address) from None
    if error is not None:
        raise error


def disconnect() -> None:
    global _users
    import ray
    from ray import serve

    with _lock:
        _users -= 1
        if _users > 0 or not ray.is_initialized():
            return
        if _started_local:
            serve.shutdown()
        ray.shutdown()


def _deploy(options: RayOptions) -> Any:
    """The application's handle: the running one of that name, else a fresh deployment (waits for its replicas)."""
    from ray import serve
    from ray.serve.config import ProxyLocation

    from neuron_explainer.inference.ray_app import application

    serve.start(proxy_location=ProxyLocation.Disabled)
    name = options.app_name()
    app = serve.status().applications.get(name)
    if options.existing_app is not None:
        app = _settled(name, app, time.monotonic() + 3 * options.connect_timeout_s)
    if app is not None and str(app.status).endswith("RUNNING"):
        log.info("Ray Serve application %s is running: using its replicas", name)
        return serve.get_app_handle(name)
    if options.existing_app is not None:
        state = "not deployed" if app is None else f"{app.status}: {app.message}"[:300]
        where = options.address or "the local cluster"
        raise UpstreamUnavailable(
            f"no running Ray Serve application {name!r} (--ray_app_name) on {where}: {state}", app=name
        )
    log.info("deploying %d Ray Serve replica(s) of %s as %s", options.replicas, options.replica.model_name, name)
    target = application(
        options.replica,
        replicas=options.replicas,
        cpus=options.cpus_per_replica,
        gpus=options.gpus_per_replica,
        resources=options.resources,
    )
    return serve.run(target, name=name, route_prefix=None)


RECOVERING = ("DEPLOYING", "UNHEALTHY")
"""Application states Serve leaves on its own: it is (re)starting replicas, e.g. after one died."""


def _settled(name: str, app: Any, give_up: float) -> Any:
    """``app``'s status once Serve has settled it (or ``give_up`` passed): a named application whose replica
    just died is ``UNHEALTHY`` until Serve has started another, which is no reason to refuse to start."""
    from ray import serve

    while app is not None and str(app.status).endswith(RECOVERING) and time.monotonic() < give_up:
        log.info("Ray Serve application %s is %s: waiting for its replicas", name, app.status)
        time.sleep(1.0)
        app = serve.status().applications.get(name)
    return app


def _retryable() -> tuple[type[BaseException], ...]:
    from ray import exceptions as rex

    return (rex.RayActorError, rex.ActorUnavailableError, rex.ObjectLostError, rex.WorkerCrashedError)


class RayBackend:
    """``InferenceBackend`` over a Ray Serve deployment (see the module docstring)."""

    in_process = False

    def __init__(self, handle: Any, model: LoadedModel, options: RayOptions, baselines: dict[str, int]) -> None:
        self._handle = handle
        self.model = model
        self.options = options
        self.max_batch_size = options.replica.max_batch_size
        self.max_wait_s = options.replica.max_wait_ms / 1000.0
        self._forwards: dict[str, int] = {}
        self._backwards: dict[str, int] = {}
        self._ooms: dict[str, int] = {}
        self._baselines = baselines
        self._backward_baselines: dict[str, int] = {}
        self._retry_on = _retryable()
        self._closed = False

    @classmethod
    async def start(cls, options: RayOptions) -> RayBackend:
        options.check()
        await asyncio.to_thread(connect, options.address, options.connect_timeout_s)
        try:
            handle = await asyncio.to_thread(_deploy, options)
            facts = await handle.facts.remote()
            model = await asyncio.to_thread(model_view, facts)
            counters = await asyncio.to_thread(lambda: handle.broadcast("counters").results())
        except BaseException:
            await asyncio.to_thread(disconnect)
            raise
        baselines = {c["replica"]: int(c["forwards"]) for c in counters}
        backward_baselines = {c["replica"]: int(c.get("backwards", 0)) for c in counters}
        backend = cls(handle, model, options, baselines)
        backend._backward_baselines = backward_baselines
        return backend

    @property
    def forward_count(self) -> int:
        return sum(n - self._baselines.get(r, 0) for r, n in self._forwards.items())

    @property
    def backward_count(self) -> int:
        return sum(n - self._backward_baselines.get(r, 0) for r, n in self._backwards.items())

    @property
    def oom_count(self) -> int:
        return sum(self._ooms.values())

    async def run(self, request: ForwardRequest) -> ForwardResult:
        validate_request(self.model, request)
        result: ForwardResult = await self._ask("run", request)
        return result

    async def call(self, fn: Callable[[LoadedModel], T]) -> T:
        result: T = await self._ask("call", fn)
        return result

    async def replica_counters(self) -> list[dict[str, Any]]:
        """Every running replica's id, pid and forward count (for tests and operators)."""
        return await asyncio.to_thread(lambda: list(self._handle.broadcast("counters").results()))

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await asyncio.to_thread(disconnect)

    async def _ask(self, method: str, argument: Any) -> Any:
        if self._closed:
            raise RuntimeError("the Ray inference backend is closed")
        timeout = self.options.request_timeout_s
        for attempt in (1, 2):
            response = getattr(self._handle, method).remote(argument)
            try:
                reply: Reply[Any] = await asyncio.wait_for(_result(response), timeout=timeout)
            except TimeoutError:
                response.cancel()
                raise UpstreamUnavailable(
                    f"no Ray Serve replica answered within {timeout:.0f} s (--ray_request_timeout_s)",
                    timeout_s=timeout,
                ) from None
            except self._retry_on as exc:
                if attempt == 2:
                    raise UpstreamUnavailable(
                        f"the model's Ray Serve replicas failed twice on this request ({type(exc).__name__})",
                    ) from None
                log.warning("a Ray Serve replica failed during a request (%s): sending it again", type(exc).__name__)
                continue
            self._forwards[reply.replica] = reply.forwards
            self._backwards[reply.replica] = reply.backwards
            self._ooms[reply.replica] = reply.ooms
            if reply.error is not None:
                raise reply.error.error()
            return reply.value
        raise AssertionError("unreachable")


async def _result(response: Any) -> Any:
    return await response
