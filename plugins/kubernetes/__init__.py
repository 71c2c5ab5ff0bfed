"""The Kubernetes target (``mldeploy deploy --target kubernetes[:/CONTEXT/NAMESPACE]``).

Files, as in every target (``plugins/README.md``): ``target.py`` the hooks the core calls,
``config.py`` the typed config, ``_client.py`` the API calls (the ``kubernetes`` package loads
the kubeconfig and provides the authenticated transport), ``manifests.py`` the objects as
wire-form dicts (this target's pure builders), ``errors.py`` API errors -> mldeploy errors,
``testing/`` an in-memory cluster for tests (kmock). Besides: ``_checks.py`` checks the objects
semantically, ``_rollout.py`` watches rollouts and explains failures, ``_ops.py`` merge patches
and the transaction's records for objects, ``_converge.py`` what a replace changes per object,
``_replace.py`` replace, ``_traffic.py`` canaries and invoke - functions over a ``Kube`` client
and the config. The manifest builders need nothing beyond PyYAML.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mldeploy.registry import lazy_exports

if TYPE_CHECKING:
    from mldeploy.plugins.kubernetes.target import KubernetesPlan, KubernetesTarget

# What the target's extra installs: checked when the target is first asked for, so the registry
# can name the extra; importing this package imports nothing else.
NEEDS: tuple[str, ...] = ("kubernetes",)

__all__ = ["KubernetesPlan", "KubernetesTarget"]
__getattr__ = lazy_exports(__name__, __all__, NEEDS)
