"""mlops-stack: the whole model lifecycle on a laptop today and on one VM tomorrow.

Modules by concern: ``settings`` (configuration), ``data`` (load, schema, validate),
``training`` (candidates, evaluation), ``modelstore`` (log and load models in MLflow), ``gate``
(the promotion rule), ``registry`` (aliases, decisions, rollback), ``flows`` (Prefect flows that
compose the modules) and ``cli`` (the ``mlops`` command). Modules never import flows or the CLI.
"""

__version__ = "0.1.0"
