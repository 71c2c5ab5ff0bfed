"""The compose target as an MLflow deployments plugin:
``mlflow deployments ... -t mldeploy-compose``.

MLflow loads this module through the ``mlflow.deployments`` entry point; it must hold
``run_local``, ``target_help`` and exactly one ``BaseDeploymentClient`` subclass. The methods
are the core's (:mod:`mldeploy.mlflow_deployments`); needs the ``mlflow`` extra.
"""

from mlflow.deployments import BaseDeploymentClient

from mldeploy.mlflow_deployments import DeploymentClientMixin, plugin_functions


class ComposeDeploymentClient(DeploymentClientMixin, BaseDeploymentClient):
    target = "compose"


run_local, target_help = plugin_functions("compose")
