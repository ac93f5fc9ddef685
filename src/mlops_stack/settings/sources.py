"""Where a setting's value may come from besides the environment: a secret's file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import PydanticBaseSettingsSource

from mlops_stack.settings.fields import variable_names


class SecretFilesSource(PydanticBaseSettingsSource):
    """``MLOPS_<NAME>_FILE=/run/secrets/x`` sets ``<name>`` from that file's content.

    Secrets then live in files (compose secrets, a VM's root-only directory) rather than in
    the environment that ``docker inspect`` and crash reports show. A file value wins over the
    same variable set inline, so a production override can add ``*_FILE`` on top of a base
    file that sets development values. A named file that is missing is an error that names the
    variable, never a silent fallback to a default; an empty file means "not set" (an optional
    secret such as the alert webhook), which production refuses where a value is required.
    A renamed setting reads ``<variable>_FILE`` of each of its variables, its own first
    (:func:`~mlops_stack.settings.fields.formerly`).

    This is the only reader of ``MLOPS_*_FILE``: the image's entrypoint
    (infrastructure/docker-entrypoint.sh) does the same for the servers we do not write
    (MLflow, Prefect, JupyterLab) and leaves ``MLOPS_*`` alone.
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        names = variable_names(field_name, field)
        # the key the environment's source uses, so that the sources' order decides
        key = names[0] if field.validation_alias is not None else field_name
        for name in names:
            variable = f"{name}_FILE"
            path = os.environ.get(variable, "").strip()
            if not path:
                continue
            try:
                value = Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(
                    f"{variable}={path}: cannot read the file ({exc.strerror})"
                ) from None
            return value, key, False
        return None, key, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                values[key] = value
        return values
