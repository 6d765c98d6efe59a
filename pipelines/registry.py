"""Pipelines by name, imported on first use.

Built-in pipelines are listed in ``BUILTIN_PIPELINES`` as ``"package.module:attribute"``;
a site adds its own through the node's ``extra_pipelines`` setting. The attribute is a
class or factory called with no arguments, or an object; the result must satisfy the
``Pipeline`` protocol.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping

from pipelines.contract import Pipeline

# The real pipelines (hand_orientation, bone_age, ct_body_part, mura_abnormality,
# xray_triage) are added here as their issues land.
BUILTIN_PIPELINES: dict[str, str] = {}


class PipelineUnavailable(LookupError):
    """No pipeline under that name, or it cannot be imported or does not meet the contract."""


class PipelineRegistry:
    def __init__(self, extra: Mapping[str, str] | None = None) -> None:
        self._targets = {**BUILTIN_PIPELINES, **(extra or {})}
        self._loaded: dict[str, Pipeline] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return sorted(self._targets)

    def get(self, name: str) -> Pipeline:
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = self._load(name)
            return self._loaded[name]

    def _load(self, name: str) -> Pipeline:
        target = self._targets.get(name)
        if target is None:
            known = ", ".join(self.names()) or "none"
            raise PipelineUnavailable(f"no pipeline named {name!r} (known: {known})")
        module_name, _, attribute = target.partition(":")
        if not attribute:
            raise PipelineUnavailable(f"pipeline {name!r}: {target!r} is not 'module:attribute'")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise PipelineUnavailable(
                f"pipeline {name!r}: cannot import {module_name}: {exc}"
            ) from exc
        try:
            factory = getattr(module, attribute)
        except AttributeError as exc:
            raise PipelineUnavailable(
                f"pipeline {name!r}: {module_name} has no {attribute}"
            ) from exc
        if isinstance(factory, type) or (callable(factory) and not isinstance(factory, Pipeline)):
            pipeline = factory()
        else:
            pipeline = factory
        if not isinstance(pipeline, Pipeline):
            raise PipelineUnavailable(
                f"pipeline {name!r}: {target} does not meet the Pipeline contract "
                "(needs a 'name' and a 'run(series)' method)"
            )
        if pipeline.name != name:
            raise PipelineUnavailable(f"pipeline {name!r}: {target} calls itself {pipeline.name!r}")
        return pipeline
