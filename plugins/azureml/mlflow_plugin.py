"""The azureml target as an MLflow deployments plugin:
``mlflow deployments ... -t mldeploy-azureml:/SUBSCRIPTION/RESOURCE_GROUP/WORKSPACE``.

MLflow loads this module through the ``mlflow.deployments`` entry point; it must hold
``run_local``, ``target_help`` and exactly one ``BaseDeploymentClient`` subclass. The methods
are the core's (:mod:`mldeploy.mlflow_deployments`): no JSON config file, ``-C key=value`` only,
and ``update`` returns the deployment (MLflow's CLI prints its ``flavor``).
"""

from mlflow.deployments import BaseDeploymentClient

from mldeploy.mlflow_deployments import DeploymentClientMixin, plugin_functions


class AzureMLDeploymentClient(DeploymentClientMixin, BaseDeploymentClient):
    target = "azureml"


run_local, target_help = plugin_functions("azureml")
