"""The condition groups: which conditions are graded together, on which series, and which side is mirrored.

The one description the rest derives from: the metric's three parts (``spinedata.metric``), the graders
(``spinemodels.data.grading``), the master model's condition slots (``spinemodels.networks.master``,
``spinemodels.tasks.master``), the series each condition is labelled on (:data:`CONDITION_ROLE`).

- The three **scored groups** (spinal, foraminal, subarticular) are the competition's: each is one part of
  the metric, its conditions are labelled on one series role, and the group name is the substring of its
  row ids (``..._spinal_canal_stenosis_l4_l5``).
- A **cross-view group** grades a scored group's conditions on a second series role (the spinal canal on
  Axial T2); it adds a view to the master model and is no part of the metric.

Sides are the group's conditions in order (left before right). A mirrored side is flipped left-right
before grading, so that one model sees both sides alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from spinedata.constants import CONDITIONS, ROLE_AXIAL_T2, ROLE_SAG_T1, ROLE_SAG_T2


@dataclass(frozen=True)
class ConditionGroup:
    """A condition group graded by one model: its conditions (one per side), series role and mirroring.

    ``metric_key``: the group's key in the result of ``spinedata.metric.score``; empty for a cross-view
    group.
    """

    name: str
    conditions: tuple[str, ...]
    role: str
    mirror: tuple[bool, ...]
    metric_key: str = ""

    @property
    def sides(self) -> int:
        return len(self.conditions)

    @property
    def slots(self) -> slice:
        """Where the group's conditions sit in ``CONDITIONS`` (they are adjacent there)."""
        start = CONDITIONS.index(self.conditions[0])
        return slice(start, start + self.sides)


SPINAL, LEFT_FORAMINAL, RIGHT_FORAMINAL, LEFT_SUBARTICULAR, RIGHT_SUBARTICULAR = CONDITIONS

CONDITION_GROUPS: dict[str, ConditionGroup] = {
    "spinal": ConditionGroup("spinal", (SPINAL,), ROLE_SAG_T2, (False,), "spinal_canal_stenosis"),
    "foraminal": ConditionGroup("foraminal", (LEFT_FORAMINAL, RIGHT_FORAMINAL), ROLE_SAG_T1, (False, False),
                                "neural_foraminal_narrowing"),
    "subarticular": ConditionGroup("subarticular", (LEFT_SUBARTICULAR, RIGHT_SUBARTICULAR), ROLE_AXIAL_T2,
                                   (False, True), "subarticular_stenosis"),
    # cross-view: the spinal canal's cross-section on Axial T2 at each spinal point (spinemodels.data.views)
    "spinal_axial": ConditionGroup("spinal_axial", (SPINAL,), ROLE_AXIAL_T2, (False,)),
}
"""Every condition group by name: the three scored groups in ``CONDITIONS`` order, then the cross views."""

SCORED_GROUPS: tuple[str, ...] = tuple(name for name, g in CONDITION_GROUPS.items() if g.metric_key)
"""The groups the metric scores, in ``CONDITIONS`` order; together they hold each condition once."""

CROSS_VIEWS: tuple[str, ...] = tuple(name for name, g in CONDITION_GROUPS.items() if not g.metric_key)
"""Groups that grade a scored group's conditions on a second series role."""

GROUP_OF: dict[str, str] = {c: name for name in SCORED_GROUPS for c in CONDITION_GROUPS[name].conditions}
"""Condition -> the name of its scored group."""

CONDITION_ROLE: dict[str, str] = {
    c: CONDITION_GROUPS[name].role for name in SCORED_GROUPS for c in CONDITION_GROUPS[name].conditions
}
"""The series role on which each condition is labelled (and graded by its scored group)."""
