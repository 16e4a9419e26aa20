"""Assigning threatened households to shelters (避灾安置点), respecting capacity (pure).

Households are recorded per hazard point without their own coordinates, so the way out is
measured as gis.geometry.rank_shelters does: from the hazard polygon's edge to the shelter.
Shelters are filled nearest first; a household is never split (a family shelters together)
and goes to the nearest shelter that still has room for all its members. A household no
shelter within reach can take is returned as unplaced, for the officers to handle: sending
120 families to a hall of 50 places helps nobody.

Households are taken largest first (ties by id) so a big family is not left without a place
by small ones that could fit elsewhere; the result does not depend on input order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gis.model import Household, Shelter


@dataclass(frozen=True)
class Placement:
    household_id: str
    shelter: Shelter
    distance_m: float


@dataclass(frozen=True)
class Allocation:
    placements: tuple[Placement, ...]
    unplaced: tuple[Household, ...]
    # shelter id -> people assigned by this allocation
    assigned_people: dict[str, int]

    def for_household(self, household_id: str) -> Placement | None:
        for p in self.placements:
            if p.household_id == household_id:
                return p
        return None


def allocate(households: Sequence[Household],
             shelters: Sequence[tuple[Shelter, float]]) -> Allocation:
    """Place `households` into `shelters` ((shelter, distance in metres) pairs).

    Free places are capacity minus current occupancy; no shelter ever receives more people
    than it has free places."""
    ranked = sorted(shelters, key=lambda sd: (sd[1], sd[0].shelter_id))
    free = {s.shelter_id: s.free for s, _ in ranked}
    assigned = {s.shelter_id: 0 for s, _ in ranked}
    placements: list[Placement] = []
    unplaced: list[Household] = []
    for h in sorted(households, key=lambda h: (-h.members, h.household_id)):
        for shelter, distance in ranked:
            if free[shelter.shelter_id] >= h.members:
                free[shelter.shelter_id] -= h.members
                assigned[shelter.shelter_id] += h.members
                placements.append(Placement(h.household_id, shelter, distance))
                break
        else:
            unplaced.append(h)
    placements.sort(key=lambda p: p.household_id)
    unplaced.sort(key=lambda h: h.household_id)
    return Allocation(tuple(placements), tuple(unplaced), assigned)
