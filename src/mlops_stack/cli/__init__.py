"""``mlops``: one command for every part of the stack.

Each stack service is a subcommand of this CLI so that one image runs them all. Heavy imports
(MLflow, Prefect, scikit-learn) happen inside the commands: ``mlops --help`` stays instant, and
Prefect's environment is prepared from the settings before Prefect is first imported.

The package is an entry point: it composes the other modules, and nothing imports it. Its
modules, one per command group: ``command_tree`` (the tree and ``main``), ``training`` (train,
models, promote, rollback), ``monitoring`` (monitor, retrain, retention), ``traffic``
(simulate), ``demo``, ``services`` (serve api, serve dashboard, log-writer, worker),
``api_keys`` (api-key new); and what they share: ``runtime`` (settings, the stack, the
consoles, failing), ``defaults`` (option defaults taken from settings) and ``comparison``
(the champion-challenger line). Names with a leading underscore are shared between these
modules only.
"""

from mlops_stack.cli.command_tree import app, main

__all__ = ["app", "main"]
