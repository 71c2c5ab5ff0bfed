"""An in-memory Kubernetes cluster for tests of the Kubernetes target (needs ``kmock`` and
``kubernetes-validate``): kmock's API emulator on 127.0.0.1 extended with validation (422),
the API server's defaulting (``_defaults``), the Deployment/ReplicaSet/Pod controllers, events,
logs and the service proxy. The target talks
to it with the real ``kubernetes`` client over HTTP::

    with FakeCluster() as cluster:
        target = KubernetesTarget({"registry": "registry.test/ml"}, clients=cluster.clients())
        target.create("churn", "models:/churn/3")        # the image "build" registers the model
        cluster.fail_next_rollout("model failed to load")  # the next new ReplicaSet crash-loops
        cluster.set_behaviour("registry.test/ml/x:1", "unready")

Nothing starts until the context is entered.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

TOP_LEVEL = ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
             "InferenceService")


class FakeCluster:
    """A fake cluster in a background thread. ``version``: the Kubernetes minor whose schemas
    the API server validates with; ``ready_delay``: seconds a pod takes to become ready;
    ``time_scale``: multiplies progress deadlines (0.01: 600 s become 6 s)."""

    def __init__(self, *, version: str = "1.33", ready_delay: float = 0.02,
                 time_scale: float = 1.0, namespace: str = "default") -> None:
        self.version = version
        self.ready_delay = ready_delay
        self.time_scale = time_scale
        self.namespace = namespace
        self.url = ""
        self.builds: list[Any] = []  # the ImageRequests build_image was given
        self._image_dirs: list[str] = []  # the 'images': copies of their models
        self._registry: str | None = None  # the directory holding them (the fake registry)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.emulator: Any = None

    def __enter__(self) -> FakeCluster:
        import tempfile

        # the fake registry's directory, made now: the caller's TMPDIR holds only its downloads
        self._registry = tempfile.mkdtemp(prefix="mldeploy-fake-registry-")
        self._thread = threading.Thread(target=self._run, name="fake-kubernetes", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the fake Kubernetes API server did not start")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)
        import shutil

        for directory in self._image_dirs:
            shutil.rmtree(directory, ignore_errors=True)
        if self._registry is not None:
            shutil.rmtree(self._registry, ignore_errors=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the thread that entered the context
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        import kmock

        from mldeploy.plugins.kubernetes.testing._cluster import ClusterEmulator

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        emulator = ClusterEmulator()
        emulator.version = self.version
        emulator.controllers.ready_delay = self.ready_delay
        emulator.controllers.time_scale = self.time_scale
        async with emulator, kmock.Server(emulator, host="127.0.0.1") as server:
            self.emulator = emulator
            self.url = f"http://127.0.0.1:{server.port}"
            self._ready.set()
            await self._stop.wait()

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's loop, holding its lock (the state is the server's)."""
        assert self._loop is not None

        async def locked() -> Any:
            async with self.emulator._lock:
                return fn()

        return asyncio.run_coroutine_threadsafe(locked(), self._loop).result(30)

    # -- for the target -------------------------------------------------------------------

    def api_client(self) -> Any:
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.url
        return client.ApiClient(cfg)

    def clients(self, build_image: Callable[..., str] | None = None) -> Any:
        from mldeploy.plugins.kubernetes._client import Clients

        return Clients(self.api_client(), self.namespace, build_image or self.build_image)

    def build_image(self, request: Any, log: Callable[[str], None]) -> str:
        """The image builder's stand-in (the :data:`mldeploy.images.Builder` seam): 'pushes'
        ``request.reference`` holding a copy of the model (removed when the cluster stops)."""
        import shutil
        import tempfile

        self.builds.append(request)
        if self._registry is None:
            self._registry = tempfile.mkdtemp(prefix="mldeploy-fake-registry-")
        copy = tempfile.mkdtemp(prefix="image-", dir=self._registry)
        self._image_dirs.append(copy)
        shutil.copytree(request.model_dir, copy, dirs_exist_ok=True)
        self.push_image(request.reference, copy)
        log(f"pushed {request.reference}")
        return request.reference

    # -- the cluster's state ----------------------------------------------------------------

    def push_image(self, reference: str, model_dir: str | None) -> None:
        self._call(lambda: self.emulator.images.__setitem__(reference, model_dir))

    def set_behaviour(self, image: str, kind: str, log: tuple[str, ...] = ()) -> None:
        """How containers of ``image`` behave: ok, crash (last output ``log``), unready, pull."""
        from mldeploy.plugins.kubernetes.testing._controller import Behaviour

        self._call(lambda: self.emulator.behaviours.__setitem__(image, Behaviour(kind, log)))

    def fail_next_rollout(self, reason: str) -> None:
        """The next ReplicaSet the controller creates crash-loops, logging ``reason``."""
        self._call(lambda: setattr(self.emulator.controllers, "fail_next", reason))

    def objects(self, kind: str) -> list[dict[str, Any]]:
        return self._call(lambda: self.emulator.items(kind))

    def create(self, obj: dict[str, Any]) -> None:
        """Put an object into the cluster directly (as another tool or user would)."""
        self._call(lambda: self.emulator.put(obj))

    def served(self) -> list[str]:
        """The pods that answered proxied requests, in order."""
        return self._call(lambda: list(self.emulator.served))

    def inventory(self) -> set[str]:
        """``Kind/namespace/name`` of every top-level object (what mldeploy creates)."""
        return {f"{kind}/{o['metadata']['namespace']}/{o['metadata']['name']}"
                for kind in TOP_LEVEL for o in self.objects(kind)}


__all__ = ["FakeCluster"]
