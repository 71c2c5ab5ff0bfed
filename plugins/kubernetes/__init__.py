"""The Kubernetes target (``mldeploy deploy --target kubernetes[:/CONTEXT/NAMESPACE]``).

Files, as in every target: ``target.py`` orchestration, ``config.py`` the typed config,
``_client.py`` the API calls (the ``kubernetes`` package loads the kubeconfig and provides the
authenticated transport), ``errors.py`` API errors -> mldeploy errors. Besides: ``manifests.py``
builds the objects as wire-form dicts, ``_checks.py`` checks them semantically, ``_rollout.py``
watches rollouts and explains failures, ``_ops.py`` the undo ledger and merge patches,
``_converge.py`` what a replace changes per object, ``_replace.py`` replace as one transaction,
``_traffic.py`` canaries and invoke, ``testing/`` an in-memory cluster for tests (kmock).

``KubernetesTarget`` is imported on first use (it needs the ``kubernetes`` extra); the manifest
builders need nothing beyond PyYAML.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mldeploy.plugins.kubernetes.target import KubernetesPlan, KubernetesTarget

__all__ = ["KubernetesPlan", "KubernetesTarget"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from mldeploy.plugins.kubernetes import target

        return getattr(target, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
