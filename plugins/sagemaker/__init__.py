"""The SageMaker target (``mldeploy deploy --target sagemaker[:/REGION]``).

Files, as in every target (``plugins/README.md``): ``target.py`` the hooks the core calls,
``config.py`` the typed config, ``_client.py`` the boto3 calls, ``_resources.py`` names and
request bodies (pure), ``errors.py`` SDK errors -> mldeploy errors; and for this target
``_image.py`` builds and pushes the model's image when no ``image_uri`` is given, ``_plan.py``
the dry run, ``_cleanup.py`` removal of unused resources, ``_guard.py`` endpoints mldeploy did
not create (refused unless ``-C adopt=true``). boto3 itself is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mldeploy.registry import lazy_exports

if TYPE_CHECKING:
    from mldeploy.plugins.sagemaker.target import SageMakerTarget

# What the target's extra installs: checked when the target is first asked for, so the registry
# can name the extra; importing this package imports nothing else.
NEEDS: tuple[str, ...] = ("boto3", "botocore")

__all__ = ["SageMakerTarget"]
__getattr__ = lazy_exports(__name__, __all__, NEEDS)
