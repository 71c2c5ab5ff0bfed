"""The SageMaker target (``mldeploy deploy --target sagemaker[:/REGION]``).

Files, as in every target: ``target.py`` orchestration, ``config.py`` the typed config,
``_client.py`` the boto3 calls, ``_resources.py`` names and request bodies, ``errors.py`` SDK
errors -> mldeploy errors; ``_image.py`` builds and pushes the model's image when no
``image_uri`` is given, ``_plan.py`` the dry run, ``_cleanup.py`` removal of unused resources,
``_guard.py`` endpoints mldeploy did not create (refused unless ``-C adopt=true``).
boto3 itself is imported on first use; its absence is reported here, when the target is asked
for, so the registry can name the extra to install.
"""

import importlib.util as _util

for _dep in ("boto3", "botocore"):
    if _util.find_spec(_dep) is None:
        raise ImportError(f"the sagemaker target needs {_dep}", name=_dep)

from mldeploy.plugins.sagemaker.target import SageMakerTarget  # noqa: E402

__all__ = ["SageMakerTarget"]
