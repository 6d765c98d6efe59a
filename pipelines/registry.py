"""Pipelines by name, imported on first use.

Built-in pipelines are listed in ``BUILTIN_PIPELINES`` as ``"package.module:attribute"``;
a site adds its own through the node's ``extra_pipelines`` setting. The attribute is a
class or factory, called with the pipeline's options (the node's ``pipeline_options``
setting) as keyword arguments, or an object (which takes no options); the result must
satisfy the ``Pipeline`` protocol (``StudyPipeline`` for a study-scoped one).

``scope(name)`` says whether a pipeline decides per series or per study, which the node
needs when a study becomes stable, in the process that receives (where no pipeline, and
no torch, is loaded): a built-in pipeline's scope is declared in ``BUILTIN_SCOPES``
beside its import string (checked against the pipeline's own ``scope`` when it loads);
another pipeline is loaded to ask it. ``runs_after(name)`` is read the same way
(``BUILTIN_RUNS_AFTER``): the pipeline whose result on the same series it takes; the node
orders their jobs, and ``order_problems`` refuses a cycle when the configuration loads.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from pipelines.contract import Pipeline, PipelineScope, pipeline_scope

# The other pipelines (bone_age) are added here as their
# issues land.
BUILTIN_PIPELINES: dict[str, str] = {
    "hand_orientation": "pipelines.hand_orientation:HandOrientation",
    "ct_body_part": "pipelines.ct_body_part:CtBodyPart",
    "mura_abnormality": "pipelines.mura_abnormality:MuraAbnormality",
    "xray_triage": "pipelines.xray_triage:XrayTriage",
    "bone_age": "pipelines.bone_age:BoneAge",
}

#: Built-in pipelines that decide per study (the others decide per series).
BUILTIN_SCOPES: dict[str, PipelineScope] = {"mura_abnormality": "study"}

#: Built-in pipelines that run after another on the same series and take its result
#: (``SeriesInput.after``), e.g. bone age on the film hand_orientation turned upright.
BUILTIN_RUNS_AFTER: dict[str, str] = {"bone_age": "hand_orientation"}


class PipelineUnavailable(LookupError):
    """No pipeline under that name, or it cannot be imported or does not meet the contract."""


class PipelineRegistry:
    def __init__(
        self,
        extra: Mapping[str, str] | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self._targets = {**BUILTIN_PIPELINES, **(extra or {})}
        self._options = {name: dict(values) for name, values in (options or {}).items()}
        self._loaded: dict[str, Pipeline] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return sorted(self._targets)

    def get(self, name: str) -> Pipeline:
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = self._load(name)
            return self._loaded[name]

    def scope(self, name: str) -> PipelineScope:
        """``"study"`` or ``"series"``: a built-in's declared scope, or the loaded
        pipeline's own (``PipelineUnavailable`` when it cannot be loaded)."""
        if name in BUILTIN_PIPELINES and self._targets.get(name) == BUILTIN_PIPELINES[name]:
            return BUILTIN_SCOPES.get(name, "series")
        return pipeline_scope(self.get(name))

    def runs_after(self, name: str) -> str | None:
        """The pipeline ``name`` runs after on the same series (its ``runs_after``), or
        None; a built-in's is declared in ``BUILTIN_RUNS_AFTER`` (nothing is imported)."""
        if name in BUILTIN_PIPELINES and self._targets.get(name) == BUILTIN_PIPELINES[name]:
            return BUILTIN_RUNS_AFTER.get(name)
        after = getattr(self.get(name), "runs_after", None)
        return None if after is None else str(after)

    def order_problems(self, names: Iterable[str]) -> list[str]:
        """Why the order ``runs_after`` asks of ``names`` cannot work: a cycle, or an
        ordering across scopes (both must decide per series). Empty: every order can be
        kept (a pipeline that cannot be loaded is ``problems``' business)."""
        found: list[str] = []
        for name in sorted(set(names)):
            try:
                chain, current = [name], self.runs_after(name)
                while current is not None:
                    if current in chain:
                        cycle = " -> ".join([*chain[chain.index(current) :], current])
                        found.append(f"pipeline {name!r}: runs_after makes a cycle: {cycle}")
                        break
                    if self.scope(current) != "series" or self.scope(chain[-1]) != "series":
                        found.append(
                            f"pipeline {chain[-1]!r} runs after {current!r}: both must "
                            "decide per series"
                        )
                        break
                    chain.append(current)
                    current = self.runs_after(current)
            except PipelineUnavailable:
                continue  # ``problems`` says why it cannot load; its jobs fail with that
        return found

    def problems(self, names: Iterable[str]) -> list[str]:
        """Why each of ``names`` cannot be loaded with its options (empty: all load), as
        ``config check`` reports it; loading builds the pipeline, not its model."""
        found: list[str] = []
        for name in names:
            try:
                self.get(name)
            except PipelineUnavailable as exc:
                found.append(str(exc))
        return found

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
        options = self._options.get(name, {})
        if isinstance(factory, type) or (callable(factory) and not isinstance(factory, Pipeline)):
            try:
                pipeline = factory(**options)
            except (TypeError, ValueError) as exc:
                raise PipelineUnavailable(
                    f"pipeline {name!r}: options {sorted(options)} are not accepted: {exc}"
                ) from exc
        elif options:
            raise PipelineUnavailable(
                f"pipeline {name!r}: {target} is an object; it takes no options"
            )
        else:
            pipeline = factory
        if not isinstance(pipeline, Pipeline):
            raise PipelineUnavailable(
                f"pipeline {name!r}: {target} does not meet the Pipeline contract "
                "(needs a 'name' and a 'run(series)' method, and 'scope = \"study\"' to be "
                "given a whole study)"
            )
        if pipeline.name != name:
            raise PipelineUnavailable(f"pipeline {name!r}: {target} calls itself {pipeline.name!r}")
        try:
            scope = pipeline_scope(pipeline)
        except ValueError as exc:
            raise PipelineUnavailable(f"pipeline {name!r}: {exc}") from exc
        declared = BUILTIN_SCOPES.get(name, "series")
        if target == BUILTIN_PIPELINES.get(name) and scope != declared:
            raise PipelineUnavailable(
                f"pipeline {name!r} says its scope is {scope!r}; BUILTIN_SCOPES says {declared!r}"
            )
        after = getattr(pipeline, "runs_after", None)
        if target == BUILTIN_PIPELINES.get(name) and after != BUILTIN_RUNS_AFTER.get(name):
            raise PipelineUnavailable(
                f"pipeline {name!r} says it runs after {after!r}; BUILTIN_RUNS_AFTER says "
                f"{BUILTIN_RUNS_AFTER.get(name)!r}"
            )
        return pipeline
