"""The one description of the condition groups (spinedata.conditions) agrees with the competition's names."""

from __future__ import annotations

from spinedata.conditions import CONDITION_GROUPS, CONDITION_ROLE, CROSS_VIEWS, GROUP_OF, SCORED_GROUPS
from spinedata.constants import CONDITIONS, LEVELS, ROLES, target_name


def test_scored_groups_hold_each_condition_once_in_order():
    held = [c for name in SCORED_GROUPS for c in CONDITION_GROUPS[name].conditions]
    assert tuple(held) == CONDITIONS
    assert set(GROUP_OF) == set(CONDITION_ROLE) == set(CONDITIONS)
    for name in SCORED_GROUPS:
        group = CONDITION_GROUPS[name]
        assert CONDITIONS[group.slots] == group.conditions


def test_group_name_is_the_row_id_substring_of_its_targets():
    for condition in CONDITIONS:
        for level in LEVELS:
            target = target_name(condition, level)
            assert [name for name in SCORED_GROUPS if name in target] == [GROUP_OF[condition]]


def test_every_group_is_well_formed():
    for name, group in CONDITION_GROUPS.items():
        assert group.name == name and group.role in ROLES and len(group.mirror) == group.sides
    for name in CROSS_VIEWS:
        group = CONDITION_GROUPS[name]
        assert not group.metric_key and {GROUP_OF[c] for c in group.conditions} <= set(SCORED_GROUPS)
        assert all(CONDITION_ROLE[c] != group.role for c in group.conditions)
